"""provisioner.records: the record classes behave as frozen dataclasses do, and refuse
what dataclasses refuse."""

from __future__ import annotations

import copy
import pickle
from typing import ClassVar

import pytest

from provisioner.records import (
    MISSING,
    FrozenRecordError,
    asdict,
    field,
    fields,
    is_record,
    record,
    replace,
)


@record
class Where:
    """A position (the model's Source stand-in)."""

    file: str = ""
    line: int = 0


@record
class Item:
    """Required, defaulted, factory and uncompared fields, a class variable, a method."""

    name: str
    count: int = 1
    tags: tuple[str, ...] = ()
    extra: list[str] = field(default_factory=list)
    where: Where = field(default=Where(), compare=False)
    kind: ClassVar[str] = "item"

    def doubled(self) -> int:
        return self.count * 2


@record
class Derived(Item):
    """Inherits Item's fields, adds one, overrides a default."""

    count: int = 5
    flag: bool = False


@record(order=True)
class Ranked:
    """Ordered by its fields, in order."""

    major: int
    minor: str = ""


@record(slots=True)
class Slotted:
    """A record with ``__slots__``."""

    x: int
    y: int = 0


@record(frozen=False)
class Mutable:
    """A mutable record."""

    x: int
    seen: dict[str, int] = field(default_factory=dict)


@record
class Checked:
    """Normalises itself in ``__post_init__``."""

    value: int
    double: int | None = None

    def __post_init__(self) -> None:
        if self.double is None:
            object.__setattr__(self, "double", self.value * 2)


def test_init_positional_keyword_defaults_and_factories() -> None:
    first = Item("a", 3, ("t",))
    assert (first.name, first.count, first.tags, first.extra, first.where) == (
        "a", 3, ("t",), [], Where())
    assert Item(name="b").count == 1
    assert Item("c").extra is not Item("c").extra  # one new list per instance
    assert first.doubled() == 6 and Item.kind == "item"
    assert "kind" not in [f.name for f in fields(Item)]


def test_init_errors_are_type_errors() -> None:
    with pytest.raises(TypeError, match="name"):
        Item()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="nope"):
        Item("a", nope=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Item("a", 1, (), [], Where(), "too many")  # type: ignore[call-arg]


def test_equality_and_hash_skip_uncompared_fields() -> None:
    here, there = Item("a", where=Where("a.yaml", 3)), Item("a", where=Where("b.yaml", 9))
    assert here == there and hash(Where("x", 1)) == hash(Where("x", 1))
    assert Item("a") != Item("b") and Item("a") != Item("a", count=2)
    assert Item("a") != Derived("a")  # another class is never equal
    assert Item("a").__eq__("a") is NotImplemented
    with pytest.raises(TypeError, match="unhashable"):
        hash(Item("a"))  # a list field: not hashable, as with dataclasses
    assert len({Where("a", 1), Where("a", 1), Where("b", 1)}) == 2


def test_frozen_refuses_assignment_and_deletion() -> None:
    item = Item("a")
    with pytest.raises(FrozenRecordError, match="count"):
        item.count = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del item.name
    with pytest.raises(FrozenRecordError):
        item.other = 1  # type: ignore[attr-defined]
    assert item.count == 1


def test_inheritance_orders_fields_base_first() -> None:
    assert [f.name for f in fields(Derived)] == ["name", "count", "tags", "extra", "where",
                                                  "flag"]
    derived = Derived("d")
    assert derived.count == 5 and derived.flag is False and derived.doubled() == 10


def test_repr_lists_fields() -> None:
    assert repr(Where("f", 2)) == "Where(file='f', line=2)"
    assert repr(Ranked(1)) == "Ranked(major=1, minor='')"


def test_order() -> None:
    assert sorted([Ranked(2), Ranked(1, "b"), Ranked(1, "a")]) == [
        Ranked(1, "a"), Ranked(1, "b"), Ranked(2)]
    assert Ranked(1) < Ranked(2) <= Ranked(2) and Ranked(3) > Ranked(2) >= Ranked(2)
    with pytest.raises(TypeError):
        assert Ranked(1) < Where()  # type: ignore[operator]


def test_slots() -> None:
    point = Slotted(1)
    assert Slotted.__slots__ == ("x", "y") and not hasattr(point, "__dict__")
    assert point == Slotted(1, 0) and replace(point, y=4).y == 4
    with pytest.raises(FrozenRecordError):
        point.x = 2  # type: ignore[misc]


def test_mutable() -> None:
    box = Mutable(1)
    box.x = 2
    box.seen["a"] = 1
    assert box == Mutable(2, {"a": 1})
    assert Mutable.__hash__ is None  # as a mutable dataclass: not hashable


def test_post_init() -> None:
    assert Checked(3).double == 6 and Checked(3, 7).double == 7


def test_replace_fields_asdict_is_record() -> None:
    item = Item("a", extra=["x"], where=Where("f", 1))
    changed = replace(item, count=4)
    assert changed.count == 4 and changed.name == "a" and item.count == 1
    with pytest.raises(TypeError, match="no field nope"):
        replace(item, nope=1)
    with pytest.raises(TypeError, match="not a record"):
        fields(object())
    assert asdict(item) == {"name": "a", "count": 1, "tags": (), "extra": ["x"],
                            "where": {"file": "f", "line": 1}}
    assert asdict(Mutable(1, {"k": 2}))["seen"] == {"k": 2}
    with pytest.raises(TypeError, match="needs a record"):
        asdict({"a": 1})
    assert is_record(item) and not is_record(Item) and not is_record({})
    defaults = {f.name: f.default for f in fields(Item)}
    assert defaults["name"] is MISSING and defaults["count"] == 1
    assert [f.name for f in fields(Item) if not f.compare] == ["where"]


def test_copy_and_pickle_round_trip() -> None:
    item = Item("a", 2, ("t",), ["x"], Where("f", 1))
    for clone in (copy.copy(item), copy.deepcopy(item), pickle.loads(pickle.dumps(item))):
        assert clone == item and clone.where == Where("f", 1)
    assert pickle.loads(pickle.dumps(Slotted(1, 2))) == Slotted(1, 2)


def test_match_args() -> None:
    match Where("f", 3):
        case Where(file, line):
            assert (file, line) == ("f", 3)
        case _:
            pytest.fail("no match")


def test_definition_errors() -> None:
    with pytest.raises(TypeError, match="without a default follows"):
        @record
        class Bad:
            """A required field after a defaulted one."""

            a: int = 0
            b: int  # type: ignore[misc]
    with pytest.raises(ValueError, match="mutable default list"):
        @record
        class Shared:
            """A plain list default would be shared by every instance."""

            a: list[int] = []
    with pytest.raises(ValueError, match="both"):
        field(default=1, default_factory=int)
    with pytest.raises(TypeError, match="frozen"):
        @record(frozen=False)
        class Thawed(Where):  # type: ignore[misc]
            """A mutable record cannot extend a frozen one."""

    with pytest.raises(TypeError, match="__setattr__"):
        @record
        class Settable:
            """A frozen record cannot define its own __setattr__."""

            a: int

            def __setattr__(self, name: str, value: object) -> None:
                raise AssertionError


def test_own_methods_are_kept() -> None:
    @record
    class Custom:
        """Defines __repr__ and __eq__ itself."""

        a: int

        def __repr__(self) -> str:
            return "custom"

        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return 7

    assert repr(Custom(1)) == "custom" and Custom(1) == Custom(2) and hash(Custom(1)) == 7


def test_init_compiled_on_first_instance_only() -> None:
    @record
    class Lazy:
        """Not yet made."""

        a: int

    assert type(Lazy.__dict__["__init__"]).__name__ == "_InitOnFirstUse"
    Lazy(1)
    assert callable(Lazy.__dict__["__init__"]) and Lazy(2).a == 2
    assert Lazy.__init__.__qualname__.endswith("Lazy.__init__")
