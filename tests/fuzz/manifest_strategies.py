"""Hypothesis strategies for documents shaped like manifests, derived from the JSON
Schemas the validator uses (so a new field is fuzzed without touching this file).

Each value follows its schema most of the time (field names, enums, ranges, patterns)
and is, now and then, replaced by arbitrary JSON, a field is dropped or an unknown one
added: mostly-valid documents reach the deep checks (cross references, the model),
the rest exercise the error paths.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

SCHEMAS = Path(__file__).parents[2] / "provisioner" / "schemas"
KINDS = ("Cell", "Executable", "Pod", "Driver", "PersistentExecutable")

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
any_json = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
#: Names that are often valid DNS labels or cell paths, sometimes not.
names = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9](/[a-z][a-z0-9]{0,5}){0,2}", fullmatch=True),
    st.text(max_size=20),
)


@cache
def _schema(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{kind.lower()}.schema.json").read_text())
    return loaded


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        resolved: dict[str, Any] = root["definitions"][ref[len("#/definitions/"):]]
        return resolved
    return node


def mostly(usual: Any, rare: Any, one_in: int = 12) -> Any:
    """``usual``, and once in ``one_in`` draws ``rare``."""
    return st.integers(1, one_in).flatmap(lambda n: rare if n == 1 else usual)


def from_schema(node: dict[str, Any], root: dict[str, Any], depth: int = 0) -> Any:
    """A strategy for values of ``node``: usually shaped by it, sometimes anything."""
    shaped = _shaped(_resolve(node, root), root, depth)
    return mostly(shaped, any_json) if depth else shaped


def _shaped(node: dict[str, Any], root: dict[str, Any], depth: int) -> Any:
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        return _object(node, root, depth)
    if kind == "array":
        items = node.get("items", {})
        return st.lists(from_schema(items, root, depth + 1), max_size=3)
    if kind == "integer":
        low, high = node.get("minimum", -(2**40)), node.get("maximum", 2**40)
        return st.one_of(st.integers(low, high), st.sampled_from([low - 1, high + 1, 0]))
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        pattern = node.get("pattern")
        if pattern and depth < 6:
            return mostly(st.from_regex(pattern, fullmatch=True), st.text(max_size=20), 6)
        return st.one_of(names, st.sampled_from(["10s", "1m30s", "99999999h", "-1s", "/bin",
                                                 "sleep 1", "on-failure", "0-1", ""]))
    return any_json


def _object(node: dict[str, Any], root: dict[str, Any], depth: int) -> Any:
    properties: dict[str, Any] = node.get("properties", {})
    if depth > 5 or not properties:
        extra = node.get("additionalProperties")
        values = from_schema(extra, root, depth + 1) if isinstance(extra, dict) else any_json
        return st.dictionaries(st.one_of(names, st.text(max_size=10)), values, max_size=3)
    required = set(node.get("required", ()))
    fields = {key: from_schema(value, root, depth + 1) for key, value in properties.items()}
    return st.fixed_dictionaries(
        {key: fields[key] for key in properties if key in required},
        optional={key: fields[key] for key in properties if key not in required},
    ).flatmap(lambda shaped: mostly(
        st.just(shaped),
        st.dictionaries(st.text(max_size=10), any_json, max_size=2).map(
            lambda extra: {**extra, **shaped}),
    ))


@st.composite
def document(draw: st.DrawFn) -> dict[str, Any]:
    """One manifest document of a random kind (its metadata.name often a fitting one)."""
    kind = draw(st.sampled_from(KINDS))
    schema = _schema(kind)
    doc: dict[str, Any] = draw(from_schema(schema, schema))
    if isinstance(doc.get("metadata"), dict) and draw(st.booleans()):
        doc["metadata"]["name"] = draw(names)
    return doc


documents = st.lists(document(), min_size=1, max_size=6)
