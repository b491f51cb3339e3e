"""Registry images in the image store: pull (per policy), verify, unpack, remember.

:meth:`ImageStore.pull <provisioner.node.oci.images.ImageStore.pull>` hands registry
references here. A pull, in ``<state_dir>/images/``:

1. ``refs/<sha256 of the canonical reference>.json`` says which image digest a
   reference was last pulled as. With ``IfNotPresent`` and that image unpacked, that
   is the answer: no network. ``Never`` without it is FailedPrecondition.
2. ``skopeo copy`` (:mod:`provisioner.node.oci.pull`) into a private staging layout
   ``.pull-<random>/`` (flocked while in use, like an unpack's ``.staging-``), its
   blobs into ``blobs/sha256/`` shared by every pull (a layer is stored once; skopeo
   verifies and renames each one into place, and reuses one already there).
3. The staging layout (its ``blobs`` a link to the shared ones) is resolved and
   unpacked like any local layout: every blob is hashed again on the way
   (:func:`~provisioner.node.oci.layout.open_blob`). A blob that does not match its
   digest now (damaged on disk) is deleted, so the next pull fetches it again, and
   the pull fails with DataLoss.
4. Only then is the reference's ``refs/`` file replaced (written aside, renamed), so
   a killed pull leaves at most a staging directory - swept by a later pull once its
   lock is free - and never a reference pointing at a partial image.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Protocol

from provisioner.errors import DataLoss, FailedPrecondition, InvalidArgument, NodeError
from provisioner.imageref import canonical_reference
from provisioner.model import PullPolicy
from provisioner.node.oci.layout import Manifest, blob_path, resolve
from provisioner.node.oci.pull import RegistryOptions, skopeo_copy

__all__ = ["find_pulled", "named", "pull_registry_image"]

class _Image(Protocol):
    @property
    def digest(self) -> str: ...


class _Store(Protocol):
    """What this module needs of :class:`~provisioner.node.oci.images.ImageStore`
    (which imports this module)."""

    @property
    def dir(self) -> str: ...
    @property
    def registries(self) -> RegistryOptions: ...
    def prepare(self) -> None: ...
    def unpack_manifest(self, reference: str, manifest: Manifest) -> _Image: ...
    def cached(self, digest: str, reference: str = "") -> _Image | None: ...
    def remove_tree(self, path: str) -> None: ...


REFS = "refs"
BLOBS = "blobs"
PULL_PREFIX = ".pull-"
_TAG = "pulled"


def pull_registry_image(store: _Store, image: str, registry: str,
                        policy: PullPolicy) -> _Image:
    """The registry image ``image`` (host from ``registry`` when it names none),
    pulled as ``policy`` says and unpacked."""
    canonical = canonical_reference(image, registry)
    if policy is not PullPolicy.ALWAYS:
        found = find_pulled(store, image, registry)
        if found is not None:
            return found
        if policy is PullPolicy.NEVER:
            raise FailedPrecondition(f"{named(image, canonical)} is not on this node and its "
                                     "pullPolicy is Never")
    store.prepare()
    with _staging_layout(store) as layout:
        blobs = os.path.join(store.dir, BLOBS)
        os.makedirs(blobs, mode=0o700, exist_ok=True)
        skopeo_copy(canonical, layout, _TAG, blobs, store.registries, image)
        _link_blobs(layout)
        try:
            manifest = resolve(layout, _TAG)
            pulled = store.unpack_manifest(image, manifest)
        except InvalidArgument as e:
            if "does not match its digest" in str(e) or " bytes, its descriptor says" in str(e):
                _drop_damaged(layout, str(e))
                raise DataLoss(f"{named(image, canonical)}: {e}; the damaged blob was "
                               "removed from the cache, pull again") from None
            raise
    _remember(store.dir, canonical, pulled.digest)
    return pulled


def named(image: str, canonical: str) -> str:
    """``image 'busybox' (docker.io/library/busybox:latest)``: as written, and in full
    when that differs."""
    return f"image {image!r}" + (f" ({canonical})" if canonical != image else "")


def find_pulled(store: _Store, image: str, registry: str = "") -> _Image | None:
    """The image this node last pulled for the reference, if it is still unpacked."""
    canonical = canonical_reference(image, registry)
    try:
        with open(_ref_path(store.dir, canonical), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("reference") != canonical:
        return None
    return store.cached(str(record.get("digest", "")), image)


def _ref_path(images_dir: str, canonical: str) -> str:
    name = hashlib.sha256(canonical.encode()).hexdigest()
    return os.path.join(images_dir, REFS, f"{name}.json")


def _remember(images_dir: str, canonical: str, digest: str) -> None:
    path = _ref_path(images_dir, canonical)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"reference": canonical, "digest": digest}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _staging_layout(store: _Store) -> Iterator[str]:
    """A fresh, flocked ``.pull-<random>`` directory, removed afterwards."""
    layout = tempfile.mkdtemp(prefix=PULL_PREFIX, dir=store.dir)
    fd = os.open(layout, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield layout
    finally:
        os.close(fd)
        store.remove_tree(layout)


def _link_blobs(layout: str) -> None:
    """Point the staging layout's ``blobs`` at the shared blob directory."""
    path = os.path.join(layout, BLOBS)
    try:
        os.rmdir(path)  # skopeo leaves it empty when blobs are shared
    except FileNotFoundError:
        pass
    except OSError as e:
        raise NodeError(f"pulled layout {layout}: {path} is not empty: {e}") from e
    os.symlink(os.path.join("..", BLOBS), path)


def _drop_damaged(layout: str, message: str) -> None:
    """Delete the shared blob a verification error names (its digest is in it)."""
    for word in message.replace("(", " ").split():
        if word.startswith(("sha256:", "sha512:")):
            with contextlib.suppress(OSError, InvalidArgument):
                os.unlink(blob_path(layout, word.rstrip(",;:)")))
            return
