"""Files -> documents -> validated model: the whole manifest pipeline in one call."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Mapping

from provisioner.errors import LoadError
from provisioner.manifest.build import build_resource
from provisioner.manifest.crosscheck import Declared, cross_check
from provisioner.manifest.document import MAX_FILE_BYTES, no_gc
from provisioner.manifest.issues import Issue
from provisioner.manifest.schema_check import check_document
from provisioner.manifest.set_name import default_set_name
from provisioner.model import DesiredState
from provisioner.pathnames import tidy_path
from provisioner.records import field, record

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["LoadResult", "default_set_name", "expand_paths", "load", "load_texts"]

MANIFEST_SUFFIXES = (".yaml", ".yml")


@record(frozen=False)
class LoadResult:
    """Everything learnt from a set of manifest files. Valid when ``issues`` is empty."""

    state: DesiredState
    issues: list[Issue] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    documents: int = 0

    @property
    def ok(self) -> bool:
        """True when no document had an issue."""
        return not self.issues


def expand_paths(paths: Iterable[str]) -> tuple[list[str], list[Issue]]:
    """Files as given, and for directories every *.yaml / *.yml below them, sorted."""
    files: list[str] = []
    issues: list[Issue] = []
    for given in paths:
        if os.path.isdir(given):
            unreadable: list[Issue] = []
            found = sorted(_manifests_below(given, unreadable))
            issues.extend(unreadable)
            if not found and not unreadable:
                issues.append(Issue(given, 0, 0, "", "directory holds no *.yaml or *.yml files"))
            files.extend(found)
        elif os.path.isfile(given) or given == "-":
            files.append(given)
        else:
            issues.append(Issue(given, 0, 0, "", "no such file or directory"))
    return files, issues


def _manifests_below(folder: str, unreadable: list[Issue]) -> Iterator[str]:
    """The *.yaml / *.yml files below ``folder``, skipping hidden files and folders
    (and not entering linked folders), named as pathlib names them (``./a//`` -> ``a``).

    A folder that cannot be listed, or a manifest whose kind of file cannot be told,
    is an issue in ``unreadable``, never skipped: the set would silently lack its
    resources, and an apply with ``--prune`` would remove them."""
    def refused(error: OSError) -> None:
        where = error.filename if isinstance(error.filename, str) else folder
        unreadable.append(Issue(tidy_path(where), 0, 0, "",
                                f"cannot list this directory: {error.strerror}"))

    for parent, folders, names in os.walk(folder, onerror=refused):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            if name.startswith(".") or os.path.splitext(name)[1] not in MANIFEST_SUFFIXES:
                continue
            path = os.path.join(parent, name)
            try:
                is_file = stat.S_ISREG(os.stat(path).st_mode)
            except FileNotFoundError:
                continue  # removed meanwhile, or a dangling link: not a manifest
            except OSError as exc:
                unreadable.append(Issue(tidy_path(path), 0, 0, "",
                                        f"cannot read: {exc.strerror}"))
                continue
            if is_file:
                yield tidy_path(path)


def _read(file: str) -> bytes:
    """The file's bytes, at most one more than the size limit (``decode`` refuses a
    file that long), so a huge file or endless stdin is never read whole."""
    if file == "-":
        import sys

        return sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
    with open(file, "rb") as handle:
        return handle.read(MAX_FILE_BYTES + 1)


def _render(file: str, text: str, variables: Mapping[str, Any]) -> str:
    """:func:`provisioner.manifest.template.render`, imported (with Jinja2, ~30 ms) only
    for a text with one of its markers (``{{``, ``{%``, ``{#``): plain YAML is as it is."""
    if "{{" not in text and "{%" not in text and "{#" not in text:
        return text
    from provisioner.manifest.template import render

    return render(file, text, variables)


def load(
    paths: Iterable[str], variables: Mapping[str, Any] | None = None, manifest_set: str = "default"
) -> LoadResult:
    """Load, template, parse, validate and cross-check manifests; collect every issue."""
    with no_gc():  # every document's node tree stays alive until the cross-checks
        return _load(paths, variables, manifest_set)


def _load(
    paths: Iterable[str], variables: Mapping[str, Any] | None, manifest_set: str
) -> LoadResult:
    from provisioner.manifest.yamlsafe import decode

    files, issues = expand_paths(paths)
    texts: list[tuple[str, str]] = []
    for file in files:
        try:
            texts.append((file, _render(file, decode(file, _read(file)), variables or {})))
        except LoadError as exc:
            issues.append(Issue.from_load_error(exc))
        except OSError as exc:
            issues.append(Issue(file, 0, 0, "", f"cannot read: {exc.strerror}"))
    result = _validate_texts(texts, manifest_set)
    result.issues = sorted(set(issues + result.issues), key=_order)
    result.files = files
    return result


def load_texts(texts: Iterable[tuple[str, str]], manifest_set: str = "default") -> LoadResult:
    """Parse, validate and cross-check manifest texts already read and rendered (by an
    Ansible controller, say): ``(file, text)`` pairs, ``file`` naming each in issues."""
    with no_gc():
        result = _validate_texts(list(texts), manifest_set)
    result.issues = sorted(set(result.issues), key=_order)
    return result


def _validate_texts(texts: list[tuple[str, str]], manifest_set: str) -> LoadResult:
    # The YAML parser is loaded here, by the texts that need it: checking documents made
    # from data (provisioner.manifest.from_data) imports this module without it.
    from provisioner.manifest.yamlsafe import load_documents

    issues: list[Issue] = []
    declared: list[Declared] = []
    documents = 0
    for file, text in texts:
        try:
            docs = load_documents(file, text)
        except LoadError as exc:
            issues.append(Issue.from_load_error(exc))
            continue
        if not docs:
            issues.append(
                Issue(file, 1, 0, "", "file holds no YAML documents (it is empty or only comments)")
            )
        documents += len(docs)
        for doc in docs:
            found = check_document(doc)
            if found:
                issues.extend(found)
                continue
            spec = build_resource(doc)
            declared.append(Declared(spec, doc))
    issues.extend(cross_check(declared))
    state = DesiredState(tuple(item.spec for item in declared), manifest_set)
    return LoadResult(state, issues, [file for file, _ in texts], documents)


def _order(issue: Issue) -> tuple[str, int, int, str, str]:
    return (issue.file, issue.line, issue.column, issue.path, issue.message)
