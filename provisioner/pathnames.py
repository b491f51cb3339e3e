"""Paths spelt as ``pathlib`` spells them, without importing it (~5 ms at start-up).

``str(pathlib.PurePosixPath(p))`` drops empty and ``.`` components and a trailing
slash (``./a//b/`` -> ``a/b``) but keeps ``..``. ``os.path.normpath`` also folds
``a/..``, which names another file when ``a`` is a symbolic link, and would change the
strings printed or stored in pathlib's form (messages, a Driver's ``source``).
"""

from __future__ import annotations

import os


def find_program(name: str, search_path: str) -> str | None:
    """The first executable file ``name`` in the directories of ``search_path``
    (``:``-separated), as ``shutil.which(name, path=search_path)`` finds it for a bare
    name - without importing shutil (and its bz2 and lzma, ~2 ms at start-up)."""
    for directory in search_path.split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def tidy_path(path: str | os.PathLike[str]) -> str:
    """``path`` as ``str(pathlib.PurePosixPath(path))`` writes it: ``./a//b/`` -> ``a/b``,
    ``''`` -> ``.``; ``..`` stays, and so do exactly two leading slashes (POSIX)."""
    text = os.fspath(path)
    root = "//" if text[:2] == "//" and text[2:3] != "/" else "/" * text.startswith("/")
    return root + "/".join(part for part in text.split("/") if part not in ("", ".")) or "."
