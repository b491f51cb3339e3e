"""The generated schemas: draft-07, strict, complete with respect to the protos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from provisioner._proto.provisioner.v1 import manifest_pb2
from provisioner.manifest.overlay import KINDS
from provisioner.manifest.schema_check import load_schema
from provisioner.manifest.schema_gen import friendly_enum_value

MANIFESTS = Path(__file__).parent

NAMES = [f"{k.lower()}.schema.json" for k in KINDS] + ["manifest.schema.json"]


def objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            yield node
        for key, value in node.items():
            if key != "if":  # a condition (on kind) is no shape: it must stay open
                yield from objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from objects(item)


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_draft7(name: str) -> None:
    schema = load_schema(name)
    Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"


@pytest.mark.parametrize("name", NAMES)
def test_unknown_keys_are_refused_everywhere(name: str) -> None:
    found = list(objects(load_schema(name)))
    assert found
    assert all(obj.get("additionalProperties") is False for obj in found)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_proto_field_is_accepted_in_both_spellings(kind: str) -> None:
    schema = load_schema(f"{kind.lower()}.schema.json")
    message = KINDS[kind]["spec"].rsplit(".", 1)[1]
    descriptor = manifest_pb2.DESCRIPTOR.message_types_by_name[message]
    properties = schema["definitions"][KINDS[kind]["spec"]]["properties"]
    for field in descriptor.fields:
        assert field.name in properties
        assert field.json_name in properties
        snake = dict(properties[field.name])
        if field.json_name != field.name:  # the alias: accepted, not suggested
            assert snake.pop("doNotSuggest") is True
        assert snake == properties[field.json_name]


def test_overlay_ranges_and_descriptions_are_present() -> None:
    definitions = load_schema("cell.schema.json")["definitions"]
    weight = definitions["aurae.runtime.v0.CpuController"]["properties"]["weight"]
    assert (weight["minimum"], weight["maximum"]) == (1, 10000)
    assert "Weight of how much" in weight["description"]  # proto comment carried over


def test_enums_use_friendly_words() -> None:
    assert friendly_enum_value("RestartPolicy", "RESTART_POLICY_ON_FAILURE") == "on-failure"
    spec = load_schema("executable.schema.json")["definitions"]["provisioner.v1.ExecutableSpec"]
    assert spec["properties"]["restartPolicy"]["enum"] == ["never", "on-failure", "always"]


def test_whole_manifest_schema_dispatches_on_kind() -> None:
    validator = Draft7Validator(load_schema("manifest.schema.json"))
    good = {
        "apiVersion": "provisioner/v1",
        "kind": "Cell",
        "metadata": {"name": "web"},
        "spec": {"cpu": {"weight": 5}},
    }
    bad = {**good, "spec": {"cpu": {"weight": 0}}}
    assert not list(validator.iter_errors(good))
    assert list(validator.iter_errors(bad))


@pytest.mark.parametrize("kind", KINDS)
def test_the_generated_fast_check_is_used_and_agrees_with_a_fresh_compile(kind: str) -> None:
    """The pass/fail check comes from provisioner/_schemacheck (bytecode cached, nothing
    compiled per process), and passes and fails exactly what one compiled now does on the
    golden documents of that kind (valid and invalid)."""
    import yaml

    from provisioner.manifest.schema_check import CheckFailed, compile_pass_fail, fast_check_for

    generated = fast_check_for(kind)
    assert generated.func.__module__ == f"provisioner._schemacheck.{kind.lower()}"  # type: ignore[attr-defined]
    fresh = compile_pass_fail(load_schema(f"{kind.lower()}.schema.json"))

    def passes(check: Any, doc: object) -> bool:
        try:
            check(doc)
        except CheckFailed:
            return False
        return True

    docs = []
    for path in sorted(MANIFESTS.glob("*/*.yaml")):
        try:
            docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8-sig"))
                     if isinstance(d, dict) and d.get("kind") == kind]
        except (yaml.YAMLError, UnicodeDecodeError):  # the cases of broken files
            continue
    assert docs, f"no golden document of kind {kind}"
    verdicts = [passes(generated, d) for d in docs]
    assert verdicts == [passes(fresh, d) for d in docs]
    assert True in verdicts
