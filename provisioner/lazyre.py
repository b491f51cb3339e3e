"""Regular expressions compiled on first use, not at import.

Compiling a pattern costs 0.1-0.8 ms (``re`` parses and optimises it in Python), and
the modules every command imports hold dozens of them (names, image references, the
schemas' checks), most unused by any one command. :func:`lazy_pattern` stands in for
``re.compile`` at module level: the pattern is compiled the first time one of its
methods is called, then the compiled pattern's methods are used directly.
:class:`LazyPatterns` does the same for a table of patterns (the generated schema
checks' ``REGEX_PATTERNS``). Neither imports anything of the package.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)

#: What a compiled pattern offers that the stand-in hands on, once compiled.
_METHODS = ("match", "fullmatch", "search", "sub", "subn", "split", "findall",
            "finditer", "scanner", "groups", "groupindex")


class LazyPattern:
    """A pattern and its flags, compiled by the first use of a compiled pattern's
    method or attribute (which is then this object's own, for the next uses)."""

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern = pattern
        self.flags_given = flags

    def compiled(self) -> re.Pattern[str]:
        """The compiled pattern (``re`` caches it: compiling twice is a look-up)."""
        return re.compile(self.pattern, self.flags_given)

    def __getattr__(self, name: str) -> object:
        # (called only for what the instance does not have yet: the first use)
        compiled = self.compiled()
        for method in _METHODS:
            setattr(self, method, getattr(compiled, method))
        return getattr(compiled, name)

    def __repr__(self) -> str:
        return f"lazy_pattern({self.pattern!r}, {self.flags_given!r})"


if TYPE_CHECKING:
    def lazy_pattern(pattern: str, flags: int = 0) -> re.Pattern[str]:
        """``re.compile(pattern, flags)``, compiled on first use."""
        ...
else:
    def lazy_pattern(pattern, flags=0):
        """``re.compile(pattern, flags)``, compiled on first use."""
        return LazyPattern(pattern, flags)


class LazyPatterns(dict[str, "re.Pattern[str]"]):
    """``{key: re.compile(source)}`` for a table ``{key: source}``, each compiled when
    first looked up (a plain dict's look-up afterwards)."""

    def __init__(self, sources: dict[str, str]) -> None:
        super().__init__()
        self.sources = sources

    def __missing__(self, key: str) -> re.Pattern[str]:
        compiled = self[key] = re.compile(self.sources[key])
        return compiled
