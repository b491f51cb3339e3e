"""Cross-document checks with ``existing``: references to resources the node already has
(of other manifest sets) are satisfied, everything else stays checked; files stay strict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provisioner.manifest import load
from provisioner.manifest.build import build_resource
from provisioner.manifest.crosscheck import Declared, cross_check
from provisioner.manifest.from_data import validate_data
from provisioner.manifest.schema_check import check_document
from provisioner.manifest.yamlsafe import load_documents
from provisioner.model import Kind, Ref

DOCS = """\
apiVersion: provisioner/v1
kind: Executable
metadata: {name: api}
spec: {command: "true", cell: web, dependsOn: [Executable/db]}
---
apiVersion: provisioner/v1
kind: Cell
metadata: {name: web/cache}
"""
WEB, DB = Ref(Kind.CELL, "web"), Ref(Kind.EXECUTABLE, "db")


def declared(text: str = DOCS) -> list[Declared]:
    docs = load_documents("m.yaml", text)
    assert all(not check_document(doc) for doc in docs)
    return [Declared(build_resource(doc), doc) for doc in docs]


def messages(items: list[Declared], **kwargs: Any) -> list[str]:
    return [f"{issue.path}: {issue.message}" for issue in cross_check(items, **kwargs)]


def test_without_existing_every_reference_must_be_declared() -> None:
    assert messages(declared()) == [
        "spec.cell: cell 'web' is not declared by any document",
        "spec.dependsOn[0]: depends on Executable/db, which no document declares",
        "metadata.name: parent cell 'web' of 'web/cache' is not declared",
    ]


def test_existing_refs_satisfy_parents_cells_and_depends_on() -> None:
    assert messages(declared(), existing={WEB, DB}) == []
    assert messages(declared(), existing=[WEB, DB, Ref(Kind.CELL, "other")]) == []


def test_what_the_node_lacks_too_is_reported_saying_so() -> None:
    assert messages(declared(), existing=[DB]) == [
        "spec.cell: cell 'web' is not declared by any document and does not exist on the node",
        "metadata.name: parent cell 'web' of 'web/cache' is not declared and does not exist "
        "on the node",
    ]
    assert messages(declared(), existing=[WEB]) == [
        "spec.dependsOn[0]: depends on Executable/db, which no document declares and the "
        "node does not have"]
    # An empty node is still a node: the messages say it.
    assert all("on the node" in m or "node does not have" in m
               for m in messages(declared(), existing=()))


def test_a_ref_of_another_kind_does_not_satisfy_a_reference() -> None:
    wrong = [Ref(Kind.EXECUTABLE, "web"), Ref(Kind.CELL, "db")]
    assert len(messages(declared(), existing=wrong)) == 3


def test_duplicates_and_cycles_among_the_documents_are_still_errors() -> None:
    text = """\
apiVersion: provisioner/v1
kind: Executable
metadata: {name: a}
spec: {command: "true", dependsOn: [Executable/b]}
---
apiVersion: provisioner/v1
kind: Executable
metadata: {name: b}
spec: {command: "true", dependsOn: [Executable/a]}
---
apiVersion: provisioner/v1
kind: Executable
metadata: {name: b}
spec: {command: "true"}
"""
    existing = [Ref(Kind.EXECUTABLE, "a"), Ref(Kind.EXECUTABLE, "b")]
    found = messages(declared(text), existing=existing)
    assert any("duplicate Executable/b" in m for m in found)
    assert any("dependency cycle: Executable/a -> Executable/b -> Executable/a" in m
               for m in found)


def test_validate_data_passes_existing_through_and_files_stay_strict(tmp_path: Path) -> None:
    item = {"apiVersion": "provisioner/v1", "kind": "Executable", "metadata": {"name": "api"},
            "spec": {"command": "true", "cell": "web"}}
    assert validate_data([item]).issues  # no existing: the documents alone
    result = validate_data([item], "executable.api", existing=[WEB])
    assert result.issues == [] and result.state.manifest_set == "executable.api"
    missing = validate_data([item], existing=[])
    assert [i.render() for i in missing.issues] == [
        "request:resources[0]:9:11: spec.cell: cell 'web' is not declared by any document "
        "and does not exist on the node"]
    path = tmp_path / "api.yaml"
    path.write_text(DOCS)
    assert len(load([str(path)]).issues) == 3  # the CLI's loading: every reference declared


def _driver_doc(source: str, sha256: str | None) -> dict[str, object]:
    spec: dict[str, object] = {"version": "1.0", "runtimeVersion": "2", "source": source}
    if sha256 is not None:
        spec["sha256"] = sha256
    return {"apiVersion": "provisioner/v1", "kind": "Driver", "metadata": {"name": "raft"},
            "spec": spec}


def test_a_request_may_name_a_driver_file_the_node_lacks_by_its_sha256(tmp_path: Path) -> None:
    missing = str(tmp_path / "not-here.so")
    accepted = validate_data([_driver_doc(missing, "ab" * 32)])
    assert accepted.issues == []  # the client pushes the bytes before it applies
    refused = validate_data([_driver_doc(missing, None)])
    assert [i.path for i in refused.issues] == ["spec.source"]
    relative = validate_data([_driver_doc("raft.so", "ab" * 32)])
    assert "must be an absolute path" in relative.issues[0].message
