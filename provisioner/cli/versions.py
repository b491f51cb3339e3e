"""Installed versions, read without importing what they describe.

``importlib.metadata`` costs ~50 ms to import and search, and importing ``grpc`` for its
``__version__`` more; ``provisioner version`` needs neither. A distribution's version is
the ``Version:`` field of the ``METADATA`` file in its ``NAME-VERSION.dist-info`` folder,
found on ``sys.path`` in order, as ``importlib.metadata`` finds it; anything else (an
``.egg-info``, a zip, a custom finder) falls back to ``importlib.metadata`` itself.
"""

from __future__ import annotations

import os
import sys


def _normalised(name: str) -> str:
    """A project name as dist-info folders spell it (PEP 503 / wheel: ``-`` ``.`` -> ``_``,
    lower case)."""
    return name.lower().replace("-", "_").replace(".", "_")


def _version_in(metadata_file: str) -> str | None:
    """The ``Version:`` header of a METADATA file, or None."""
    try:
        with open(metadata_file, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("Version:"):
                    return line.partition(":")[2].strip() or None
                if not line.strip():  # the headers end at the first empty line
                    return None
    except OSError:
        return None
    return None


def find_version(distribution: str) -> str | None:
    """The version of ``distribution`` from its first ``*.dist-info`` on ``sys.path``, or
    None when it is not found that way."""
    wanted = _normalised(distribution)
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info") and _normalised(name.partition("-")[0]) == wanted:
                return _version_in(os.path.join(entry or ".", name, "METADATA"))
    return None


def distribution_version(distribution: str) -> str:
    """The installed version of ``distribution`` (``"unknown"`` when not installed)."""
    found = find_version(distribution)
    if found is not None:
        return found
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def provisioner_version() -> str:
    """This package's version: ``provisioner.__version__``, found the fast way first."""
    found = find_version("provisioner")
    if found is not None:
        return found
    from provisioner import __version__

    return __version__
