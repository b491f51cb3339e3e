"""Applying OCI image layers (tar archives) to a root filesystem, safely.

:func:`apply_layer` extracts one layer over what the layers below it left in ``root``,
with the semantics of the OCI image spec (and of containerd / Docker):

- Whiteouts: ``<dir>/.wh.<name>`` removes ``<name>`` as the lower layers left it;
  ``<dir>/.wh..wh..opq`` makes ``<dir>`` opaque - everything the lower layers put in it
  goes, what this layer puts in it stays, whatever the order of the members. Whiteout
  files never appear in the root (other ``.wh..wh.*`` AUFS metadata is skipped).
- An entry replaces what is at its name (a directory over a directory merges;
  anything else is removed first, so a file is never written *through* a symlink).
- Regular files, directories, symlinks, hardlinks and FIFOs are kept with their mode
  (setuid and sticky bits included), owner (when we are root; otherwise the files are
  ours), modification time and ``security.capability`` / ``user.*`` extended attributes.
  Device nodes are skipped: runc provides ``/dev``.

Nothing is ever written outside ``root``:

- A member name has its leading ``/`` and ``./`` dropped (``/etc/x`` is ``etc/x``, as
  tar does); a name or hardlink target with a ``..`` component refuses the layer
  (InvalidArgument naming the member) - no legitimate image has one.
- The directory a member lands in is resolved *inside* ``root`` the way the kernel
  would resolve it in a container whose ``/`` is ``root``: symlinks met on the way -
  from a lower layer or an earlier member - are followed with an absolute target
  meaning ``root/target`` and ``..`` stopping at ``root``. So ``etc -> /`` followed by
  ``etc/passwd`` writes ``root/passwd``, exactly what the container would see, and
  never the host's ``/etc/passwd``. As a second line, the resolved directory's
  ``realpath`` is checked to lie in ``root``.
- Hardlink targets are resolved the same way and must exist in ``root``, not be a
  directory.

The root is assumed to be written by this process alone while it is unpacked (a
private staging directory), so a path checked is still the path used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
import zlib

from provisioner.errors import InvalidArgument

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import IO

__all__ = ["apply_layer"]

OPAQUE = ".wh..wh..opq"
WHITEOUT = ".wh."
_MAX_LINKS = 40  # symlinks followed while resolving one path (the kernel's limit)
_KEPT_XATTRS = ("security.capability", "user.")
_CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Layer:
    """The state of one layer being applied: what it added so far, its directories."""

    def __init__(self, root: str, label: str) -> None:
        self.root = root
        self.label = label
        self.added: set[str] = set()  # paths this layer made
        self.holds_added: set[str] = set()  # directories with something it made below
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []
        self.as_root = os.geteuid() == 0

    def refuse(self, member: str, why: str) -> InvalidArgument:
        return InvalidArgument(f"{self.label}: member {member!r} {why}; image refused")

    def parts(self, name: str, member: str) -> list[str]:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.refuse(member, "has a '..' component (it could escape the root)")
        return parts

    def resolve_dir(self, parts: list[str], member: str, create: bool) -> str | None:
        """The real directory ``parts`` names inside the root, symlinks resolved in it.

        Missing directories are made (0755) when ``create``, else None is returned.
        """
        todo = list(reversed(parts))
        here: list[str] = []
        links = 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if here:
                    here.pop()
                continue
            path = os.path.join(self.root, *here, part)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(path)
                os.chmod(path, 0o755)  # whatever the umask
                here.append(part)
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise self.refuse(member, "lies below a symlink loop")
                target = os.readlink(path)
                if target.startswith("/"):
                    here = []
                todo.extend(reversed(target.split("/")))
            elif stat.S_ISDIR(st.st_mode):
                here.append(part)
            elif create:
                raise self.refuse(member, f"lies below /{'/'.join([*here, part])}, "
                                          "which is not a directory")
            else:
                return None
        resolved = os.path.join(self.root, *here)
        real = os.path.realpath(resolved)
        if real != self.root and not real.startswith(self.root + "/"):
            raise self.refuse(member, "resolves outside the root")  # never, by construction
        return resolved

    def target(self, name: str, member: str, create: bool = True) -> str | None:
        """Where ``name`` lands: its resolved directory joined with its last part."""
        parts = self.parts(name, member)
        if not parts:
            return None  # the root itself: it keeps its own mode and owner
        parent = self.resolve_dir(parts[:-1], member, create)
        return None if parent is None else os.path.join(parent, parts[-1])

    def note(self, path: str) -> None:
        self.added.add(path)
        parent = os.path.dirname(path)
        while parent.startswith(self.root + "/") and parent not in self.holds_added:
            self.holds_added.add(parent)
            parent = os.path.dirname(parent)


def apply_layer(root: str, blob: IO[bytes], label: str) -> None:
    """Extract the layer ``blob`` (a plain or gzip-compressed tar) over ``root``.

    The compression is told by the blob's first bytes (some tools label plain tars
    gzip), so ``blob`` must be seekable. ``root`` must be a real path (no symlinks in
    it). ``label`` names the layer in errors. Raises InvalidArgument for a malformed,
    unsupported (zstd) or unsafe layer; OSError passes.
    """
    magic = blob.read(4)
    blob.seek(0)
    if magic == ZSTD_MAGIC:
        raise InvalidArgument(f"{label}: zstd-compressed layers are unsupported "
                              "(convert the image to gzip layers)")
    gzipped = magic[:2] == GZIP_MAGIC
    layer = _Layer(root, label)
    try:
        with tarfile.open(fileobj=blob, mode="r|gz" if gzipped else "r|",
                          encoding="utf-8", errors="surrogateescape") as tar:
            for member in tar:
                _apply_member(layer, tar, member)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise InvalidArgument(f"{label}: not a valid {'gzip' if gzipped else 'plain'} tar "
                              f"archive: {e}") from None
    for path, member in reversed(layer.dirs):  # children changed their mtimes
        with contextlib.suppress(FileNotFoundError):
            os.utime(path, ns=(_ns(member), _ns(member)), follow_symlinks=False)


def _apply_member(layer: _Layer, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    name = member.name
    base = name.rstrip("/").rpartition("/")[2]
    if base.startswith(WHITEOUT):
        _whiteout(layer, name, base)
        return
    if member.ischr() or member.isblk():
        return  # device nodes: runc provides /dev
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()
            or member.isfifo()):
        return  # nothing else belongs in a root filesystem
    path = layer.target(name, name)
    if path is None:
        return
    source = None
    if member.islnk():
        source = layer.target(member.linkname, name, create=False)
        try:
            st = os.lstat(source) if source else None
        except FileNotFoundError:
            st = None
        if st is None or stat.S_ISDIR(st.st_mode) or source == path:
            raise layer.refuse(name, f"is a hardlink to {member.linkname!r}, which is not a "
                                     "file in the image")
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
        _remove(path, existing)
    if member.isdir():
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            os.mkdir(path, 0o700)
        layer.dirs.append((path, member))
    elif member.isreg():
        _write_file(tar, member, path)
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        assert source is not None
        os.link(source, path, follow_symlinks=False)
        layer.note(path)
        return  # the inode keeps the attributes it has
    else:
        os.mkfifo(path, 0o600)
    _set_attributes(layer, member, path)
    layer.note(path)


def _whiteout(layer: _Layer, name: str, base: str) -> None:
    parent_name = name.rstrip("/").rpartition("/")[0]
    parent = layer.resolve_dir(layer.parts(parent_name, name), name, create=False)
    if parent is None:
        return  # nothing below to hide
    if base == OPAQUE:
        _clear_lower(layer, parent)
    elif not base.startswith(WHITEOUT + WHITEOUT):  # other .wh..wh.* AUFS files: skipped
        hidden = base[len(WHITEOUT):]
        if hidden in ("", ".", "..") or "/" in hidden:
            raise layer.refuse(name, "is a malformed whiteout")
        path = os.path.join(parent, hidden)
        if path in layer.added:
            return  # whiteouts hide lower layers only
        with contextlib.suppress(FileNotFoundError):
            _remove(path, os.lstat(path))


def _clear_lower(layer: _Layer, directory: str) -> None:
    """Remove what lower layers put below ``directory`` (keep what this layer made)."""
    with os.scandir(directory) as entries:
        children = list(entries)
    for entry in children:
        path = entry.path
        is_dir = entry.is_dir(follow_symlinks=False)
        if is_dir and (path in layer.holds_added or path in layer.added):
            _clear_lower(layer, path)
        elif path not in layer.added:
            _remove(path, entry.stat(follow_symlinks=False))


def _remove(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)  # does not follow symlinks inside
    else:
        os.unlink(path)


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
    source = tar.extractfile(member)
    assert source is not None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            out.write(chunk)


def _set_attributes(layer: _Layer, member: tarfile.TarInfo, path: str) -> None:
    symlink = member.issym()
    if layer.as_root:
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
    if not symlink:
        os.chmod(path, stat.S_IMODE(member.mode))  # after chown, which clears setuid
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr.") and key[13:].startswith(_KEPT_XATTRS):
            with contextlib.suppress(OSError):
                os.setxattr(path, key[13:], value.encode("utf-8", "surrogateescape"),
                            follow_symlinks=False)
    if not member.isdir():
        os.utime(path, ns=(_ns(member), _ns(member)), follow_symlinks=False)


def _ns(member: tarfile.TarInfo) -> int:
    return int(member.mtime * 1_000_000_000)
