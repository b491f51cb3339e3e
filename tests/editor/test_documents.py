"""Every document of a multi-document file is checked with its kind's schema.

With a ``$schema`` modeline alone, yaml-language-server checks only the document that
holds the comment (the first one): shown by ``test_a_modeline_alone_checks_the_first_
document_only``. The repository's editor set-up (``.vscode/settings.json``, the same
``yaml.schemas`` mapping documented for Neovim in docs/editors.md) associates
``manifest.schema.json``, which dispatches on ``kind``, with whole files instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.manifest.loader import load_texts
from provisioner.manifest.template import render
from tests.editor.conftest import problems, start, virtual
from tests.editor.lsp import ROOT, Client

EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml"))
APPS = ROOT / "examples" / "node" / "apps.yaml"
# examples/node/apps.yaml, line 25 is `  command: "sleep infinity"` of its 2nd document.
BAD_LINE = 26


def with_bad_field_in_second_document() -> str:
    """apps.yaml with an unknown field after the ``command`` of its second document."""
    lines = APPS.read_text().splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line == "---\n"]
    # The comments before the first '---' belong to the first document (YAML 1.2).
    second = lines[starts[1]:starts[2]]
    command = starts[1] + next(i for i, line in enumerate(second) if line.startswith("  command:"))
    assert command + 2 == BAD_LINE
    lines.insert(BAD_LINE - 1, "  cpuQuota: 5\n")
    return "".join(lines)


def provisioner_lines(path: Path, text: str) -> list[int]:
    """Lines ``provisioner validate`` reports in ``text`` (read with the example cells)."""
    cells = ROOT / "examples" / "node" / "cells.yaml"
    result = load_texts([(str(cells), cells.read_text()), (str(path), text)])
    assert all(issue.file == str(path) for issue in result.issues)
    return sorted({issue.line for issue in result.issues})


def test_the_examples_are_multi_document_files() -> None:
    assert ROOT / "examples" / "node" / "cells.yaml" in EXAMPLES
    assert APPS.read_text().count("\n---\n") >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_have_no_diagnostics(editor: Client, path: Path) -> None:
    text = path.read_text()
    if "{%" in text or "{{" in text:
        # A template is YAML only once rendered: check what the provisioner would read.
        text = render(str(path), text, {})
    assert problems(editor.diagnose(path, text)) == []


def test_a_bad_field_in_the_second_document_is_reported_on_its_line(editor: Client) -> None:
    text = with_bad_field_in_second_document()
    path = virtual("examples/node/apps-with-a-bad-field.yaml")
    assert problems(editor.diagnose(path, text)) == [
        (BAD_LINE, "Property cpuQuota is not allowed.")]
    assert provisioner_lines(path, text) == [BAD_LINE]


def test_every_later_document_is_checked_with_its_own_kind(editor: Client) -> None:
    # A Cell field in an Executable (3rd document) and an Executable field in a Cell
    # (4th): each document is checked against its kind, not a union of all kinds.
    text = (
        "apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: a}\n"
        "---\napiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: b}\n"
        "---\napiVersion: provisioner/v1\nkind: Executable\nmetadata: {name: c}\n"
        "spec:\n  command: x\n  isolateProcess: true\n"
        "---\napiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: d}\n"
        "spec:\n  command: x\n"
    )
    path = virtual("examples/node/kinds.yaml")
    assert problems(editor.diagnose(path, text)) == [
        (14, "Property isolateProcess is not allowed."),
        (20, "Property command is not allowed."),
    ]
    assert provisioner_lines(path, text) == [14, 20]


@pytest.fixture(scope="module")
def modeline_only() -> Iterator[Client]:
    """The advice the README used to give: a modeline, no mapping."""
    client = start({"yaml": {"validate": True, "schemaStore": {"enable": False}}})
    try:
        yield client
    finally:
        client.close()


def test_a_modeline_alone_checks_the_first_document_only(modeline_only: Client) -> None:
    # The upstream limitation the mapping works around (yaml-language-server reads the
    # modeline of each document, and only the first one has it).
    path = virtual("examples/node/apps-with-a-bad-field.yaml")
    text = with_bad_field_in_second_document()
    assert problems(modeline_only.diagnose(path, text)) == []
    first = text.replace("  cell: web\n", "  cell: web\n  cpuQuota: 5\n", 1)
    assert problems(modeline_only.diagnose(path, first)) == [
        (12, "Property cpuQuota is not allowed.")]
