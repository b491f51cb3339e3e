"""Validate manifest documents that arrive as data (a daemon request), not as files.

The same JSON Schemas and cross-document checks as :func:`provisioner.manifest.load`
apply. Each document is dumped as JSON (which is YAML) with one key per line, so every
issue gets a line and column like a file's; document ``i`` is labelled
``<label>[i]`` (``request:resources[3]:5:7: spec.cpu.weight: ...``). JSON rather than
a YAML dump keeps every string a quoted string: a YAML 1.1 dumper leaves ``0o17``
unquoted, which the YAML 1.2 loader would read as a number.

The data is read back from that JSON (the same values the safe loader would build:
strings, ints, floats, booleans, null) and the JSON is composed as YAML only when an
issue needs its line and column, so a valid request - the common case, every Ansible
task - never loads the YAML parser. A document the fast reading cannot stand for
(nested deeper than the loader allows, or with a string YAML cannot hold) goes through
the loader at once, which reports it.

A request is checked against a node: the caller passes ``existing`` (the refs of the
resources the node has), which satisfy references to resources of other manifest sets
(see :mod:`provisioner.manifest.crosscheck`); the loading of files stays strict.

A request has no manifest folder, so a Driver's ``spec.source`` must be an absolute
path (the remote executor sends the resolved path). A file that is not on the node is
accepted when the request carries its ``sha256``: the client pushes the bytes through
the driver registry before it applies (the apply fails if they never arrived).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from provisioner.errors import LoadError
from provisioner.manifest.build import build_resource
from provisioner.manifest.crosscheck import Declared, cross_check
from provisioner.manifest.document import MAX_DEPTH, Document, locate, no_gc
from provisioner.manifest.issues import Issue
from provisioner.manifest.loader import LoadResult
from provisioner.manifest.schema_check import check_document
from provisioner.model import DesiredState, Ref, ResourceSpec

DEFAULT_LABEL = "request:resources"


def documents_from_data(items: Sequence[Any], label: str = DEFAULT_LABEL,
                        positions: Sequence[int] | None = None
                        ) -> tuple[list[Document | None], list[Issue]]:
    """One Document per item (None where it could not be made, with an issue), named
    ``<label>[i]`` with ``i`` its index, or ``positions[index]`` when given."""
    docs: list[Document | None] = []
    issues: list[Issue] = []
    for index, item in enumerate(items):
        name = f"{label}[{positions[index] if positions is not None else index}]"
        try:
            text = json.dumps(item, indent=1, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            issues.append(Issue(name, 0, 0, "", f"not plain data: {exc}"))
            docs.append(None)
            continue
        read = _read_back(name, text)
        if read is not None:
            docs.append(read)
            continue
        try:
            found = _compose(name, text)
        except LoadError as exc:
            issues.append(Issue.from_load_error(exc))
            docs.append(None)
            continue
        if not found:
            issues.append(Issue(name, 0, 0, "", "empty document"))
            docs.append(None)
            continue
        docs.append(found[0])
    return docs, issues


#: Characters a request's strings may hold that YAML does not take as they are: those
#: it does not allow in a document (PyYAML's reader refuses them: control characters,
#: U+FFFE/F) and those it reads as line breaks even inside a quoted string (NEL U+0085,
#: U+2028, U+2029), which would break the JSON apart. json.dumps escapes those below
#: 0x20 itself. Lone surrogates stay: YAML cannot carry them (an issue says so).
_NOT_IN_YAML_RE = re.compile(
    r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\u2028\u2029\uFFFE\uFFFF]")


def _read_back(name: str, text: str) -> Document | None:
    """The document of JSON ``text`` (a mapping), its node tree composed when needed;
    None when the loader must read it now (see the module doc) or it is no mapping."""
    data = json.loads(text)
    if not isinstance(data, dict) or (not text.isascii() and not _encodable(text)):
        return None
    shape = _shape(data, 0)
    if shape is None:
        return None
    return Document(name, 0, data, lambda: _compose(name, text)[0].node,
                    snake_keys=shape, start=(1, 1))


def _shape(value: object, depth: int) -> bool | None:
    """Whether a mapping key below ``value`` has an ``_`` (Document.snake_keys); None
    when it nests deeper than the loader allows."""
    if depth > MAX_DEPTH:
        return None
    snake = False
    if isinstance(value, dict):
        for key, item in value.items():
            below = _shape(item, depth + 1)
            if below is None:
                return None
            snake = snake or below or "_" in key
    elif isinstance(value, list):
        for item in value:
            below = _shape(item, depth + 1)
            if below is None:
                return None
            snake = snake or below
    return snake


def _encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode for YAML (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _compose(name: str, text: str) -> list[Document]:
    """The JSON ``text`` read by the YAML loader (loaded now): its documents."""
    from provisioner.manifest.yamlsafe import load_documents

    return load_documents(name, _yaml_printable(text))


def _yaml_printable(text: str) -> str:
    """JSON text with those characters written as ``\\uXXXX`` escapes (they occur only
    inside JSON strings, where YAML reads the escape back as the character)."""
    if _NOT_IN_YAML_RE.search(text) is None:
        return text
    return _NOT_IN_YAML_RE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def validate_data(items: Sequence[Mapping[str, Any]], manifest_set: str = "default",
                  label: str = DEFAULT_LABEL, cross: bool = True,
                  positions: Sequence[int] | None = None,
                  existing: Collection[Ref] | None = None) -> LoadResult:
    """Schema-check, build and (with ``cross``) cross-check documents given as data.

    Valid when ``result.issues`` is empty; ``result.state`` then holds one spec per
    item, in order. Without ``cross`` each document is checked on its own (for plan
    steps, which are not a whole manifest set). ``positions`` numbers the items in
    messages when they are not the whole list they came from. ``existing``: refs of
    the resources the node has, which satisfy references (parent cells, ``spec.cell``,
    ``dependsOn``) besides the documents; None checks the documents alone, like files.
    """
    with no_gc():
        docs, issues = documents_from_data(items, label, positions)
        declared: list[Declared] = []
        relative: set[str] = set()
        remote: set[str] = set()  # drivers whose file is not on the node (see below)
        for doc in docs:
            if doc is None:
                continue
            found = check_document(doc)
            if found:
                issues.extend(found)
                continue
            spec_data = doc.data.get("spec") or {}
            source = spec_data.get("source")
            if doc.data.get("kind") == "Driver" and not os.path.isabs(str(source)):
                relative.add(doc.file)
                path = ("spec", "source")
                issues.append(Issue.at(doc.file, locate(doc.node, path), path,
                                       f"{source!r} must be an absolute path on the node "
                                       "(a request has no manifest folder)"))
            elif (doc.data.get("kind") == "Driver" and spec_data.get("sha256")
                  and not os.path.isfile(str(source))):
                # The file is the client's: it pushes the bytes through the registry
                # before the apply (RemoteExecutor); the SHA-256 identifies them.
                remote.add(doc.file)
            declared.append(Declared(build_resource(doc), doc))
        if cross:
            issues.extend(issue for issue in cross_check(declared, existing)
                          if not ((issue.file in relative or issue.file in remote)
                                  and issue.path == "spec.source"))
    specs: tuple[ResourceSpec, ...] = tuple(item.spec for item in declared)
    return LoadResult(DesiredState(specs, manifest_set), sorted(set(issues)),
                      [d.file for d in docs if d is not None], len(items))


def render_issues(issues: Sequence[Issue], limit_bytes: int = 6000) -> str:
    """Every issue on its own line, within ``limit_bytes`` (a gRPC status message
    travels in a trailer that default clients cap at 8 KiB); what does not fit is
    counted in a last line."""
    lines = [f"{len(issues)} validation error(s):"]
    size = len(lines[0])
    for shown, issue in enumerate(issues):
        text = issue.render()
        if size + len(text) + 1 > limit_bytes:
            lines.append(f"... and {len(issues) - shown} more")
            break
        lines.append(text)
        size += len(text) + 1
    return "\n".join(lines)
