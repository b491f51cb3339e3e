"""Checks that span documents: duplicates, dangling references, dependency cycles.

A reference (a nested cell's parent, ``spec.cell``, an entry of ``dependsOn``) must name
a resource declared by a document of the same manifest set, unless the caller passes
``existing``: the refs of the resources the node already has, which then satisfy
references too. Files (``provisioner.manifest.load``, the CLI) pass nothing and stay
strict: a set of files must declare everything it refers to. Requests checked against a
node pass what the node has: the daemon's NodeService.Plan and the
``provisioner_resource`` Ansible module, whose one-resource manifest sets refer to cells
declared by other sets (other tasks). Only references are relaxed: cycles are looked
for among the documents, and nothing of ``existing`` is itself checked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Sequence

from provisioner.manifest.build import file_sha256
from provisioner.manifest.document import Document, locate
from provisioner.manifest.issues import Issue
from provisioner.model import (
    CellSpec,
    DriverSpec,
    ExecutableSpec,
    Kind,
    PodSpec,
    Ref,
    ResourceSpec,
    ref_of,
)
from provisioner.names import cell_parent
from provisioner.podnet import host_port_clashes, pod_network_problems
from provisioner.records import record

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any


@record
class Declared:
    """A resource as built from a document, with the document (for error locations)."""

    spec: ResourceSpec
    doc: Document


def _issue(item: Declared, path: tuple[str | int, ...], message: str) -> Issue:
    return Issue.at(item.doc.file, locate(item.doc.node, path), path, message)


def _spec_key(item: Declared, snake: str) -> str:
    """The spelling the document used for a spec field (for paths in messages)."""
    spec = item.doc.data.get("spec") or {}
    head, *rest = snake.split("_")
    camel = head + "".join(part.title() for part in rest)
    return camel if camel in spec and snake not in spec else snake


def implicit_requirements(spec: ResourceSpec) -> list[Ref]:
    """Edges the model implies: a nested cell needs its parent, a process its cell."""
    if isinstance(spec, CellSpec):
        parent = cell_parent(spec.name)
        return [Ref(Kind.CELL, parent)] if parent else []
    if isinstance(spec, ExecutableSpec | PodSpec) and spec.cell:
        return [Ref(Kind.CELL, spec.cell)]
    return []


def cross_check(items: Sequence[Declared],
                existing: Collection[Ref] | None = None) -> list[Issue]:
    """Duplicates, dangling references and dependency cycles among ``items``.

    ``existing``: refs of resources the node has, which satisfy references (see the
    module doc). None (files) means the documents alone; any collection, even an empty
    one, means "checked against a node", and messages about a dangling reference then
    say that the node does not have it either.
    """
    issues: list[Issue] = []
    first: dict[Ref, Declared] = {}
    for item in items:
        ref = ref_of(item.spec)
        if ref in first:
            where = first[ref].doc
            issues.append(
                _issue(
                    item,
                    ("metadata", "name"),
                    f"duplicate {ref} (first declared at {where.file}:{where.line}:{where.column})",
                )
            )
        else:
            first[ref] = item
    on_node = existing is not None
    known: set[Ref] = set(first) | set(existing or ())
    for item in items:
        issues.extend(_references(item, known, on_node))
    issues.extend(_cycles(items, first))
    issues.extend(_host_port_clashes(items))
    return issues


def _doc_path(item: Declared, path: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """``path`` (lowerCamelCase keys) in the spelling the document used."""
    spelled: list[str | int] = []
    node: Any = item.doc.data
    for part in path:
        if isinstance(part, str) and isinstance(node, dict) and part not in node:
            snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), part)
            part = snake if snake in node else part
        spelled.append(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return tuple(spelled)


def _host_port_clashes(items: Sequence[Declared]) -> list[Issue]:
    """A host port (and protocol) that two pods of the documents publish: reported at
    the second one's port."""
    pods = [item for item in items if isinstance(item.spec, PodSpec)]
    by_name = {item.spec.name: item for item in pods}
    issues = []
    for port, protocol, first, second in host_port_clashes(
            item.spec for item in pods if isinstance(item.spec, PodSpec)):
        item = by_name[second]
        assert isinstance(item.spec, PodSpec)
        where: tuple[str | int, ...] = ("spec", "containers")
        for index, container in enumerate(item.spec.containers):
            for number, declared in enumerate(container.ports):
                if ((declared.host_port or declared.container_port) == port
                        and declared.protocol.value == protocol and not where[2:]):
                    where = ("spec", "containers", index, "ports", number, "hostPort")
        other = by_name[first].doc
        issues.append(_issue(item, _doc_path(item, where),
                             f"host port {port}/{protocol} is also published by Pod/{first} "
                             f"({other.file}:{other.line}:{other.column})"))
    return issues


def _references(item: Declared, known: set[Ref], on_node: bool) -> list[Issue]:
    """Dangling references of ``item`` (``known``: declared or existing refs) and its
    own problems (duplicate container names, a missing driver file)."""
    spec, issues = item.spec, []
    nor = " and does not exist on the node" if on_node else ""
    if isinstance(spec, CellSpec):
        parent = cell_parent(spec.name)
        if parent and Ref(Kind.CELL, parent) not in known:
            issues.append(
                _issue(
                    item,
                    ("metadata", "name"),
                    f"parent cell {parent!r} of {spec.name!r} is not declared{nor}",
                )
            )
    cell = spec.cell if isinstance(spec, ExecutableSpec | PodSpec) else ""
    if cell and Ref(Kind.CELL, cell) not in known:
        issues.append(
            _issue(item, ("spec", "cell"),
                   f"cell {cell!r} is not declared by any document{nor}")
        )
    if isinstance(spec, PodSpec):
        seen: set[str] = set()
        for index, container in enumerate(spec.containers):
            if container.name in seen:
                issues.append(
                    _issue(
                        item,
                        ("spec", "containers", index, "name"),
                        f"duplicate container name {container.name!r}",
                    )
                )
            seen.add(container.name)
        for path, message in pod_network_problems(spec):
            issues.append(_issue(item, _doc_path(item, ("spec", *path)), message))
    if isinstance(spec, DriverSpec):
        issues.extend(_driver_file(item, spec))
    key = _spec_key(item, "depends_on")
    for index, ref in enumerate(spec.depends_on):
        if ref not in known:
            which = "no document declares and the node does not have" if on_node \
                else "no document declares"
            issues.append(_issue(item, ("spec", key, index), f"depends on {ref}, which {which}"))
    return issues


def _driver_file(item: Declared, spec: DriverSpec) -> list[Issue]:
    given = item.doc.data["spec"]["source"]
    if not os.path.isfile(spec.source_path):
        return [
            _issue(
                item,
                ("spec", "source"),
                f"driver file {given!r} does not exist "
                "(paths are relative to the manifest's folder)",
            )
        ]
    declared_sum = item.doc.data["spec"].get("sha256")
    if declared_sum and declared_sum != file_sha256(spec.source_path):
        return [_issue(item, ("spec", "sha256"), f"does not match the SHA-256 of {given!r}")]
    return []


def _cycles(items: Sequence[Declared], declared: dict[Ref, Declared]) -> list[Issue]:
    """Report every dependency cycle once, naming its members in order."""
    graph: dict[Ref, list[Ref]] = {}
    for item in items:
        ref = ref_of(item.spec)
        edges = [
            r for r in (*item.spec.depends_on, *implicit_requirements(item.spec)) if r in declared
        ]
        graph.setdefault(ref, []).extend(edges)
    issues: list[Issue] = []
    state: dict[Ref, int] = {}  # 1 = on the current path, 2 = done
    path: list[Ref] = []
    reported: set[frozenset[Ref]] = set()

    def visit(start: Ref) -> None:
        stack = [(start, iter(graph.get(start, ())))]
        state[start] = 1
        path.append(start)
        while stack:
            node, edges = stack[-1]
            nxt = next(edges, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(nxt) == 1:
                cycle = path[path.index(nxt) :]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    names = " -> ".join(str(r) for r in [*cycle, nxt])
                    owner = declared[cycle[0]]
                    issues.append(
                        _issue(
                            owner,
                            ("spec", _spec_key(owner, "depends_on")),
                            f"dependency cycle: {names}",
                        )
                    )
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(graph.get(nxt, ()))))

    for ref in graph:
        if ref not in state:
            visit(ref)
    return issues
