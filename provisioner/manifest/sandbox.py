"""The Jinja2 environment manifest templates run in: a sandbox that cannot reach Python.

Built on :class:`jinja2.sandbox.ImmutableSandboxedEnvironment` (no ``_``-attributes, no
internal attributes of functions or frames, no mutating methods), and stricter:

- no loader: ``{% include %}``, ``{% import %}``, ``{% from %}`` and ``{% extends %}``
  are refused when the template is parsed (:func:`refuse_file_access`);
- globals are ``range`` (at most :data:`MAX_RANGE` items), ``dict`` and ``namespace``
  only (``lipsum``, ``cycler`` and ``joiner`` are gone);
- attributes of strings, numbers, lists, tuples and dicts are limited to a list of
  harmless methods (no ``encode``, ``translate``, ``to_bytes`` ...); attributes of
  classes are refused; an unsafe attribute is an error at once, not an undefined value;
- filters are a list of the data-shaping ones (no ``random``, ``wordwrap``, ``urlize``,
  ``pprint`` ...), each guarded;
- everything that can make a value grow (``*``, ``**``, ``+``, ``%``, ``~``, formatting,
  padding, ``replace``, ``join``) checks the size of its result before building it, and
  loops, calls, lookups and output check the render's deadline
  (see :mod:`provisioner.manifest.template_limits`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from types import BuiltinMethodType
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, _PassArg, pass_context

from provisioner.errors import LoadError
from provisioner.manifest.template_limits import (
    MAX_RANGE,
    TemplateLimitExceeded,
    budget,
    check_int_bits,
    check_printable,
    check_width,
    checked_iter,
    format_estimate,
    join_estimate,
    length_of,
    printf_estimate,
    replace_estimate,
)

#: Globals of a plain Jinja environment that manifest templates do not get.
REMOVED_GLOBALS = frozenset({"lipsum", "cycler", "joiner"})
#: Tags that would read other files; refused (templates have no loader).
FILE_TAGS: dict[type[nodes.Node], str] = {
    nodes.Extends: "extends", nodes.Include: "include", nodes.Import: "import",
    nodes.FromImport: "from ... import",
}
#: The filter every ``{% for %}`` iterable is passed through (a name no template can
#: write, so a template cannot call it or shadow it).
LOOP_GUARD = "provisioner loop guard"

_STR_ATTRS = frozenset({
    "capitalize", "casefold", "center", "count", "endswith", "find", "format", "format_map",
    "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier",
    "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "ljust",
    "lower", "lstrip", "partition", "removeprefix", "removesuffix", "replace", "rfind",
    "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines",
    "startswith", "strip", "swapcase", "title", "upper", "zfill",
})
_NUMBER_ATTRS = frozenset({"real", "imag", "numerator", "denominator", "bit_length",
                           "is_integer"})
_SEQUENCE_ATTRS = frozenset({"index", "count"})
_DICT_ATTRS = frozenset({"keys", "values", "items", "get"})
_PADDING = frozenset({"center", "ljust", "rjust", "zfill"})

#: Filters that keep their input's shape; every other allowed filter writes text.
_SHAPING_FILTERS = frozenset({
    "abs", "attr", "batch", "count", "d", "default", "dictsort", "first", "float",
    "groupby", "int", "items", "last", "length", "list", "map", "max", "min", "reject",
    "rejectattr", "reverse", "round", "select", "selectattr", "slice", "sort", "sum",
    "unique",
})
_TEXT_FILTERS = frozenset({
    "capitalize", "center", "format", "indent", "join", "lower", "replace", "string",
    "title", "tojson", "trim", "truncate", "upper", "urlencode", "wordcount",
})


def bounded_range(*args: int) -> range:
    """``range`` with at most MAX_RANGE items."""
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise TemplateLimitExceeded(
            f"range() of {len(items):,} items is over the limit of {MAX_RANGE:,}"
        )
    return items


def refuse_file_access(template: nodes.Template, file: str) -> None:
    """Manifest templates are self-contained: a tag that reads another file is refused."""
    for node in template.find_all(tuple(FILE_TAGS)):
        tag = FILE_TAGS[type(node)]
        raise LoadError(
            file,
            f"template error: {{% {tag} %}} is not allowed: manifest templates cannot "
            "read other files (put shared values in --vars-file instead)",
            node.lineno,
        )


def guard_loops(template: nodes.Template) -> None:
    """Pass every ``{% for %}`` iterable through the deadline-checking loop guard."""
    for loop in template.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, LOOP_GUARD, [], [], None, None,
                                 lineno=loop.iter.lineno)


@pass_context
def _loop_guard(context: Context, items: Iterable[Any]) -> Iterable[Any]:
    # pass_context: Jinja never evaluates it while compiling (constant folding).
    return checked_iter(items)


def _multiply(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int):
        check_int_bits(left.bit_length() + right.bit_length(), "'*'")
    else:
        sequence, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(times, int) and isinstance(sequence, str):
            budget().charge(len(sequence) * max(times, 0), "'*'")
        elif isinstance(times, int) and isinstance(sequence, (list, tuple)):
            budget().charge_items(len(sequence) * max(times, 0), "'*'")
    return left * right


def _power(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        check_int_bits(math.ceil(math.log2(abs(left)) * right), "'**'")
    return left**right


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, str) and isinstance(right, str):
        budget().charge(len(left) + len(right), "'+'")
    elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        budget().charge_items(len(left) + len(right), "'+'")
    return left + right


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        budget().charge(printf_estimate(left, right), "'%'")
    return left % right


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "*": _multiply, "**": _power, "+": _add, "%": _modulo,
}


def checked_concat(parts: tuple[Any, ...]) -> str:
    """The ``~`` operator: the size of the joined text checked before it is built."""
    size = 0
    for part in parts:
        check_printable(part, "'~'")
        size += length_of(part) or 16
    budget().charge(size, "'~'")
    return "".join(map(str, parts))


def _finalize(value: Any) -> Any:
    """Every ``{{ ... }}`` before it is written: time, and the size of its text."""
    budget().check_time()
    check_printable(value, "printing a value")
    return value


def _str_method_args(text: str, name: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Check a call of a growing string method before it runs; the arguments to call it
    with (``join`` gets its items as a list, counted once)."""
    what = f"str.{name}()"
    if name in _PADDING:
        width = args[0] if args else kwargs.get("width", 0)
        check_width(width, what)
    elif name == "replace" and len(args) >= 2:
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        if isinstance(args[0], str) and isinstance(args[1], str) and isinstance(count, int):
            budget().charge(replace_estimate(text, args[0], args[1], count), what)
    elif name == "join" and args:
        items = list(checked_iter(args[0]))
        for item in items:
            check_printable(item, what)
        budget().charge(join_estimate(items, text), what)
        return (items, *args[1:])
    return args


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with the deadline checked and, for filters that write text, the size of
    that text checked (before, where the arguments tell; after, in any case)."""
    skip = 1 if _PassArg.from_obj(func) is not None else 0
    writes_text = name in _TEXT_FILTERS

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        current = budget()
        current.check_time()
        given = args[skip:]
        if writes_text:
            for value in (*given, *kwargs.values()):
                check_printable(value, f"the '{name}' filter")
        args = (*args[:skip], *_filter_args(name, given, kwargs))
        result = func(*args, **kwargs)
        current.charge_value(result, f"the '{name}' filter")
        return result

    return guarded


def _filter_args(name: str, given: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Checks of the filters whose result can be much larger than their input."""
    what = f"the '{name}' filter"
    value = given[0] if given else None
    if name == "center":
        check_width(given[1] if len(given) > 1 else kwargs.get("width", 80), what)
    elif name == "indent" and isinstance(value, str):
        width = given[1] if len(given) > 1 else kwargs.get("width", 4)
        per_line = width if isinstance(width, int) else length_of(width)
        check_width(per_line, what)
        budget().charge(len(value) + (value.count("\n") + 1) * per_line, what)
    elif name == "format" and isinstance(value, str):
        budget().charge(printf_estimate(value, kwargs or tuple(given[1:])), what)
    elif name == "replace" and isinstance(value, str) and len(given) >= 3:
        count = given[3] if len(given) > 3 else kwargs.get("count")
        if isinstance(given[1], str) and isinstance(given[2], str):
            budget().charge(replace_estimate(value, given[1], given[2],
                                             count if isinstance(count, int) else -1), what)
    elif name == "join" and value is not None:
        items = list(checked_iter(value))
        separator = given[1] if len(given) > 1 else kwargs.get("d", "")
        for item in items:
            check_printable(item, what)
        budget().charge(join_estimate(items, separator if isinstance(separator, str) else ""),
                        what)
        return (items, *given[1:])
    elif name == "sum":
        start = given[2] if len(given) > 2 else kwargs.get("start", 0)
        if not isinstance(start, (int, float)):
            raise TemplateLimitExceeded("the 'sum' filter adds numbers only")
    elif name in ("batch", "slice"):
        count = given[1] if len(given) > 1 else kwargs.get("linecount", kwargs.get("slices"))
        if isinstance(count, int) and count > MAX_RANGE:
            raise TemplateLimitExceeded(f"the '{name}' filter asks for {count:,} parts, over "
                                        f"the limit of {MAX_RANGE:,}")
    return given


class _GuardedCodeGenerator(CodeGenerator):
    """Compiles ``~`` into a size-checked join (Jinja's own has no hook for it)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class ManifestSandbox(ImmutableSandboxedEnvironment):
    """The one environment every manifest template is rendered in (CLI, daemon clients,
    Ansible modules all load manifests through :func:`provisioner.manifest.load`)."""

    intercepted_binops = frozenset(_BINOPS)
    code_generator_class = _GuardedCodeGenerator

    def __init__(self) -> None:
        # Manifests are YAML, not HTML: autoescaping would corrupt values.
        super().__init__(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                         autoescape=False, loader=None, finalize=_finalize,
                         optimized=False)  # no constant folding: nothing runs at compile
        self.globals = {"range": bounded_range, "dict": dict, "namespace": Namespace}
        self.filters = {name: _guard_filter(name, FILTERS[name])
                        for name in sorted(_SHAPING_FILTERS | _TEXT_FILTERS)}
        self.filters[LOOP_GUARD] = _loop_guard
        self.checked_concat = checked_concat

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Only allow-listed attributes of plain data (no types, no bytes, no dunder)."""
        if isinstance(obj, (type, bytes, bytearray, memoryview)):
            return False
        if isinstance(obj, str):
            return attr in _STR_ATTRS
        if isinstance(obj, (int, float)):
            return attr in _NUMBER_ATTRS
        if isinstance(obj, (list, tuple)):
            return attr in _SEQUENCE_ATTRS
        if isinstance(obj, dict):
            return attr in _DICT_ATTRS
        return bool(super().is_safe_attribute(obj, attr, value))

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        """Refuse an attribute the sandbox hides, naming it (SecurityError)."""
        if isinstance(obj, jinja2.Undefined):  # say what is undefined, not '__init__'
            obj._fail_with_undefined_error()
        raise SecurityError(
            f"attribute {attribute!r} of a {type(obj).__name__} is not reachable from "
            "manifest templates (sandbox)"
        )

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Attribute access, with the render deadline checked."""
        budget().check_time()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """Item access, with the render deadline checked."""
        budget().check_time()
        return super().getitem(obj, argument)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """A binary operator with bounded operands (sizes, powers) and the deadline checked."""
        budget().check_time()
        return _BINOPS[operator](left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` with every argument width bounded."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text: str = value.__self__
        is_map = value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            named = args[0] if is_map and args and isinstance(args[0], dict) else kwargs
            budget().charge(format_estimate(text, () if is_map else args, named),
                            f"str.{value.__name__}()")
            return wrapped(*args, **kwargs)

        return checked

    def call(__self, __context: Context, __obj: Any,
             *args: Any, **kwargs: Any) -> Any:
        """Call an allowed function or method, with its arguments' sizes bounded and
        the deadline checked.
        """
        current = budget()
        current.check_time()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and isinstance(__obj, BuiltinMethodType):
            args = _str_method_args(owner, __obj.__name__, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        current.charge_value(result, "a call")
        return result
