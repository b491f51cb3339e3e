"""provisioner.lazyre: patterns compiled on first use behave as ``re.compile``'s."""

from __future__ import annotations

import re

from provisioner.lazyre import LazyPattern, LazyPatterns, lazy_pattern


def test_a_lazy_pattern_compiles_on_first_use_and_matches_as_re_does() -> None:
    lazy = lazy_pattern(r"([0-9]+)-([a-z]+)", re.ASCII)
    assert isinstance(lazy, LazyPattern)
    assert "fullmatch" not in vars(lazy)  # not compiled yet
    assert lazy.pattern == r"([0-9]+)-([a-z]+)"

    match = lazy.fullmatch("12-ab")
    assert match is not None and match.groups() == ("12", "ab")
    assert "fullmatch" in vars(lazy)  # the compiled pattern's own method, from now on
    compiled = re.compile(r"([0-9]+)-([a-z]+)", re.ASCII)
    assert lazy.flags == compiled.flags
    assert lazy.groups == 2
    assert lazy.match("1-a,2-b") is not None and lazy.search("x 3-c") is not None
    assert lazy.findall("1-a 2-b") == compiled.findall("1-a 2-b")
    assert lazy.sub("#", "1-a 2-b") == "# #"
    assert lazy.fullmatch("١٢-ab") is None  # re.ASCII kept: no other digits


def test_lazy_patterns_compile_each_entry_when_looked_up() -> None:
    table = LazyPatterns({"^a$": r"^a\Z", "^b$": r"^b\Z"})
    assert len(table) == 0
    assert table["^a$"].search("a") and not table["^a$"].search("a\n")
    assert list(table) == ["^a$"]
    assert table["^a$"] is table["^a$"]
