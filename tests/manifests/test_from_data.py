"""Documents made from data (provisioner.manifest.from_data): read back from their JSON,
their YAML node tree composed only for an issue's position - and then the same issues
at the same places as when every document was composed first."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from provisioner.manifest.from_data import validate_data

CELL: dict[str, Any] = {"apiVersion": "provisioner/v1", "kind": "Cell",
                        "metadata": {"name": "web"}, "spec": {"cpu": {"weight": 100}}}


def test_a_valid_request_composes_no_yaml_and_builds_its_spec() -> None:
    probe = """
import sys
from provisioner.manifest.from_data import validate_data
cell = {"apiVersion": "provisioner/v1", "kind": "Cell", "metadata": {"name": "web"},
        "spec": {"cpu": {"weight": 100}, "isolate_process": True}}
result = validate_data([cell])
assert result.ok, result.issues
assert result.state.resources[0].limits.cpu_weight == 100
assert result.state.resources[0].isolate_process
print(sorted(m for m in sys.modules if m == "yaml" or m.startswith("yaml.")))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_invalid_request_is_located_line_by_line() -> None:
    bad = {**CELL, "spec": {"cpu": {"weight": 0}}}
    issues = [i.render() for i in validate_data([CELL, bad]).issues]
    assert issues == ["request:resources[1]:9:14: spec.cpu.weight: 0 is less than the "
                      "minimum of 1"]


def test_snake_and_camel_spellings_of_one_field_are_still_refused() -> None:
    both = {**CELL, "spec": {"isolateProcess": True, "isolate_process": False}}
    issues = validate_data([both]).issues
    assert len(issues) == 1 and "isolate" in issues[0].message


@pytest.mark.parametrize("odd", ["\x85", "\u2028", "a\u2029b", "\x7f", "\ufeff"])
def test_characters_yaml_reads_as_breaks_or_refuses_are_located_not_fatal(odd: str) -> None:
    """Found by tests/fuzz: NEL (U+0085) and U+2028/9 are line breaks to YAML even in a
    quoted string, so the JSON of a request holding one must escape them to be composed."""
    unknown = {**CELL, odd: None}
    issues = validate_data([unknown]).issues
    assert len(issues) == 1
    assert issues[0].line == 12  # its own line, the last of the JSON text
    assert issues[0].message.startswith("unknown field")
    named = {**CELL, "metadata": {"name": f"web{odd}"}}
    (issue,) = validate_data([named]).issues
    assert (issue.line, issue.path) == (5, "metadata.name")


@pytest.mark.parametrize("item", [[CELL], "text", None, {"deep": [[[[0]]]]}])
def test_data_that_is_no_manifest_is_refused_with_a_reason(item: object) -> None:
    issues = validate_data([item]).issues  # type: ignore[list-item]
    assert issues and all(i.file == "request:resources[0]" for i in issues)


def test_nesting_deeper_than_the_loader_allows_is_refused() -> None:
    deep: Any = "x"
    for _ in range(120):
        deep = [deep]
    issues = validate_data([{**CELL, "spec": {"cpu": deep}}]).issues
    assert [i.message for i in issues] == ["nesting is deeper than 100 levels"]


def test_values_that_are_not_plain_data_are_refused() -> None:
    issues = validate_data([{**CELL, "spec": {"cpu": {"weight": {1, 2}}}}]).issues
    assert len(issues) == 1 and issues[0].message.startswith("not plain data")
