"""The network namespace the containers of one pod share.

A pod's containers reach each other on 127.0.0.1, as in any pod: each container's
runtime config joins one *named* network namespace (``ip netns``), made when the pod is
allocated and deleted when it is freed. A named namespace is a bind mount of the
namespace at ``/run/netns/<name>``, so it needs no process to hold it (unlike a cell's
namespace holder: a pod's containers come and go, the pod's network stays), survives a
daemon restart, and is listed by ``ip netns``. Loopback is up in it; a ``bridge`` pod
also gets an address on the node's pod bridge from the CNI plugins
(:mod:`provisioner.node.oci.cni_pods`, which also records every pod namespace it
makes, and so sweeps the ones an interrupted run left), and every pod its /etc/hosts
and /etc/resolv.conf (:mod:`provisioner.node.oci.cni_etc`).

Names are ``prov-<cgroup root>-<pod>``: the cgroup root keeps two provisioner
instances on one host (tests, say) apart, and both parts are DNS labels, so the name is
a safe file name.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import struct
import threading

from provisioner.errors import (
    InvalidArgument,
    NodeError,
    PermissionDenied,
    ProvisionerError,
)
from provisioner.model import PodSpec
from provisioner.names import check_dns_label
from provisioner.node.oci.mounts import MNT_DETACH, libc
from provisioner.podnet import pod_network_problems

NETNS_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_MS_BIND, _MS_REC, _MS_SHARED = 0x1000, 0x4000, 0x100000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
#: struct ifreq with ifr_flags: the interface's name, the flags, padding to 32 bytes.
_IFREQ_FLAGS = "16sH14x"


def netns_name(root_name: str, pod: str) -> str:
    """The name of a pod's namespace (see the module docstring)."""
    return (f"prov-{check_dns_label(root_name, 'cgroup root name')}-"
            f"{check_dns_label(pod, 'pod name')}")


def netns_path(name: str) -> str:
    """Where a named namespace is mounted."""
    return os.path.join(NETNS_DIR, name)


def is_live(name: str) -> bool:
    """The namespace file is there and a namespace is mounted on it (after a reboot on
    a /run that is not a tmpfs, only the empty file is left)."""
    path = netns_path(name)
    try:
        return os.stat(path).st_dev != os.stat(NETNS_DIR).st_dev
    except FileNotFoundError:
        return False


def ensure_netns(name: str) -> str:
    """Make the pod's namespace (loopback up) unless it is live; its path.

    Made here as ``ip netns add NAME`` + ``ip -n NAME link set lo up`` make it - a
    shared ``/run/netns``, the empty file, a bind mount of a new namespace on it - but
    with syscalls from a thread of this process: two programs fewer to start (from a
    small process 0.7 ms against 2.7; a large one's fork costs more)."""
    if is_live(name):
        return netns_path(name)
    path = netns_path(name)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a stale file, left by a reboot
    _share_netns_dir()
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except OSError as exc:
        raise _error(f"creating network namespace {name}", exc.errno or 0) from None
    failure: list[BaseException] = []
    maker = threading.Thread(target=_make_namespace, args=(name, path, failure),
                             name=f"netns-{name}")
    maker.start()
    maker.join()
    if failure:
        remove_netns(name)
        if isinstance(failure[0], ProvisionerError):
            raise failure[0]
        raise NodeError(f"creating network namespace {name}: {failure[0]}")
    return path


def _make_namespace(name: str, path: str, failure: list[BaseException]) -> None:
    """In a thread of its own (a network namespace is a thread's; the thread ends in
    it): a new namespace, bound on ``path``, with loopback up."""
    what = f"creating network namespace {name}"
    try:
        lib = libc()
        if lib.unshare(_CLONE_NEWNET) != 0:
            raise _error(what, ctypes.get_errno())
        if lib.mount(b"/proc/thread-self/ns/net", os.fsencode(path), b"none", _MS_BIND,
                     None) != 0:
            raise _error(f"{what} (binding it on {path})", ctypes.get_errno())
        _loopback_up(name)
    except BaseException as exc:  # reported to the caller, in its thread
        failure.append(exc)


def _loopback_up(name: str) -> None:
    """``lo`` up in this thread's network namespace (SIOCSIFFLAGS, as ip link does)."""
    import _socket  # (only to make a namespace: destroy never needs it)

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = struct.pack(_IFREQ_FLAGS, b"lo", 0)
        flags = struct.unpack(_IFREQ_FLAGS, fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS,
                                                        request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS,
                    struct.pack(_IFREQ_FLAGS, b"lo", flags | _IFF_UP))
    except OSError as exc:
        raise _error(f"bringing up loopback in {name}", exc.errno or 0) from None
    finally:
        sock.close()


def _share_netns_dir() -> None:
    """``/run/netns`` made, and a shared mount point (as ip makes it): a namespace
    bound there later is seen in mount namespaces made from this one meanwhile."""
    os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
    lib, where = libc(), os.fsencode(NETNS_DIR)
    if lib.mount(b"", where, b"none", _MS_SHARED | _MS_REC, None) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EINVAL:  # not a mount point yet: bind it on itself, then share it
        if lib.mount(where, where, b"none", _MS_BIND | _MS_REC, None) == 0 and \
                lib.mount(b"", where, b"none", _MS_SHARED | _MS_REC, None) == 0:
            return
        err = ctypes.get_errno()
    raise _error(f"making {NETNS_DIR} a shared mount", err)


def remove_netns(name: str) -> None:
    """Delete the namespace (missing is fine): detach its mount, remove its file (as
    ``ip netns delete`` does; the kernel frees the namespace when nothing is in it)."""
    path = netns_path(name)
    if is_live(name) and libc().umount2(os.fsencode(path), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise _error(f"deleting network namespace {name}", err)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _error(what: str, err: int) -> ProvisionerError:
    """The error for a syscall that failed with ``err``."""
    message = f"{what}: {os.strerror(err)}"
    if err == errno.EPERM:
        return PermissionDenied(message + " (network namespaces need root)")
    return NodeError(message)


def check_pod_network(spec: PodSpec) -> None:
    """InvalidArgument for a pod whose network and ports contradict each other
    (:func:`provisioner.podnet.pod_network_problems`)."""
    problems = pod_network_problems(spec)
    if problems:
        raise InvalidArgument(f"pod {spec.name!r}: " + "; ".join(m for _, m in problems))
