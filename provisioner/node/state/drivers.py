"""The driver store: Atomix driver artifacts kept under ``<state_dir>/drivers/``.

Layout (safer than upstream's flat ``<name>-<version>.<runtimeVersion>``, where
``a-1`` + ``2`` and ``a`` + ``1-2`` name the same file)::

    <state_dir>/drivers/<name>/<version>/<runtimeVersion>     ("_" when it is empty)

Every part is checked with :func:`provisioner.names.check_artifact_name`, so none can
be ``..``, contain ``/`` or start with ``.``; ``_`` and the ``.tmp-*`` files of writes
in progress can therefore never collide with a stored driver.

Writes are atomic: bytes go to a temporary file in ``drivers/`` itself, which is
fsynced, checked (size limit while writing, SHA-256 at the end) and only then moved
into its folder (made then) over the target, and the folder fsynced. Any failure
removes the temporary file and every folder the write made, so a reader sees the old
driver or the new one, never a part, and a failed upload stores nothing, not even an
empty folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO

from provisioner.errors import DataLoss, NodeError, NotFound, ProvisionerError
from provisioner.model import DriverSpec
from provisioner.names import check_artifact_name
from provisioner.records import field, record

DRIVERS_DIR = "drivers"
EMPTY_RUNTIME = "_"
CHUNK_BYTES = 1024 * 1024


class DriverTooLarge(ProvisionerError):
    """A driver exceeds the store's size limit (RESOURCE_EXHAUSTED); nothing stored."""


@record
class DriverKey:
    """Which driver: DriverInfo name and version, RuntimeInfo version ("" allowed)."""

    name: str
    version: str
    runtime_version: str = ""

    def check(self) -> DriverKey:
        """Refuse a name, version or runtime version that could escape the registry
        folder; return the key.
        """
        check_artifact_name(self.name, "driver name")
        check_artifact_name(self.version, "driver version")
        if self.runtime_version:
            check_artifact_name(self.runtime_version, "runtime version")
        return self

    def __str__(self) -> str:
        runtime = f" for runtime {self.runtime_version}" if self.runtime_version else ""
        return f"driver {self.name} {self.version}{runtime}"


def driver_key(spec: DriverSpec) -> DriverKey:
    """The registry key of a driver spec."""
    return DriverKey(spec.name, spec.version, spec.runtime_version)


def sha256_file(path: str) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


@record(frozen=False)
class DriverWriter:
    """One atomic write in progress: ``write`` chunks, then ``commit(checksum)``."""

    path: str
    temporary: str
    handle: IO[bytes]
    max_bytes: int | None
    size: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    def write(self, data: bytes) -> None:
        """Append a chunk; DriverTooLarge (nothing stored) beyond the size limit."""
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise DriverTooLarge(f"driver is larger than the limit of {self.max_bytes} "
                                 "bytes; nothing was stored")
        self.digest.update(data)
        self.handle.write(data)

    made: list[str] = field(default_factory=list)  # folders this write created

    def commit(self, checksum: str) -> str:
        """Store the file if ``checksum`` is the SHA-256 of what was written."""
        actual = self.digest.hexdigest()
        if checksum.strip().lower() != actual:
            raise DataLoss(f"checksum mismatch: expected {checksum!r}, but the {self.size} "
                           f"bytes hash to {actual}; nothing was stored")
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        folder = os.path.dirname(self.path)
        self.made += _make_folders(folder)
        os.rename(self.temporary, self.path)
        _fsync_dir(folder)
        self.made.clear()  # stored: the folders are the driver's now
        return actual


class DriverStore:
    """Drivers of one node; ``max_bytes`` (None: unlimited) caps each one."""

    def __init__(self, state_dir: str, max_bytes: int | None = None) -> None:
        self.root = os.path.join(state_dir, DRIVERS_DIR)
        self.max_bytes = max_bytes

    def path(self, key: DriverKey) -> str:
        """Where a driver's file is (or would be) stored: ``ROOT/name/version/runtime``."""
        key.check()
        return os.path.join(self.root, key.name, key.version,
                            key.runtime_version or EMPTY_RUNTIME)

    def exists(self, key: DriverKey) -> bool:
        """True if the registry holds this driver."""
        return os.path.isfile(self.path(key))

    @contextlib.contextmanager
    def writer(self, key: DriverKey) -> Iterator[DriverWriter]:
        """A write that is stored only by ``commit``; leaving without it (or with an
        exception) removes the temporary file."""
        target = self.path(key)
        made: list[str] = []
        try:
            made += _make_folders(self.root)
            fd, temporary = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        except OSError as exc:
            _remove_folders(made)
            raise NodeError(f"cannot write {key} under {self.root}: {exc}") from exc
        handle = os.fdopen(fd, "wb")
        writer = DriverWriter(target, temporary, handle, self.max_bytes, made=made)
        try:
            yield writer
        finally:
            if not handle.closed:
                handle.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            _remove_folders(writer.made)  # what a failed write made (nothing once stored)

    def holds(self, key: DriverKey, sha256: str) -> bool:
        """True if the store has KEY with exactly the bytes whose SHA-256 is SHA256."""
        if not sha256 or not self.exists(key):
            return False
        try:
            return sha256_file(self.path(key)) == sha256.lower()
        except FileNotFoundError:
            return False

    def store_file(self, key: DriverKey, source: str, sha256: str = "") -> str:
        """Copy ``source`` into the store; with ``sha256`` refuse a file that differs."""
        try:
            with open(source, "rb") as handle, self.writer(key) as out:
                for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
                    out.write(block)
                return out.commit(sha256 or out.digest.hexdigest())
        except FileNotFoundError:
            raise NotFound(f"{key}: source file {source} does not exist") from None
        except OSError as exc:
            raise NodeError(f"{key}: cannot store {source}: {exc}") from exc

    def open(self, key: DriverKey) -> IO[bytes]:
        """Open a stored driver for reading; NotFound if the registry does not hold it."""
        try:
            return open(self.path(key), "rb")
        except FileNotFoundError:
            raise NotFound(f"{key} is not in the registry") from None

    def delete(self, key: DriverKey) -> bool:
        """Remove the driver (and folders left empty); False when it was not there."""
        path = self.path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        folder = os.path.dirname(path)
        for _ in range(2):  # <version>, then <name>
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)
        return True


def _make_folders(path: str) -> list[str]:
    """Make ``path`` and the folders above it that are missing; those made, top first."""
    missing: list[str] = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    made: list[str] = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
            made.append(folder)
        except FileExistsError:  # another write made it meanwhile: not ours to remove
            pass
    return made


def _remove_folders(made: list[str]) -> None:
    """Remove the folders a failed write made, deepest first, where still empty."""
    for folder in reversed(made):
        try:
            os.rmdir(folder)
        except OSError:  # not empty: another write uses it now
            break
    made.clear()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
