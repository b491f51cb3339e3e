"""provisioner.pathnames: paths spelt exactly as pathlib spells them (which the modules
on the commands' start-up path no longer import)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioner.pathnames import tidy_path

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
