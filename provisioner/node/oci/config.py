"""The ``config.json`` of a container's bundle: OCI runtime spec 1.0.2, as runc reads it.

:func:`runtime_config` returns what ``runc spec`` (runc 1.1) writes, changed where a
supervised container needs it:

- ``process.terminal`` false: the container's stdio is runc's, which is the shim's
  pipes, so its output lands in the executable's log files;
- the given args, env, cwd, uid and gid; ``root`` is the bundle's ``rootfs`` (an
  overlay, see :mod:`provisioner.node.oci.containers`), writable;
- the given hostname (uts namespace) and ``linux.cgroupsPath``;
- namespaces pid, mount, ipc, uts, network (runc brings loopback up in a new network
  namespace, nothing else) and cgroup (runc 1.1 supports it on v1, hybrid and v2);
- **no rlimits**: ``runc spec`` sets RLIMIT_NOFILE 1024/1024, and runc fails to start a
  container whose limit is above the host's hard limit. Without any, the container
  inherits runc's limits (the shim's), which are within the hard limits by definition.

Kept from ``runc spec``: the capability set (AUDIT_WRITE, KILL, NET_BIND_SERVICE),
``noNewPrivileges``, the mounts (/proc, /dev tmpfs, /dev/pts, /dev/shm, /dev/mqueue,
/sys read-only, the cgroup file system read-only), the device rule (deny all: runc adds
its default allowed devices, /dev/null and friends), masked and read-only paths. No
seccomp profile (``runc spec`` has none either).
"""

from __future__ import annotations

import os
import re

from provisioner.errors import InvalidArgument
from provisioner.names import DNS_LABEL

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

OCI_VERSION = "1.0.2"

#: ``runc spec``'s capabilities, in every set it fills.
CAPABILITIES = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")

NAMESPACES = ("pid", "network", "ipc", "uts", "mount", "cgroup")
#: ``netns`` value for the host's network namespace (hostNetwork pods).
HOST_NETWORK = "host"

MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_NO_EXEC = ["nosuid", "noexec", "nodev"]
MOUNTS: tuple[dict[str, Any], ...] = (
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": [*_NO_EXEC, "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": _NO_EXEC},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [*_NO_EXEC, "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": [*_NO_EXEC, "relatime", "ro"]},
)

#: A host name: DNS labels joined by '.', at most HOST_NAME_MAX (64) bytes.
_HOSTNAME_RE = re.compile(rf"{DNS_LABEL}(?:\.{DNS_LABEL})*")
_HOSTNAME_MAX = 64
_ID_MAX = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel


def runtime_config(*, args: list[str], env: list[str], cwd: str, cgroups_path: str,
                   hostname: str, uid: int = 0, gid: int = 0,
                   root: str = "rootfs", netns: str | None = None) -> dict[str, Any]:
    """The runtime config of one container (see the module docstring); InvalidArgument
    for a value runc would refuse or misread. ``netns``: the path of a network
    namespace to join (a pod's), :data:`HOST_NETWORK` for the host's (no network
    namespace of its own), else the container gets a new one."""
    if netns not in (None, HOST_NETWORK) and (
            not os.path.isabs(_no_nul(netns, "netns")) or ".." in str(netns)):
        raise InvalidArgument(f"network namespace path {netns!r} is not absolute")
    check_process(args, env, cwd, uid, gid)
    check_hostname(hostname)
    check_cgroups_path(cgroups_path)
    caps = list(CAPABILITIES)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": list(args),
            "env": list(env),
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                             "ambient": caps},
            "noNewPrivileges": True,
        },
        "root": {"path": root, "readonly": False},
        "hostname": hostname,
        "mounts": [dict(m, options=list(m["options"])) if "options" in m else dict(m)
                   for m in MOUNTS],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": ns, "path": netns} if ns == "network" and netns else
                           {"type": ns} for ns in NAMESPACES
                           if not (ns == "network" and netns == HOST_NETWORK)],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def _no_nul(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, not {type(value).__name__}")
    if "\0" in value:
        raise InvalidArgument(f"{what} {value!r} contains a NUL byte")
    return value


def check_process(args: list[str], env: list[str], cwd: str, uid: int, gid: int) -> None:
    """Refuse a container process runc would choke on: an empty command, NUL bytes,
    environment entries that are not KEY=VALUE, a relative cwd, ids out of range.
    """
    if not isinstance(args, list) or not args:
        raise InvalidArgument("a container needs a command (args is empty)")
    for arg in args:
        _no_nul(arg, "container argument")
    if args[0] == "":
        raise InvalidArgument("the container's command (args[0]) is empty")
    if not isinstance(env, list):
        raise InvalidArgument("container environment must be a list of KEY=VALUE")
    for entry in env:
        key, eq, _ = _no_nul(entry, "container environment entry").partition("=")
        if not key or not eq:
            raise InvalidArgument(f"container environment entry {entry!r} is not KEY=VALUE")
    if not _no_nul(cwd, "container working directory").startswith("/"):
        raise InvalidArgument(f"container working directory {cwd!r} is not absolute")
    for what, value in (("uid", uid), ("gid", gid)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _ID_MAX:
            raise InvalidArgument(f"container {what} {value!r} is not in 0..{_ID_MAX}")


def check_hostname(hostname: str) -> str:
    """``hostname`` if it is a valid host name (DNS labels); else InvalidArgument."""
    if (not isinstance(hostname, str) or not _HOSTNAME_RE.fullmatch(hostname)
            or len(hostname) > _HOSTNAME_MAX):
        raise InvalidArgument(f"container hostname {hostname!r} is not a host name "
                              f"(DNS labels joined by '.', at most {_HOSTNAME_MAX} bytes)")
    return hostname


def check_cgroups_path(path: str) -> str:
    """An absolute cgroup path (relative to each hierarchy's mount) without '.', '..' or
    empty parts, so runc's cgroup cannot land outside the tree it is meant for."""
    parts = _no_nul(path, "cgroups path").split("/")
    if (parts[0] != "" or len(parts) < 2
            or any(p in ("", ".", "..") or "\n" in p for p in parts[1:])):
        raise InvalidArgument(f"cgroups path {path!r} must be absolute, without empty, "
                              "'.' or '..' parts (e.g. /provisioner/cell/_x.name/ctr)")
    return path
