"""Mounts for container bundles: an overlay root file system, unmounting, mountinfo.

mount(2) / umount2(2) are called through ctypes rather than util-linux mount(8): no
process to spawn per mount, the kernel's errno as it is (mount(8) turns it into prose
and exit codes), no mount helper, fstab or mtab lookups, and umount2 can be told not to
follow a symlink (UMOUNT_NOFOLLOW). The overlay options are still one string that the
kernel splits at ',' (and ':' between lower directories) and unescapes at '\\', hence
the paths refused (:data:`OVERLAY_UNSAFE`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re

from provisioner.errors import NodeError, PermissionDenied, Unavailable

#: Characters a path in the overlay options may not hold (split, unescaped, or ambiguous).
OVERLAY_UNSAFE = re.compile(r"[,:\\\s]")
MNT_DETACH, _UMOUNT_NOFOLLOW = 2, 8

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, with the argument types of the calls the node layer makes
    through it (mount, umount2, unshare); errno is kept (``ctypes.get_errno``)."""
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                              ctypes.c_ulong, ctypes.c_char_p]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.unshare.argtypes = [ctypes.c_int]
        _libc = lib
    return _libc


def mount_overlay(lower: str, upper: str, work: str, target: str) -> None:
    """Mount an overlay file system at ``target`` (read-only ``lower`` layers, a
    writable ``upper`` with its ``work`` directory); NodeError naming the container if the
    kernel refuses.
    """
    data = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if libc().mount(b"overlay", os.fsencode(target), b"overlay", 0, os.fsencode(data)) == 0:
        return
    err = ctypes.get_errno()
    message = (f"cannot mount the overlay root file system of {os.path.dirname(target)} "
               f"(lowerdir {lower}): {os.strerror(err)}")
    if err == errno.EPERM:
        raise PermissionDenied(message + " (mounting needs root)")
    if err == errno.ENODEV:
        raise Unavailable(message + " (no overlay file system in this kernel)")
    raise NodeError(message + ("; the kernel log (dmesg) says why" if err == errno.EINVAL
                               else ""))


def unmount(target: str) -> None:
    """Detach TARGET (one mount) from the tree at once (``MNT_DETACH``); the kernel
    frees it when nothing uses it any more.

    Detached rather than unmounted in place: the caller removes what was mounted right
    after, and an unmount in place waits for an RCU grace period before it returns
    (~10 ms of every container's removal on this test machine's kernel, 6.18, against
    ~1 ms detached); it also fails while something is busy on the mount, where
    detaching does not."""
    if libc().umount2(os.fsencode(target), _UMOUNT_NOFOLLOW | MNT_DETACH) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return  # not (or no longer) a mount point
    raise NodeError(f"cannot unmount {target}: {os.strerror(err)}")


def mountinfo() -> list[tuple[str, str, str]]:
    """(root, mount point, file system type) of every mount this process sees."""
    with open("/proc/self/mountinfo", "rb") as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        fields = line.split(b" ")
        try:
            fstype = fields[fields.index(b"-", 6) + 1]
        except (ValueError, IndexError):
            continue
        out.append((_unescape(fields[3]), _unescape(fields[4]), os.fsdecode(fstype)))
    return out


def _unescape(field: bytes) -> str:
    # The kernel writes space, tab, newline and backslash as \ooo (octal).
    if b"\\" not in field:  # nearly every field: no regular expression to run
        return os.fsdecode(field)
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]),
                              field))


def mounts_under(path: str) -> list[str]:
    """Mount points at or below PATH, deepest first (one stacked twice: listed twice)."""
    real = os.path.realpath(path)
    found = [mp for _, mp, _ in mountinfo() if mp == real or mp.startswith(real + "/")]
    return sorted(found, key=lambda mp: mp.count("/"), reverse=True)
