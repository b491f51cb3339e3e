"""What the image store knows about an unpacked image beyond its root filesystem.

Next to ``rootfs/`` and ``config.json`` (see :mod:`provisioner.node.oci.images`) an
image directory holds, since image metadata exists:

- ``manifest.json``: the image manifest's bytes, exactly as in the layout (their sha256
  is the image's digest);
- ``image.json``: ``{"reference", "imported_at_ns", "size", "labels"}`` - the reference
  it was first pulled as, when it was unpacked here (wall clock, ns), the apparent size
  of its unpacked root filesystem in bytes (what ``du -sb rootfs`` prints: every file,
  directory and link once, hard links counted once) and the image config's ``Labels``.

Both are written before the image directory is renamed into place (so they are whole
whenever the image is); an image unpacked by an older version gets them at its next
pull. :func:`read_info` falls back, for such an image, to ``config.json``'s time and a
size measured on the spot, and to no manifest.
"""

from __future__ import annotations

import json
import os
import time

from provisioner.errors import InvalidArgument
from provisioner.node.oci.layout import Manifest, open_blob, read_json_blob
from provisioner.records import record

__all__ = ["INFO_FILE", "MANIFEST_FILE", "ImageInfo", "read_info", "tree_size", "write_info"]

INFO_FILE = "image.json"
MANIFEST_FILE = "manifest.json"


@record
class ImageInfo:
    """An unpacked image's metadata (see the module docstring)."""

    digest: str  # "sha256:<hex>" of the manifest bytes
    reference: str  # as first pulled ("" when unknown)
    imported_at_ns: int
    size: int  # apparent size of the unpacked root filesystem, bytes
    manifest: bytes  # b"" when unknown
    labels: tuple[tuple[str, str], ...] = ()


def tree_size(path: str) -> int:
    """The apparent size of everything at and below ``path`` (``du -sb``): st_size of
    every directory, file and link, each inode once; links are not followed."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        total += st.st_size
        if os.path.isdir(current) and not os.path.islink(current):
            try:
                with os.scandir(current) as entries:
                    stack.extend(entry.path for entry in entries)
            except OSError:
                continue
    return total


def write_info(image_dir: str, manifest: Manifest, reference: str,
               imported_at_ns: int | None = None) -> None:
    """Write ``manifest.json`` and ``image.json`` into ``image_dir`` (its ``rootfs`` is
    complete), each atomically; ``imported_at_ns`` defaults to now."""
    with open_blob(manifest.layout, manifest.descriptor) as blob:
        raw = blob.read()
    config = read_json_blob(manifest.layout, manifest.config).get("config") or {}
    labels = config.get("Labels") if isinstance(config, dict) else None
    info = {"reference": reference,
            "imported_at_ns": time.time_ns() if imported_at_ns is None else imported_at_ns,
            "size": tree_size(os.path.join(image_dir, "rootfs")),
            "labels": {str(k): str(v) for k, v in labels.items()}
            if isinstance(labels, dict) else {}}
    _write(os.path.join(image_dir, MANIFEST_FILE), raw)
    _write(os.path.join(image_dir, INFO_FILE), json.dumps(info).encode())


def _write(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def has_info(image_dir: str) -> bool:
    """Whether ``image_dir`` has its metadata files."""
    return all(os.path.isfile(os.path.join(image_dir, n)) for n in (INFO_FILE, MANIFEST_FILE))


def read_info(image_dir: str, digest: str) -> ImageInfo | None:
    """The metadata of the image unpacked in ``image_dir`` (None when there is none:
    no ``config.json``); see the module docstring for the fallbacks."""
    config = os.path.join(image_dir, "config.json")
    try:
        config_mtime_ns = os.stat(config).st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        with open(os.path.join(image_dir, INFO_FILE), "rb") as f:
            data = json.load(f)
        with open(os.path.join(image_dir, MANIFEST_FILE), "rb") as f:
            manifest = f.read()
        if not isinstance(data, dict):
            raise InvalidArgument(f"{image_dir}/{INFO_FILE} is not a JSON object")
        labels = data.get("labels") or {}
        return ImageInfo(digest, str(data.get("reference", "")),
                         int(data.get("imported_at_ns") or config_mtime_ns),
                         int(data.get("size") or 0), manifest,
                         tuple(sorted((str(k), str(v)) for k, v in dict(labels).items())))
    except (OSError, ValueError, TypeError, InvalidArgument):
        return ImageInfo(digest, "", config_mtime_ns,
                         tree_size(os.path.join(image_dir, "rootfs")), b"")
