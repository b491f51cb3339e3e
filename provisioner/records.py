"""Records: classes of typed fields with the behaviour of ``dataclasses.dataclass``.

Why not dataclasses: ``@dataclass`` compiles five or six methods per class with
``exec`` when the class is made, ~1 ms a class. A command loads ~50 of them, so that
was a quarter of a ``provisioner apply`` (docs/pods.md). A record compiles only its
``__init__``, and only when the first instance is made; its ``__repr__``, ``__eq__``,
``__hash__`` and (frozen) ``__setattr__`` are shared functions that read the class's
field names, with ``operator.attrgetter`` building the tuples that ``__eq__`` and
``__hash__`` compare, as dataclasses' compiled ones do.

What is kept from dataclasses, and what is not:

* fields come from the class's annotations (``ClassVar`` ones excluded), inherited from
  record bases first; a default is the class attribute or :func:`field`'s
  ``default`` / ``default_factory``; a field without a default after one with a default
  is an error, as is a mutable (unhashable) plain default;
* ``__init__`` takes the fields positionally or by name, then calls ``__post_init__``
  if the class has one; ``frozen`` (the default) forbids assignment afterwards
  (:class:`FrozenRecordError`, an ``AttributeError``); ``order=True`` adds ``<`` etc.;
  ``slots=True`` makes the class again with ``__slots__``;
* ``field(compare=False)`` leaves a field out of ``==`` and ``hash``; ``repr=False``
  out of ``repr``;
* a method the class defines itself (``__repr__``, ``__eq__``, ``__hash__``,
  ``__init__``) is never replaced;
* no ``init=False`` fields, ``InitVar``, ``kw_only`` or ``unsafe_hash``;
  :func:`fields`, :func:`replace`, :func:`asdict` and :func:`is_record` take the place
  of dataclasses' functions.

Type checkers see records as dataclasses (``typing.dataclass_transform``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from operator import attrgetter

# Not typing's TYPE_CHECKING: records are made in every command, and importing typing
# costs ~3 ms a start. Type checkers read typing's dataclass_transform; at run time it
# only marks the function, so a stand-in that returns it does.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, TypeVar, dataclass_transform

    _R = TypeVar("_R")
else:
    def dataclass_transform(**_markers: object) -> Callable[[object], object]:
        return lambda function: function

__all__ = ["Field", "FrozenRecordError", "asdict", "field", "fields", "is_record",
           "record", "replace"]


class _Missing:
    """The "no default" marker (one instance, :data:`MISSING`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
_FIELDS = "__record_fields__"
_PARAMS = "__record_params__"


class FrozenRecordError(AttributeError):
    """An assignment to (or deletion of) a field of a frozen record."""


class Field:
    """One field of a record: its name, default or default factory, and whether it
    takes part in ``==`` / ``hash`` (``compare``) and ``repr``."""

    __slots__ = ("compare", "default", "default_factory", "name", "repr")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING,
                 compare: bool = True, repr: bool = True) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("a field cannot have both a default and a default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.compare = compare
        self.repr = repr

    def has_default(self) -> bool:
        """Whether ``__init__`` may leave the field out."""
        return self.default is not MISSING or self.default_factory is not MISSING

    def named(self, name: str) -> Field:
        """A copy of this field called ``name``."""
        copy = Field(self.default, self.default_factory, self.compare, self.repr)
        copy.name = name
        return copy

    def __repr__(self) -> str:
        return (f"Field(name={self.name!r}, default={self.default!r}, "
                f"default_factory={self.default_factory!r}, compare={self.compare})")


def field(*, default: Any = MISSING, default_factory: Callable[[], Any] | Any = MISSING,
          compare: bool = True, repr: bool = True) -> Any:
    """A field's options, as the value of its class attribute (as ``dataclasses.field``)."""
    return Field(default, default_factory, compare, repr)


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def record(cls: type | None = None, /, *, frozen: bool = True, order: bool = False,
           slots: bool = False) -> Any:
    """Make ``cls`` a record (``@record`` or ``@record(frozen=False, order=True)``)."""

    def wrap(cls: type) -> type:
        return _make_record(cls, frozen=frozen, order=order, slots=slots)

    return wrap if cls is None else wrap(cls)


def fields(record_or_class: object) -> tuple[Field, ...]:
    """The fields of a record or record class, in ``__init__``'s order."""
    found: tuple[Field, ...] | None = getattr(record_or_class, _FIELDS, None)
    if found is None:
        raise TypeError(f"{record_or_class!r} is not a record or a record class")
    return found


def is_record(value: object) -> bool:
    """Whether ``value`` is a record (an instance, not a class)."""
    return not isinstance(value, type) and hasattr(type(value), _FIELDS)


def replace(obj: _R, /, **changes: Any) -> _R:
    """A new record like ``obj`` with ``changes`` (field name -> value); an unknown name
    is a ``TypeError``, as the class's ``__init__`` would raise."""
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    unknown = changes.keys() - values.keys()
    if unknown:
        raise TypeError(f"{type(obj).__qualname__} has no field {', '.join(sorted(unknown))}")
    values.update(changes)
    return type(obj)(**values)


def asdict(obj: object) -> dict[str, Any]:
    """``obj``'s fields as a dict, records inside it (also in lists, tuples - named ones
    stay named - and dicts) turned into dicts too; other values are shared, not copied."""
    if not is_record(obj):
        raise TypeError(f"asdict() needs a record, not {type(obj).__name__}")
    out: dict[str, Any] = _plain(obj)
    return out


def _plain(value: Any) -> Any:
    if is_record(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        items = [_plain(v) for v in value]
        # (a named tuple takes its items as arguments, a tuple as one iterable)
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


# --- making a record ----------------------------------------------------------------


def _make_record(cls: type, *, frozen: bool, order: bool, slots: bool) -> type:
    own = cls.__dict__
    inherited: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get(_FIELDS, ()):
            inherited[f.name] = f
        params = base.__dict__.get(_PARAMS)
        if params is not None and params[0] != frozen:
            raise TypeError(f"{cls.__qualname__}: a {'frozen' if frozen else 'mutable'} "
                            f"record cannot inherit from a "
                            f"{'frozen' if params[0] else 'mutable'} one")
    for name, annotation in own.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        value = own.get(name, MISSING)
        spec = (value if isinstance(value, Field) else Field(default=value)).named(name)
        if spec.default is not MISSING and type(spec.default).__hash__ is None:
            raise ValueError(f"{cls.__qualname__}.{name}: mutable default "
                             f"{type(spec.default).__name__}; use default_factory")
        if isinstance(value, Field):
            if spec.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        inherited[name] = spec
    all_fields = tuple(inherited.values())
    _check_order(cls, all_fields)
    if slots:
        cls = _with_slots(cls, all_fields)
    setattr(cls, _FIELDS, all_fields)
    setattr(cls, _PARAMS, (frozen, order))
    own = cls.__dict__
    if "__match_args__" not in own:
        type.__setattr__(cls, "__match_args__", tuple(f.name for f in all_fields))
    if "__init__" not in own:
        cls.__init__ = _InitOnFirstUse(cls)  # type: ignore[misc]
    if "__repr__" not in own:
        cls.__repr__ = _repr  # type: ignore[assignment,method-assign]
    compared = _tuple_getter([f.name for f in all_fields if f.compare])
    if "__eq__" not in own:
        cls.__eq__ = _equality(compared)  # type: ignore[assignment,method-assign]
    if "__hash__" not in own or own["__hash__"] is None:
        # as dataclasses: frozen records hash their compared fields; mutable ones do not hash
        cls.__hash__ = _hasher(compared) if frozen else None  # type: ignore[assignment,method-assign]
    if order:
        _add_order(cls, compared)
    if frozen:
        _freeze(cls, frozenset(f.name for f in all_fields))
    return cls


def _is_classvar(annotation: object) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    typing = sys.modules.get("typing")  # (without typing loaded, nothing is a ClassVar)
    return typing is not None and getattr(annotation, "__origin__", annotation) is typing.ClassVar


def _check_order(cls: type, all_fields: tuple[Field, ...]) -> None:
    defaulted = None
    for f in all_fields:
        if f.has_default():
            defaulted = f.name
        elif defaulted is not None:
            raise TypeError(f"{cls.__qualname__}: field {f.name!r} without a default "
                            f"follows {defaulted!r}, which has one")
        if f.name.startswith("__rec_"):
            raise TypeError(f"{cls.__qualname__}: field names starting with __rec_ are "
                            "reserved")


def _with_slots(cls: type, all_fields: tuple[Field, ...]) -> type:
    """``cls`` made again with ``__slots__`` for its own fields (a class's slots cannot
    be added after it is made)."""
    inherited = {name for base in cls.__mro__[1:] for name in base.__dict__.get(
        "__slots__", ())}
    names = tuple(f.name for f in all_fields if f.name not in inherited)
    namespace = {k: v for k, v in cls.__dict__.items()
                 if k not in names and k not in ("__dict__", "__weakref__")}
    namespace["__slots__"] = names
    # (pickle and copy restore slots with setattr, which a frozen record refuses)
    namespace.setdefault("__getstate__", _slots_getstate)
    namespace.setdefault("__setstate__", _slots_setstate)
    remade: type = type(cls)(cls.__name__, cls.__bases__, namespace)
    remade.__qualname__ = cls.__qualname__
    return remade


def _slots_getstate(self: object) -> tuple[Any, ...]:
    return tuple(getattr(self, f.name) for f in fields(self))


def _slots_setstate(self: object, state: tuple[Any, ...]) -> None:
    for f, value in zip(fields(self), state, strict=True):
        object.__setattr__(self, f.name, value)


def _tuple_getter(names: list[str]) -> Callable[[object], tuple[Any, ...]]:
    """A function that returns the tuple of a record's values of ``names`` (what
    ``==``, ``hash`` and ordering compare)."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()


class _InitOnFirstUse:
    """The ``__init__`` of a record class until its first instance: compiles the real
    one, puts it on the class in its place, and runs it."""

    __slots__ = ("owner",)

    def __init__(self, owner: type) -> None:
        self.owner = owner

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        init = _compile_init(self.owner)
        type.__setattr__(self.owner, "__init__", init)
        return init if obj is None else init.__get__(obj, objtype)


def _compile_init(cls: type) -> Callable[..., None]:
    frozen = cls.__dict__[_PARAMS][0]
    scope: dict[str, Any] = {"__rec_set": object.__setattr__, "__rec_missing": MISSING}
    params: list[str] = []
    body: list[str] = []
    for f in fields(cls):
        name = f.name
        if f.default_factory is not MISSING:
            scope[f"__rec_factory_{name}"] = f.default_factory
            params.append(f"{name}=__rec_missing")
            value = f"__rec_factory_{name}() if {name} is __rec_missing else {name}"
        else:
            if f.default is not MISSING:
                scope[f"__rec_default_{name}"] = f.default
                params.append(f"{name}=__rec_default_{name}")
            else:
                params.append(name)
            value = name
        body.append(f"__rec_set(self, {name!r}, {value})" if frozen else
                    f"self.{name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    source = (f"def __init__(self, {', '.join(params)}):\n    "
              + "\n    ".join(body or ["pass"]) + "\n")
    exec(compile(source, f"<record {cls.__module__}.{cls.__qualname__}>", "exec"), scope)
    init: Callable[..., None] = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    return init


def _repr(self: object) -> str:
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
    return f"{type(self).__qualname__}({shown})"


def _equality(compared: Callable[[object], Any]) -> Callable[[object, object], Any]:
    def __eq__(self: object, other: object) -> Any:
        if other.__class__ is self.__class__:
            return compared(self) == compared(other)
        return NotImplemented

    return __eq__


def _hasher(compared: Callable[[object], Any]) -> Callable[[object], int]:
    def __hash__(self: object) -> int:
        return hash(compared(self))

    return __hash__


def _add_order(cls: type, compared: Callable[[object], Any]) -> None:
    def make(name: str, test: Callable[[Any, Any], bool]) -> Callable[[object, object], Any]:
        def compare(self: object, other: object) -> Any:
            if other.__class__ is self.__class__:
                return test(compared(self), compared(other))
            return NotImplemented

        compare.__name__ = name
        return compare

    for name, test in (("__lt__", lambda a, b: a < b), ("__le__", lambda a, b: a <= b),
                       ("__gt__", lambda a, b: a > b), ("__ge__", lambda a, b: a >= b)):
        if name in cls.__dict__:
            raise TypeError(f"{cls.__qualname__} defines {name}; order=True would replace it")
        setattr(cls, name, make(name, test))


def _freeze(cls: type, names: frozenset[str]) -> None:
    parent: Any = cls  # (mypy wants a class literal as super's first argument)
    for method in ("__setattr__", "__delattr__"):
        if method in cls.__dict__:
            raise TypeError(f"{cls.__qualname__} defines {method}; a frozen record cannot")

    def __setattr__(self: Any, name: str, value: object) -> None:
        if type(self) is cls or name in names:
            raise FrozenRecordError(f"cannot assign to field {name!r} of a frozen "
                                    f"{type(self).__qualname__}")
        super(parent, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise FrozenRecordError(f"cannot delete field {name!r} of a frozen "
                                    f"{type(self).__qualname__}")
        super(parent, self).__delattr__(name)

    cls.__setattr__ = __setattr__  # type: ignore[method-assign,assignment]
    cls.__delattr__ = __delattr__  # type: ignore[method-assign,assignment]
