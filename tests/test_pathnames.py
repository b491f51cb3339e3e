"""provisioner.pathnames: paths spelt exactly as pathlib spells them (which the modules
on the commands' start-up path no longer import)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioner.pathnames import find_program, tidy_path

#: Pieces whose joins cover roots, empty and ``.`` parts, ``..`` and trailing slashes.
PIECES = st.lists(st.sampled_from(["/", "//", ".", "..", "a", "b.yaml", "./", "../"]),
                  max_size=8).map("".join)


@pytest.mark.parametrize(("path", "tidy"), [
    ("", "."), (".", "."), ("./", "."), ("/", "/"), ("//", "//"), ("///", "/"),
    ("//a", "//a"), ("///a//b/", "/a/b"), ("./a//./b/", "a/b"), ("a/../b", "a/../b"),
    ("../x", "../x"),
])
def test_examples(path: str, tidy: str) -> None:
    assert tidy_path(path) == tidy == str(PurePosixPath(path))


@given(PIECES)
def test_spells_any_path_as_pathlib_does(path: str) -> None:
    assert tidy_path(path) == str(PurePosixPath(path))
    assert tidy_path(Path(path)) == str(Path(path))  # a PathLike too


@given(PIECES, PIECES)
def test_a_tidied_join_is_pathlibs_join(folder: str, name: str) -> None:
    assert tidy_path(os.path.join(folder, name)) == str(PurePosixPath(folder) / name)


def test_find_program_finds_what_shutil_which_finds(tmp_path: Path) -> None:
    import shutil

    first, second = tmp_path / "first", tmp_path / "second"
    for directory in (first, second):
        directory.mkdir()
    (first / "tool").write_text("")  # not executable: skipped
    (first / "dir").mkdir(mode=0o755)  # a directory, even a searchable one: skipped
    for program in (second / "tool", second / "dir"):
        if not program.exists():
            program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    search = f"{first}:{second}"
    for name in ("tool", "dir", "missing"):
        assert find_program(name, search) == shutil.which(name, path=search)
    assert find_program("tool", search) == str(second / "tool")
    assert find_program("missing", search) is None
    assert find_program("sh", "/usr/bin:/bin") == shutil.which("sh", path="/usr/bin:/bin")
