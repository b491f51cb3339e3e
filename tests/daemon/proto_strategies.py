"""Hypothesis strategies for any protobuf message, built from its descriptor.

Every field may be absent or set; strings include what attacks path handling ('../',
'/', NUL, a trailing newline, huge, any unicode) next to names that pass validation
(so that deeper code is reached too); numbers include each type's extremes; repeated
fields and maps get a few items; at most one field of a oneof is set; nesting stops at
``MAX_DEPTH``.

One exception: a field named ``command`` is something the daemon would *run* as root,
so it never gets arbitrary shell text; it gets commands that do nothing (``true``, a
shell comment) or that must be refused (empty, NUL, longer than the kernel takes).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from provisioner.node.process.exec_limits import MAX_ARG_STRLEN

__all__ = ["message_strategy"]

MAX_DEPTH = 4
HOSTILE_STRINGS = [
    "", ".", "..", "../", "../run", "../../etc/passwd", "/", "/etc", "a/b", "a/../b",
    "web\n", "\0", "a\0b", " ", "-", "a.b", "a.b.c", ".hidden", "x" * 64, "x" * 300,
    "\u00e9t\u00e9", "\U0001f600", "\ud7ff", "%2e%2e%2f", "~", "$(id)", "`id`", "*",
]
#: Names that pass the daemon's checks, so that a request can get past them.
VALID_NAMES = ["fz1", "fz2", "web", "web/cache", "fz1.c1", "v1", "1.0", "raft", "default"]
HUGE = 3 * 1024 * 1024 // 8  # a few hundred KiB: large, but under the message limit

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


_EDGES = (0, 1, -1, 2**31 - 1, -2**31, 2**32 - 1, 10**9, 2**53, 2**62, 2**63 - 1, -2**63,
          2**64 - 1)


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in _EDGES if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(HOSTILE_STRINGS), st.sampled_from(VALID_NAMES),
        st.text(max_size=40),
        st.builds(lambda c, n: c * n, st.sampled_from("xa/"), st.sampled_from([HUGE, 70_000])),
    )


def commands() -> st.SearchStrategy[str]:
    """What a ``command`` field gets: harmless to run, or to be refused."""
    comment = st.text(max_size=40).map(
        lambda t: "# " + t.replace("\n", " ").replace("\r", " ").replace("\0", ""))
    return st.one_of(
        st.sampled_from(["true", "exit 3", "", "   ", "true\0x", "#",
                         "true # " + "x" * MAX_ARG_STRLEN]),
        comment)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return commands() if field.name == "command" else strings()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"\0" * HUGE))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32, allow_nan=True, allow_infinity=True)
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), _integers(-2**31, 2**31 - 1))
    if kind in _INT_RANGES:
        return _integers(*_INT_RANGES[kind])
    raise AssertionError(f"no strategy for {field.full_name} (type {kind})")


def _single(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_strategy(field.message_type, depth + 1)
    return _scalar(field)


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    """The strategy of one field's value; None when nesting is too deep to go on."""
    if field.type == FieldDescriptor.TYPE_MESSAGE and depth >= MAX_DEPTH:
        return None
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        key, value = message.fields_by_name["key"], message.fields_by_name["value"]
        value_strategy = _value(value, depth + 1)
        if value_strategy is None:
            return None
        return st.dictionaries(_scalar(key), value_strategy, max_size=3)
    if field.is_repeated:
        return st.lists(_single(field, depth), max_size=3)
    return _single(field, depth)


def message_strategy(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type with any field values (see the module doc)."""
    cls = message_factory.GetMessageClass(descriptor)
    in_oneof = {f.name for oneof in descriptor.oneofs for f in oneof.fields}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.name in in_oneof:
            continue
        value = _value(field, depth)
        if value is not None:
            optional[field.name] = value
    oneofs = []
    for oneof in descriptor.oneofs:
        choices = [st.tuples(st.just(f.name), v) for f in oneof.fields
                   if (v := _value(f, depth)) is not None]
        oneofs.append(st.one_of(st.none(), *choices) if choices else st.none())

    def build(fields: dict[str, Any], chosen: list[tuple[str, Any] | None]) -> Message:
        for pick in chosen:
            if pick is not None:
                fields[pick[0]] = pick[1]
        return cls(**fields)

    return st.builds(build, st.fixed_dictionaries({}, optional=optional),
                     st.tuples(*oneofs).map(list))
