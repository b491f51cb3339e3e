"""The image store: OCI images unpacked into root filesystems, cached by digest.

``ImageStore(state_dir).pull(reference)`` turns an image of a local OCI layout (see
:mod:`provisioner.node.oci.layout` for references: ``oci:/path[:tag]``) or of a
registry (``[HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST]``, pulled with skopeo as
:mod:`provisioner.node.oci.registry_images` says, per the container's pull policy)
into an :class:`Image`: its manifest digest, an unpacked root filesystem and the part
of its config a container needs.

Layout, under ``<state_dir>/images/`` (mode 0700: a rootfs may hold setuid programs
that no host user should reach):

- ``<manifest sha256 hex>/rootfs/``: the root filesystem, every layer applied in order
  (:mod:`provisioner.node.oci.unpack`: whiteouts, and nothing written outside it).
  Shared by every container of that image: treat it as read-only (mount an overlay
  over it).
- ``<manifest sha256 hex>/config.json``: the :class:`ImageConfig` as JSON.
- ``.staging-<random>/``: a pull in progress. It holds an ``flock`` on that directory
  while it unpacks; once complete (and flushed to disk with ``syncfs``), it is renamed
  to its digest's name, so an image directory is either absent or whole. Should the
  name exist already (a concurrent pull of the same image won), the staging copy is
  discarded and the existing one used. Leftovers of dead pulls (their lock free, more
  than a minute old) are removed by the next pull or remove.
- ``blobs/sha256/``, ``refs/``, ``.pull-<random>/``: registry pulls' shared blobs,
  what each reference was pulled as, and pulls in progress
  (:mod:`provisioner.node.oci.registry_images`).
- ``.removing-<random>/``: an image being removed - renamed away first, so it
  disappears at once, then deleted.

A pull of an image already unpacked reads ``index.json`` and the manifest (verified)
and the cached ``config.json``: no layer is read. The image digest is the sha256 of
the manifest's bytes. Callers serialize :meth:`ImageStore.remove` with their use of
an image (removing an image a container runs from is theirs to prevent).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import time
from collections.abc import Callable

from provisioner.errors import InvalidArgument, NodeError, ProvisionerError
from provisioner.imageref import parse_image_reference
from provisioner.model import PullPolicy
from provisioner.node.oci.image_info import ImageInfo, has_info, read_info, write_info
from provisioner.node.oci.layout import (
    Manifest,
    machine_platform,
    open_blob,
    parse_reference,
    read_json_blob,
    resolve,
)
from provisioner.node.types import RegistryOptions
from provisioner.records import asdict, record

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Image", "ImageConfig", "ImageInfo", "ImageStore", "image_config"]

_HEX = re.compile(r"^[0-9a-f]{64}$")


@record
class ImageConfig:
    """What the image config says about running it (OCI ``config`` fields)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "KEY=value" entries, as in the OCI image config
    working_dir: str = ""
    user: str = ""

    def to_json(self) -> dict[str, Any]:
        """The config as stored beside the unpacked image."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: object, where: str) -> ImageConfig:
        """A stored config read back; InvalidArgument (naming ``where``) if malformed."""
        if not isinstance(data, dict):
            raise InvalidArgument(f"{where}: not a JSON object")
        return cls(entrypoint=_strings(data.get("entrypoint"), where, "entrypoint"),
                   cmd=_strings(data.get("cmd"), where, "cmd"),
                   env=_strings(data.get("env"), where, "env"),
                   working_dir=_string(data.get("working_dir"), where, "working_dir"),
                   user=_string(data.get("user"), where, "user"))


@record
class Image:
    """An unpacked image."""

    reference: str  # as the user wrote it
    digest: str  # "sha256:<hex>" of the image manifest
    rootfs: str  # absolute path of the unpacked root filesystem (treat as read-only)
    config: ImageConfig


def image_config(data: dict[str, Any], where: str) -> ImageConfig:
    """The ImageConfig of an OCI (or Docker) image config document."""
    arch, _ = machine_platform()
    image_os, image_arch = data.get("os", "linux"), data.get("architecture", arch)
    if image_os != "linux" or image_arch not in (arch, "386" if arch == "amd64" else arch):
        raise InvalidArgument(f"{where}: the image is for {image_os}/{image_arch}, this node "
                              f"runs linux/{arch}")
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise InvalidArgument(f"{where}: 'config' is not a JSON object")
    return ImageConfig(entrypoint=_strings(config.get("Entrypoint"), where, "Entrypoint"),
                       cmd=_strings(config.get("Cmd"), where, "Cmd"),
                       env=_strings(config.get("Env"), where, "Env"),
                       working_dir=_string(config.get("WorkingDir"), where, "WorkingDir"),
                       user=_string(config.get("User"), where, "User"))


class ImageStore:
    """Unpacked images under ``<state_dir>/images/``; safe across threads and processes."""

    #: A staging (or removal) directory this old whose lock is free is a dead one's.
    stale_after_s = 60.0

    def __init__(self, state_dir: str, registries: RegistryOptions | None = None) -> None:
        self.dir = os.path.join(os.path.realpath(state_dir), "images")
        self.registries = registries or RegistryOptions()

    def pull(self, reference: str, registry: str = "",
             policy: PullPolicy = PullPolicy.IF_NOT_PRESENT) -> Image:
        """The image ``reference`` names, unpacked now unless it was already (a
        registry image pulled first, as ``policy`` says)."""
        if not reference.startswith(("oci:", "/")) and \
                not parse_image_reference(reference).is_layout:
            # (the registry code, skopeo's and TLS's, loads only for registry images)
            from provisioner.node.oci.registry_images import pull_registry_image

            image = pull_registry_image(self, reference, registry, policy)
            assert isinstance(image, Image)
            return image
        layout, tag = parse_reference(reference, registry)
        return self.unpack_manifest(reference, resolve(layout, tag))

    def unpack_manifest(self, reference: str, manifest: Manifest) -> Image:
        """The image of ``manifest`` (resolved in a layout), unpacked unless it was."""
        final = os.path.join(self.dir, manifest.sha256.partition(":")[2])
        config = self._cached(final)
        if config is None:
            config = self._unpack(reference, manifest, final)
        elif not has_info(final):  # unpacked by a version without image metadata
            with contextlib.suppress(OSError, ProvisionerError):
                write_info(final, manifest, reference,
                           os.stat(os.path.join(final, "config.json")).st_mtime_ns)
        return Image(reference, manifest.sha256, os.path.join(final, "rootfs"), config)

    def remove_tree(self, path: str) -> None:
        """Delete ``path`` and everything below it (a staging directory)."""
        if os.path.lexists(path):
            _rmtree(path)

    def prepare(self) -> None:
        """Make the images directory (0700) and sweep what dead pulls left."""
        os.makedirs(os.path.dirname(self.dir), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.dir, 0o700)
        self._sweep()

    def cached(self, digest: str, reference: str = "") -> Image | None:
        """The image unpacked here under ``digest`` (whatever its layout does now), or
        None; ``reference`` is only reported back."""
        algorithm, _, hex_ = digest.partition(":")
        if algorithm != "sha256" or not _HEX.match(hex_):
            return None
        final = os.path.join(self.dir, hex_)
        config = self._cached(final)
        if config is None:
            return None
        return Image(reference or digest, digest, os.path.join(final, "rootfs"), config)

    def digests(self) -> set[str]:
        """The manifest digests ("sha256:<hex>") of the images unpacked here."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return set()
        return {f"sha256:{name}" for name in names if _HEX.match(name)
                and os.path.isfile(os.path.join(self.dir, name, "config.json"))}

    def info(self, digest: str) -> ImageInfo | None:
        """The metadata of the image unpacked here under ``digest`` (manifest bytes,
        import time, size, labels: :mod:`provisioner.node.oci.image_info`), or None."""
        algorithm, _, hex_ = digest.partition(":")
        if algorithm != "sha256" or not _HEX.match(hex_):
            return None
        return read_info(os.path.join(self.dir, hex_), digest)

    def remove(self, digest: str) -> bool:
        """Delete the unpacked image ``digest``; False if there is none."""
        algorithm, _, hex_ = digest.partition(":")
        if algorithm != "sha256" or not _HEX.match(hex_):
            raise InvalidArgument(f"image digest {digest!r}: expected sha256:<64 hex digits>")
        self._sweep()
        return self._discard(os.path.join(self.dir, hex_))

    # -- internals ---------------------------------------------------------------------
    def _cached(self, final: str) -> ImageConfig | None:
        path = os.path.join(final, "config.json")
        try:
            with open(path, "rb") as f:
                return ImageConfig.from_json(json.load(f), path)
        except FileNotFoundError:
            if not os.path.isdir(os.path.join(final, "rootfs")):
                return None
        except (ValueError, InvalidArgument, NotADirectoryError):
            pass
        self._discard(final)  # not ours, or damaged: unpack it again
        return None

    def _unpack(self, reference: str, manifest: Manifest, final: str) -> ImageConfig:
        config = image_config(read_json_blob(manifest.layout, manifest.config),
                              f"image config {manifest.config.digest} in {manifest.layout}")
        import tempfile  # (only to unpack, as tarfile)

        from provisioner.node.oci.unpack import apply_layer  # (tarfile: only to unpack)

        self.prepare()
        staging = tempfile.mkdtemp(prefix=".staging-", dir=self.dir)
        fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            rootfs = os.path.join(staging, "rootfs")
            os.mkdir(rootfs, 0o755)
            os.chmod(rootfs, 0o755)  # whatever the umask
            count = len(manifest.layers)
            for number, descriptor in enumerate(manifest.layers, 1):
                with open_blob(manifest.layout, descriptor) as blob:
                    apply_layer(rootfs, blob, f"image {reference!r}: layer {number}/{count} "
                                              f"({descriptor.digest})")
            with open(os.path.join(staging, "config.json"), "w") as f:
                json.dump(config.to_json(), f)
            write_info(staging, manifest, reference)
            _syncfs(fd)
            try:
                os.rename(staging, final)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                cached = self._cached(final)  # a concurrent pull was first
                if cached is not None:
                    return cached
                os.rename(staging, final)  # what was there was damaged, and is gone
            _fsync_dir(self.dir)
            return config
        except ProvisionerError:
            raise
        except OSError as e:
            raise NodeError(f"unpacking image {reference!r} into {staging}: {e}") from e
        finally:
            os.close(fd)
            if os.path.lexists(staging):
                _rmtree(staging)

    def _discard(self, path: str) -> bool:
        """Rename ``path`` away (it vanishes at once), then delete it; False if absent."""
        doomed = os.path.join(self.dir, f".removing-{os.urandom(8).hex()}")
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return False
        fd = os.open(doomed, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _rmtree(doomed)
        finally:
            os.close(fd)
        return True

    def _sweep(self) -> None:
        """Remove what dead unpacks, pulls and removals left (lock free, older than a
        minute)."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:
            if not name.startswith((".staging-", ".removing-", ".pull-")):
                continue
            path = os.path.join(self.dir, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if time.time() - max(st.st_mtime, st.st_ctime) < self.stale_after_s:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live pull or removal
                _rmtree(path)
            finally:
                os.close(fd)


def _strings(value: object, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{where}: {key} is not a list of strings")
    return tuple(value)


def _string(value: object, where: str, key: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"{where}: {key} is not a string")
    return value


def _syncfs(fd: int) -> None:
    """Flush the file system of ``fd`` (every file of the unpacked image, in one call).
    ctypes is loaded here: only an unpack needs it."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"syncfs: {os.strerror(code)}")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmtree(path: str) -> None:
    """shutil.rmtree, also through directories without write permission (not root)."""
    def retry(function: Callable[[str], object], failed: str,
              exc_info: tuple[type[BaseException], BaseException, object]) -> None:
        error = exc_info[1]
        if isinstance(error, FileNotFoundError):
            return
        if not isinstance(error, PermissionError):
            raise error
        os.chmod(os.path.dirname(failed), 0o700)
        function(failed)

    import shutil  # (with bz2 and lzma, ~2 ms: only where an image is removed)

    shutil.rmtree(path, onerror=retry)
