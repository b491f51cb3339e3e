"""Kernel CPU / memory-node list syntax (``0-3,8``), as cpuset.cpus and cpuset.mems use it."""

from __future__ import annotations

import re

from provisioner.errors import InvalidArgument
from provisioner.lazyre import lazy_pattern

_ITEM_RE = lazy_pattern(r"([0-9]+)(?:-([0-9]+))?", re.ASCII)
#: Larger than any kernel's NR_CPUS / MAX_NUMNODES; caps a list like ``0-99999999999``
#: before it is expanded into memory.
MAX_ID = 65535


def parse_cpu_list(text: str) -> list[int]:
    """``"0-3,8"`` -> ``[0, 1, 2, 3, 8]``. Refuses empty text, ``5-1`` and any other syntax."""
    if not isinstance(text, str) or text == "":  # upstream Aurae accepted "" and "5-1"
        raise InvalidArgument("empty CPU list (expected kernel list syntax such as 0-3,8)")
    ids: set[int] = set()
    for item in text.split(","):
        match = _ITEM_RE.fullmatch(item)
        if not match:
            raise InvalidArgument(f"{text!r} is not a CPU list (expected such as 0-3,8)")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise InvalidArgument(f"range {item} in {text!r} runs backwards (write {high}-{low})")
        if high > MAX_ID:
            raise InvalidArgument(f"CPU id {high} in {text!r} is larger than {MAX_ID}")
        ids.update(range(low, high + 1))
    return sorted(ids)


def format_cpu_list(ids: list[int] | set[int]) -> str:
    """The kernel's own rendering of a list: ``[0, 1, 2, 3, 8]`` -> ``0-3,8``."""
    parts: list[str] = []
    ordered = sorted(set(ids))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)
