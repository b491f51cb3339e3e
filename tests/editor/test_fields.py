"""Field spellings, completion and hover, as the editor shows them."""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft7Validator

from provisioner.limits import MIN_CPU_MAX_US
from provisioner.manifest.loader import load_texts
from provisioner.manifest.schema_check import load_schema
from tests.editor.conftest import problems, virtual
from tests.editor.lsp import Client

TWICE = """\
apiVersion: provisioner/v1
kind: Cell
metadata:
  name: web
---
apiVersion: provisioner/v1
kind: Cell
metadata:
  name: web/cache
spec:
  isolate_process: true
  isolateProcess: false
  depends_on: [Cell/web]
"""
# The last line is two spaces: where a new field of spec is typed.
CELL = (
    "apiVersion: provisioner/v1\nkind: Cell\nmetadata:\n  name: web\n"
    "spec:\n  cpu:\n    max: 5000\n  \n"
)


def test_both_spellings_are_refused_where_the_provisioner_refuses_them(editor: Client) -> None:
    path = virtual("examples/node/twice.yaml")
    issues = load_texts([(str(path), TWICE)]).issues
    assert [(i.line, i.message) for i in issues] == [
        (12, "given twice, as 'isolate_process' and 'isolateProcess'")]
    assert problems(editor.diagnose(path, TWICE)) == [
        (12, "given twice, as 'isolate_process' and 'isolateProcess'")]


def test_one_spelling_alone_is_fine_either_way(editor: Client) -> None:
    path = virtual("examples/node/once.yaml")
    for text in (TWICE.replace("  isolateProcess: false\n", ""),
                 TWICE.replace("  isolate_process: true\n", "")):
        assert problems(editor.diagnose(path, text)) == []
        assert load_texts([(str(path), text)]).issues == []


def test_both_spellings_are_refused_by_the_schema_itself() -> None:
    # Any draft-07 validator, not only the language server.
    validator = Draft7Validator(load_schema("manifest.schema.json"))
    doc: dict[str, Any] = {"apiVersion": "provisioner/v1", "kind": "Pod",
                           "metadata": {"name": "p"},
                           "spec": {"containers": [{"name": "a", "image": "oci:/i"}],
                                    "hostNetwork": True, "host_network": True}}
    errors = list(validator.iter_errors(doc))
    assert [e.message for e in errors] == ["False schema does not allow True"]
    assert "dependencies" in errors[0].schema_path
    del doc["spec"]["hostNetwork"]
    assert list(validator.iter_errors(doc)) == []


def completion_labels(editor: Client, text: str, line: int, character: int) -> list[str]:
    path = virtual("examples/node/complete.yaml")
    editor.diagnose(path, text)
    answer = editor.request("textDocument/completion", {
        "textDocument": {"uri": path.as_uri()},
        "position": {"line": line, "character": character}})
    items = answer["items"] if isinstance(answer, dict) else answer
    return sorted(item["label"] for item in items)


def test_completion_offers_one_spelling_of_each_field(editor: Client) -> None:
    assert completion_labels(editor, CELL, 7, 2) == [
        "cpuset", "dependsOn", "isolateNetwork", "isolateProcess"]
    executable = ("apiVersion: provisioner/v1\nkind: Executable\nmetadata:\n  name: x\n"
                  "spec:\n  command: x\n  \n")
    labels = completion_labels(editor, executable, 6, 2)
    assert "workingDir" in labels and "stopGracePeriod" in labels
    assert not [label for label in labels if "_" in label]


def hover(editor: Client, text: str, line: int, character: int) -> str:
    path = virtual("examples/node/hover.yaml")
    editor.diagnose(path, text)
    answer = editor.request("textDocument/hover", {
        "textDocument": {"uri": path.as_uri()},
        "position": {"line": line, "character": character}})
    value: str = answer["contents"]["value"]
    return value.replace("\\", "")  # markdown escapes


def test_hover_of_cpu_max_says_the_minimum_that_is_enforced(editor: Client) -> None:
    text = hover(editor, CELL, 6, 5)
    assert "Minimum: 0" not in text
    assert re.search(rf"Minimum: {MIN_CPU_MAX_US}\b", text), text
    low = CELL.replace("max: 5000", f"max: {MIN_CPU_MAX_US - 1}")
    path = virtual("examples/node/low.yaml")
    assert problems(editor.diagnose(path, low)) == [
        (7, f"Value is below the minimum of {MIN_CPU_MAX_US}.")]
    assert [i.line for i in load_texts([(str(path), low)]).issues] == [7]


def test_every_minimum_and_maximum_a_description_states_is_the_enforced_one() -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            text = node.get("description")
            if isinstance(text, str):
                for word, key in (("Minimum", "minimum"), ("Maximum", "maximum")):
                    for said in re.findall(rf"{word}: ([0-9_,]+)", text):
                        assert int(re.sub("[_,]", "", said)) == node.get(key), text
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(load_schema("manifest.schema.json"))
