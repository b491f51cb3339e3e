"""Generate the manifest JSON Schemas (draft-07) from the proto descriptors.

Run through ``scripts/generate.py``; never at run time. Every message reachable from a
kind's spec becomes a definition; every field is accepted under its proto name
(snake_case) and its JSON name (lowerCamelCase), as protobuf's JSON mapping does, but
not both at once (a draft-07 ``dependencies`` rule), and editors suggest only the
lowerCamelCase one (``doNotSuggest`` on the alias); enum values are written as friendly
lowercase words (``RESTART_POLICY_ON_FAILURE`` -> ``on-failure``); proto comments
become descriptions, so editors show them on hover, unless the overlay replaces one
that is not true here. ``overlay.py`` adds what protos cannot say.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2 as d

from provisioner.manifest import overlay

DRAFT = "http://json-schema.org/draft-07/schema#"
API_VERSION = "provisioner/v1"
PROTOS = Path(__file__).resolve().parents[2] / "protos"

_F = d.FieldDescriptorProto
_INT_RANGES = {
    _F.TYPE_INT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1),
    _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _F.TYPE_UINT64: (0, 2**64 - 1),
    _F.TYPE_FIXED64: (0, 2**64 - 1),
}


def friendly_enum_value(enum_name: str, value_name: str) -> str:
    """``RestartPolicy``, ``RESTART_POLICY_ON_FAILURE`` -> ``on-failure``."""
    prefix = "".join("_" + c if c.isupper() else c for c in enum_name).lstrip("_").upper() + "_"
    short = value_name[len(prefix) :] if value_name.startswith(prefix) else value_name
    return short.lower().replace("_", "-")


def descriptor_set() -> d.FileDescriptorSet:
    """Compile protos/ with comments kept (needs grpcio-tools, a dev dependency)."""
    from grpc_tools import protoc

    include = Path(protoc.__file__).parent / "_proto"
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "set.pb")
        args = [
            "protoc",
            f"-I{PROTOS}",
            f"-I{include}",
            "--include_source_info",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *sources,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        fds: d.FileDescriptorSet = d.FileDescriptorSet.FromString(out.read_bytes())
        return fds


class _Index:
    """Messages, enums and comments of a descriptor set, by full name."""

    def __init__(self, fds: d.FileDescriptorSet) -> None:
        self.messages: dict[str, d.DescriptorProto] = {}
        self.enums: dict[str, d.EnumDescriptorProto] = {}
        self.comments: dict[str, str] = {}
        for file in fds.file:
            located = {
                tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location
            }
            for i, msg in enumerate(file.message_type):
                self._add_message(f"{file.package}.{msg.name}", msg, (4, i), located)
            for i, enum in enumerate(file.enum_type):
                self.enums[f"{file.package}.{enum.name}"] = enum
                self._comment(f"{file.package}.{enum.name}", located.get((5, i)))

    def _add_message(
        self,
        name: str,
        msg: d.DescriptorProto,
        path: tuple[int, ...],
        located: dict[tuple[int, ...], str],
    ) -> None:
        self.messages[name] = msg
        self._comment(name, located.get(path))
        for i, field in enumerate(msg.field):
            self._comment(f"{name}.{field.name}", located.get((*path, 2, i)))
        for i, nested in enumerate(msg.nested_type):
            self._add_message(f"{name}.{nested.name}", nested, (*path, 3, i), located)
        for nested_enum in msg.enum_type:
            self.enums[f"{name}.{nested_enum.name}"] = nested_enum

    def _comment(self, name: str, text: str | None) -> None:
        if text and text.strip():
            lines = [line.strip() for line in text.strip().splitlines()]
            self.comments[name] = "\n".join(lines)


class _Builder:
    def __init__(self, index: _Index) -> None:
        self.index = index
        self.definitions: dict[str, Any] = {}

    def message(self, full_name: str) -> dict[str, Any]:
        ref = {"$ref": f"#/definitions/{full_name}"}
        if full_name in self.definitions:
            return ref
        self.definitions[full_name] = {}  # placeholder against recursion
        msg = self.index.messages[full_name]
        properties: dict[str, Any] = {}
        twice: dict[str, Any] = {}
        defaults = overlay.DEFAULTS.get(full_name, {})
        for field in msg.field:
            schema = self.field(full_name, field)
            extra = overlay.FIELDS.get(full_name, {}).get(field.name)
            if extra:
                schema = _merge(schema, extra)
            if field.name in defaults:
                schema["default"] = defaults[field.name]
            described = overlay.DESCRIPTIONS.get(full_name, {}).get(field.name) or (
                self.index.comments.get(f"{full_name}.{field.name}"))
            limit = (extra or {}).get("description")  # the overlay's word on the limit
            if described and limit:
                schema["description"] = f"{described}\n{limit}"
            elif described:
                schema["description"] = described
            properties[field.name] = schema
            if field.json_name != field.name:
                properties[field.json_name] = copy.deepcopy(schema)
                # Completion offers one spelling: the snake_case alias is still
                # accepted, but hidden ("doNotSuggest" is honoured by the YAML and
                # JSON language servers; other validators ignore the keyword).
                schema["doNotSuggest"] = True
                twice[field.name] = _not_twice(field.name, field.json_name)
        definition: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": properties,
        }
        if twice:
            definition["dependencies"] = twice
        required = overlay.REQUIRED.get(full_name)
        if required:
            definition["required"] = required
        if full_name in self.index.comments:
            definition["description"] = self.index.comments[full_name]
        self.definitions[full_name] = definition
        return ref

    def field(self, owner: str, field: d.FieldDescriptorProto) -> dict[str, Any]:
        type_name = field.type_name.lstrip(".")
        if field.type == _F.TYPE_MESSAGE:
            entry = self.index.messages[type_name]
            if entry.options.map_entry:
                return {"type": "object", "additionalProperties": self.scalar(entry.field[1])}
        item = self.scalar(field)
        if field.label == _F.LABEL_REPEATED:
            return {"type": "array", "items": item}
        return item

    def scalar(self, field: d.FieldDescriptorProto) -> dict[str, Any]:
        type_name = field.type_name.lstrip(".")
        if field.type == _F.TYPE_MESSAGE:
            return self.message(type_name)
        if field.type == _F.TYPE_ENUM:
            enum = self.index.enums[type_name]
            values = [friendly_enum_value(enum.name, v.name) for v in enum.value if v.number != 0]
            return {"type": "string", "enum": values}
        if field.type in (_F.TYPE_STRING, _F.TYPE_BYTES):
            return {"type": "string"}
        if field.type == _F.TYPE_BOOL:
            return {"type": "boolean"}
        if field.type in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
            return {"type": "number"}
        low, high = _INT_RANGES[field.type]
        return {"type": "integer", "minimum": low, "maximum": high}


def _not_twice(snake: str, camel: str) -> dict[str, Any]:
    """Draft-07 ``dependencies`` entry: with ``snake`` present, ``camel`` is refused.

    ``errorMessage`` (a language-server keyword, ignored by validators) makes the
    editor say what ``provisioner validate`` says, at the same key.
    """
    return {
        "properties": {camel: False},
        "errorMessage": f"given twice, as {snake!r} and {camel!r}",
    }


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _metadata(kind: str, info: dict[str, Any], builder: _Builder) -> dict[str, Any]:
    builder.message("provisioner.v1.ObjectMeta")
    meta: dict[str, Any] = copy.deepcopy(builder.definitions["provisioner.v1.ObjectMeta"])
    meta["properties"]["name"]["pattern"] = info["name"]
    meta["properties"]["name"]["description"] = f"{kind} name: {info['name_help']}."
    return meta


def kind_schema(kind: str, index: _Index, standalone: bool = True) -> dict[str, Any]:
    """The JSON Schema of one kind's documents (``standalone``: with its own ``$schema``
    and definitions; else for embedding in the manifest schema).
    """
    info = overlay.KINDS[kind]
    builder = _Builder(index)
    spec_ref = builder.message(info["spec"])
    required = ["apiVersion", "kind", "metadata"] + (["spec"] if info["spec_required"] else [])
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": {
            "apiVersion": {"const": API_VERSION, "description": "Always provisioner/v1."},
            "kind": {"const": kind},
            "metadata": _metadata(kind, info, builder),
            "spec": spec_ref,
        },
    }
    if standalone:
        schema = {
            "$schema": DRAFT,
            "$id": f"{kind.lower()}.schema.json",
            "title": kind,
            "description": index.comments.get(info["spec"], kind),
            **schema,
            "definitions": dict(sorted(builder.definitions.items())),
        }
    else:
        schema["definitions"] = builder.definitions
    return schema


def manifest_schema(index: _Index) -> dict[str, Any]:
    """One schema for any document of a manifest file, whatever its kind.

    It dispatches on ``kind`` (draft-07 ``if`` / ``then``), so that one association
    (a ``yaml.schemas`` glob, a catalog entry) validates every document of a
    multi-document file, each against its own kind's schema.
    """
    definitions: dict[str, Any] = {}
    branches = []
    for kind in overlay.KINDS:
        part = kind_schema(kind, index, standalone=False)
        definitions.update(part.pop("definitions"))
        definitions[kind] = part
        branches.append(
            {
                "if": {
                    "type": "object",
                    "properties": {"kind": {"const": kind}},
                    "required": ["kind"],
                },
                "then": {"$ref": f"#/definitions/{kind}"},
            }
        )
    return {
        "$schema": DRAFT,
        "$id": "manifest.schema.json",
        "title": "provisioner manifest document",
        "description": "One document of a provisioner manifest file (multi-document YAML).",
        # An empty document (a leading or trailing '---') is skipped by the loader.
        "type": ["object", "null"],
        "additionalProperties": False,
        "required": ["apiVersion", "kind"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"enum": list(overlay.KINDS)},
            "metadata": {"type": "object"},
            "spec": {"type": "object"},
        },
        "allOf": branches,
        "definitions": dict(sorted(definitions.items())),
    }


def build_schemas(fds: d.FileDescriptorSet) -> dict[str, dict[str, Any]]:
    """Every schema file's name and content, derived from the descriptor set ``fds``."""
    index = _Index(fds)
    schemas = {f"{kind.lower()}.schema.json": kind_schema(kind, index) for kind in overlay.KINDS}
    schemas["manifest.schema.json"] = manifest_schema(index)
    return schemas


def write_schemas(out: Path) -> None:
    """Write every schema file into ``out`` (what ``scripts/generate.py`` calls)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in build_schemas(descriptor_set()).items():
        (out / name).write_text(json.dumps(schema, indent=2, sort_keys=False) + "\n")
