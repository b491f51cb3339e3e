"""The manifest set a source names when none is given (``provisioner apply web/`` ->
``web``): apart from the loader so that ``destroy``, which reads no manifest, does not
load the YAML and schema code to learn it."""

from __future__ import annotations

import os
import re

_SET_NAME_RE = re.compile(r"[^a-z0-9-]+")


def default_set_name(paths: list[str]) -> str:
    """The manifest set a source defines when none is named: the file's stem or the
    folder's name (several paths: their common folder), as a DNS label."""
    if len(paths) == 1:
        path = os.path.realpath(paths[0])
        base = os.path.basename(path)
        if not os.path.isdir(path):
            base = os.path.splitext(base)[0]
    else:
        base = os.path.basename(os.path.commonpath([os.path.realpath(p) for p in paths]))
    name = _SET_NAME_RE.sub("-", base.lower()).strip("-")[:63].strip("-")
    return name or "default"
