"""The editor and ``provisioner validate`` agree on the golden manifests (tests/manifests).

Every invalid case whose error a per-document JSON Schema can express is reported by
the language server on the same line as by the provisioner; every valid case has no
diagnostic. The cases left out say why: checks across documents or resources, files on
disk, checks written in Python, YAML syntax errors (two parsers, two places to notice).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.manifest.template import load_vars_file, render
from tests.editor.conftest import problems
from tests.editor.lsp import ROOT, Client

CASES = ROOT / "tests" / "manifests"
INVALID = sorted((CASES / "invalid").glob("*.yaml"))
VALID = sorted(p for p in (CASES / "valid").glob("*.yaml") if not p.name.endswith(".vars.yaml"))

ACROSS = "checked across documents or resources, not by a document's schema"
NOT_SCHEMA: dict[str, str] = {
    "cell-parent-missing": ACROSS,
    "cycle-through-cell": ACROSS,
    "dependency-cycle": ACROSS,
    "duplicate-names": ACROSS,
    "exec-depends-missing": ACROSS,
    "exec-unknown-cell": ACROSS,
    "pod-unknown-cell": ACROSS,
    "pod-host-port-twice": ACROSS,
    "self-dependency": ACROSS,
    "many-errors-one-file": ACROSS,
    "pod-duplicate-container": "unique container names: not expressible in JSON Schema",
    "driver-missing-file": "reads the driver's file",
    "driver-sha-mismatch": "reads the driver's file",
    "cell-cpus-backwards": "the cpu-list format (a backwards range) is checked in Python",
    "pod-network-contradictions": "a pod's network against its ports is checked in Python",
    "pod-bad-image-references": "the image-reference and registry-host formats are "
                                "checked in Python",
    "only-comments": "a file without any document: nothing for a per-document schema",
    "billion-laughs": "the provisioner bounds alias expansion; the editor expands",
    "recursive-alias": "alias handling differs between the two YAML parsers",
    "yaml-syntax": "YAML syntax: the parsers notice at different places",
    "yaml-bad-indent": "YAML syntax: the parsers notice at different places",
    "jinja-syntax": "template source, not YAML until rendered",
}
#: A missing field: the editor marks the key of the mapping that lacks it (the line
#: above), the provisioner the mapping's first line.
ON_THE_PARENT_KEY = {"exec-missing-command", "missing-metadata-name",
                     "persistent-missing-command"}


def test_most_golden_cases_are_compared() -> None:
    names = {p.stem for p in INVALID}
    assert set(NOT_SCHEMA) <= names
    assert len(names - set(NOT_SCHEMA)) >= 50


def expected_lines(case: Path) -> list[int]:
    lines = case.with_suffix(".expected").read_text().splitlines()
    return sorted({int(line.split(":")[1]) for line in lines})


@pytest.mark.parametrize("case", [p for p in INVALID if p.stem not in NOT_SCHEMA],
                         ids=lambda p: p.stem)
def test_invalid_case_is_reported_on_the_same_line(editor: Client, case: Path) -> None:
    text = case.read_bytes().decode("utf-8", errors="replace")  # as an editor shows it
    found = problems(editor.diagnose(case, text))
    want = expected_lines(case)
    if case.stem in ON_THE_PARENT_KEY:
        assert [line for line, _ in found] == [line - 1 for line in want]
        assert all(message.startswith("Missing property") for _, message in found)
    else:
        assert sorted({line for line, _ in found}) == want, found


@pytest.mark.parametrize("case", VALID, ids=lambda p: p.stem)
def test_valid_case_has_no_diagnostics(editor: Client, case: Path) -> None:
    text = case.read_text(encoding="utf-8-sig")
    variables = case.with_suffix(".vars.yaml")
    if variables.exists():
        text = render(str(case), text, load_vars_file(str(variables)))
    assert problems(editor.diagnose(case, text)) == []
