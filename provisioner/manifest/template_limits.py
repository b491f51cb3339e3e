"""The bounds of manifest templating, and the arithmetic that keeps a render inside them.

A template may compute, but a render must end quickly and stay small whatever the
template does. Everything that could make a value grow (operators, formatting,
padding, replacing, joining) estimates the size of its result *before* building it;
loops, calls, attribute lookups and output check a wall-clock deadline. The estimates
count characters for strings and items for lists, and count a container as printed:
a list that holds the same sub-list ten times costs ten times that sub-list (what
``str()`` of it would write), so nested references cannot "billion-laugh" a render.

Messages name limits and types, never values: a variable may hold a secret.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jinja2.exceptions import SecurityError

from provisioner.manifest.yamlsafe import MAX_FILE_BYTES
from provisioner.records import record

#: Most items one ``range()`` may have.
MAX_RANGE = 10_000
#: CPU time one file may take to render (CPU, not wall-clock, time: a busy machine
#: must not make a good template fail; a template cannot wait on anything).
MAX_RENDER_SECONDS = 2.0
#: The clock is read every this many checks (reading it costs about a microsecond).
_CLOCK_EVERY = 32
#: Most characters a rendered file may have: the limit of a manifest file.
MAX_OUTPUT_CHARS = MAX_FILE_BYTES
#: Most characters one string built by a template may have (and most characters the
#: text of a list or dict may have when it is printed).
MAX_VALUE_SIZE = MAX_FILE_BYTES
#: Most items one list or tuple built by a template may have.
MAX_ITEMS = 1_000_000
#: What one list item counts for in MAX_BUILT_TOTAL (a reference: 8 bytes).
ITEM_COST = 8
#: Most characters all values built during one render may add up to (list items
#: counted as ITEM_COST characters).
MAX_BUILT_TOTAL = 4 * MAX_FILE_BYTES
#: Largest integer an operator may produce, in bits (about 1,200 decimal digits).
MAX_INT_BITS = 4096
#: Widest field or precision in a format (``%10s``, ``{:>10}``) or padding method.
MAX_FORMAT_WIDTH = 10_000


class TemplateLimitExceeded(SecurityError):
    """A render went past one of the bounds above (a Jinja ``SecurityError``, so it
    carries the template line like any other template error)."""


@record(frozen=False)
class RenderBudget:
    """What one render may still spend: CPU time and characters built."""

    deadline: float  # on the clock of time.thread_time()
    built: int = 0
    ticks: int = 0

    def check_time(self) -> None:
        """Raise TemplateLimitExceeded once the CPU-time deadline of this file passed
        (the clock is read every few hundred checks).
        """
        self.ticks += 1
        if self.ticks % _CLOCK_EVERY == 0 and time.thread_time() > self.deadline:
            raise TemplateLimitExceeded(
                f"rendering took longer than {MAX_RENDER_SECONDS:g} s (the limit per file); "
                "a loop or recursion is too large"
            )

    def charge(self, size: int, what: str) -> None:
        """Account for a string of ``size`` characters about to be built by ``what``."""
        if size > MAX_VALUE_SIZE:
            raise TemplateLimitExceeded(
                f"{what} would build a value of {size:,} characters, over the limit of "
                f"{MAX_VALUE_SIZE:,}"
            )
        self._add(size)

    def charge_items(self, count: int, what: str) -> None:
        """Account for a list or tuple of ``count`` items about to be built by ``what``."""
        if count > MAX_ITEMS:
            raise TemplateLimitExceeded(
                f"{what} would build a list of {count:,} items, over the limit of "
                f"{MAX_ITEMS:,}"
            )
        self._add(count * ITEM_COST)

    def charge_value(self, value: Any, what: str) -> None:
        """Account for a string or list just built (by code that could not tell before)."""
        if isinstance(value, str):
            self.charge(len(value), what)
        elif isinstance(value, (list, tuple)):
            self.charge_items(len(value), what)

    def _add(self, size: int) -> None:
        self.built += size
        if self.built > MAX_BUILT_TOTAL:
            raise TemplateLimitExceeded(
                f"the template builds more than {MAX_BUILT_TOTAL:,} characters of values in "
                "all (the limit per file)"
            )
        self.check_time()


_CURRENT: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar(
    "provisioner_render_budget", default=None
)


def start_budget() -> contextvars.Token[RenderBudget | None]:
    """Start the render budget of one file (call :func:`end_budget` with the token)."""
    return _CURRENT.set(RenderBudget(time.thread_time() + MAX_RENDER_SECONDS))


def end_budget(token: contextvars.Token[RenderBudget | None]) -> None:
    """End the render budget started with :func:`start_budget`."""
    _CURRENT.reset(token)


def budget() -> RenderBudget:
    """The budget of the render running in this context; outside one (Jinja folding
    constants while compiling) a fresh budget, so the size checks still hold."""
    current = _CURRENT.get()
    return current if current is not None else RenderBudget(
        time.thread_time() + MAX_RENDER_SECONDS)


def printed_size(value: Any) -> int:
    """About how many characters ``str(value)`` writes (containers expanded, shared
    parts counted each time they appear, computed once per object)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return 8
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        # A memo per call: ids are only stable while the objects are alive.
        return _container_size(value, {}, 0)
    return 64


def _container_size(value: Any, memo: dict[int, int], depth: int) -> int:
    key = id(value)
    known = memo.get(key)
    if known is not None:
        return known
    if depth > 200:
        raise TemplateLimitExceeded("a value is nested more than 200 levels deep")
    items: Iterable[Any] = (
        (part for pair in value.items() for part in pair) if isinstance(value, dict) else value
    )
    total = 2
    for item in items:
        if isinstance(item, (list, tuple, dict, set, frozenset)):
            total += _container_size(item, memo, depth + 1) + 2
        else:
            total += printed_size(item) + 2
        if total > MAX_VALUE_SIZE:  # no need to count further: the answer is "too big"
            break
    memo[key] = total
    return total


def check_printable(value: Any, what: str) -> None:
    """Refuse to turn a container into text when that text would be too large."""
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        size = printed_size(value)
        if size > MAX_VALUE_SIZE:
            raise TemplateLimitExceeded(
                f"{what} would turn a {type(value).__name__} of about {size:,} characters "
                f"into text, over the limit of {MAX_VALUE_SIZE:,}"
            )


def length_of(value: Any) -> int:
    """The length of a string or the printed size of a container, else 0."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return printed_size(value)
    return 0


def check_int_bits(bits: int, what: str) -> None:
    """Refuse an integer result of about ``bits`` bits when that is over the limit."""
    if bits > MAX_INT_BITS:
        raise TemplateLimitExceeded(f"{what} would produce an integer of about {bits:,} "
                                    f"bits, over the limit of {MAX_INT_BITS:,}")


def check_width(width: Any, what: str) -> None:
    """Refuse a format width beyond the limit."""
    if isinstance(width, int) and width > MAX_FORMAT_WIDTH:
        raise TemplateLimitExceeded(
            f"{what} asks for a width of {width:,}, over the limit of {MAX_FORMAT_WIDTH:,}"
        )


# printf-style conversions: %[(key)][flags][width][.precision][length]type
_PRINTF_RE = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.S)
_NUMBER_RE = re.compile(r"\d+")


def printf_estimate(fmt: str, args: Any) -> int:
    """Upper bound of ``len(fmt % args)``, or TemplateLimitExceeded for a field wider
    than the limit or a width taken from an argument (``%*d``)."""
    values = list(args.values()) if isinstance(args, Mapping) else (
        list(args) if isinstance(args, tuple) else [args])
    widest_arg = max((printed_size(v) for v in values), default=0)
    total = len(fmt)
    for match in _PRINTF_RE.finditer(fmt):
        width, precision, kind = match.groups()
        if kind == "%":
            continue
        if "*" in (width, precision):
            raise TemplateLimitExceeded("a '%*' width or precision taken from an argument "
                                        "is not supported in manifest templates")
        for number in (width, precision):
            if number:
                check_width(int(number), "a '%' format")
        total += int(width or 0) + int(precision or 0) + widest_arg + 32
    return total


def format_estimate(fmt: str, args: Iterable[Any], kwargs: Mapping[str, Any]) -> int:
    """Upper bound of ``len(fmt.format(*args, **kwargs))`` (see printf_estimate)."""
    import string

    widest_arg = max((printed_size(v) for v in [*args, *kwargs.values()]), default=0)
    total = len(fmt)
    for _literal, name, spec, _conversion in string.Formatter().parse(fmt):
        if name is None:
            continue
        if spec and "{" in spec:
            raise TemplateLimitExceeded("a nested '{...}' format spec is not supported in "
                                        "manifest templates")
        numbers = [int(n) for n in _NUMBER_RE.findall(spec or "")]
        for number in numbers:
            check_width(number, "a '{...}' format")
        total += sum(numbers) + widest_arg + 32
    return total


def replace_estimate(text: str, old: str, new: str, count: int = -1) -> int:
    """Upper bound of ``len(text.replace(old, new, count))``."""
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new) - len(old))


def join_estimate(items: list[Any], separator: str) -> int:
    """The length a ``join`` of ``items`` would have, without building it."""
    return sum(length_of(item) or printed_size(item) for item in items) + len(separator) * max(
        0, len(items) - 1)


def checked_iter(items: Iterable[Any]) -> Iterator[Any]:
    """What a ``{% for %}`` loop iterates: the same items, with the deadline checked
    at each one (a loop that prints nothing is still stopped)."""
    current = budget()
    for item in items:
        current.check_time()
        yield item
