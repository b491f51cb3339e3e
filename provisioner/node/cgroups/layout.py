"""Cgroups for cells: layout detection and the driver for it.

Usage::

    layout = detect_layout()                     # once, at start
    driver = make_driver(layout, "provisioner")  # CgroupV2Driver or CgroupV1Driver
    driver.create("web", CellLimits(cpu_weight=200))
    leaf = driver.create_leaf("web", executable_leaf("nginx"))

The driver interface and shared logic are in :mod:`.cgroups_tree`, the per-version limit
files in :mod:`.cgroups_v1` / :mod:`.cgroups_v2`, helpers in :mod:`.cgroups_base`.
"""

from __future__ import annotations

import os
import re

from provisioner.cpulist import format_cpu_list, parse_cpu_list
from provisioner.errors import PermissionDenied, Unavailable
from provisioner.node.cgroups.base import (
    HOLDER_LEAF,
    OWNER_XATTR,
    check_leaf_name,
    executable_leaf,
    same_limits,
    validate_limits,
)
from provisioner.node.cgroups.tree import CgroupDriver
from provisioner.node.cgroups.v1 import V1_OPTIONAL, V1_REQUIRED, CgroupV1Driver
from provisioner.node.cgroups.v2 import CgroupV2Driver
from provisioner.records import field, record

__all__ = [
    "HOLDER_LEAF",
    "OWNER_XATTR",
    "CgroupDriver",
    "CgroupLayout",
    "CgroupV1Driver",
    "CgroupV2Driver",
    "check_leaf_name",
    "detect_layout",
    "executable_leaf",
    "format_cpu_list",
    "make_driver",
    "parse_cpu_list",
    "same_limits",
    "validate_limits",
]

#: cgroup v1 controller names that can appear among a cgroup mount's options.
_V1_CONTROLLERS = frozenset({
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory",
    "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma",
})
#: Where a v2 mount is usually found, best first.
_V2_PREFERRED = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")


@record
class CgroupLayout:
    """How this node's cgroups are mounted.

    ``cgroup_v2`` is true when the cpu controller is on v2 (pure v2 hosts); then cells use
    ``v2_mount`` only. Otherwise cells use the v1 hierarchies in ``v1_mounts``
    (controller -> mount path); ``v2_mount`` may still name a hybrid layout's
    controller-less ``unified`` mount.
    """

    cgroup_v2: bool
    v2_mount: str | None = None
    v1_mounts: dict[str, str] = field(default_factory=dict)


def _unescape(text: str) -> str:
    """/proc/self/mounts writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _controllers(mount: str) -> set[str]:
    try:
        with open(os.path.join(mount, "cgroup.controllers"), encoding="ascii") as fh:
            return set(fh.read().split())
    except OSError:
        return set()


def _check_writable(path: str, options: set[str]) -> None:
    if "ro" in options or not os.access(path, os.W_OK):
        raise Unavailable(f"the cgroup filesystem at {path} is not writable "
                          "(mounted read-only, e.g. inside an unprivileged container?)")


def detect_layout(mounts_file: str = "/proc/self/mounts") -> CgroupLayout:
    """Read the mount table and decide between cgroup v2 and v1.

    Raises :class:`PermissionDenied` when not root, :class:`Unavailable` when no usable
    (mounted, writable, with cpu, cpuset, pids and freezer) cgroup filesystem exists.
    """
    if os.geteuid() != 0:
        raise PermissionDenied(f"managing cgroups needs root (running as uid {os.geteuid()})")
    try:
        with open(mounts_file, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise Unavailable(f"cannot read the mount table {mounts_file}: {exc.strerror}") from exc

    v2_mounts: list[tuple[str, set[str]]] = []
    v1_mounts: dict[str, str] = {}
    v1_options: dict[str, set[str]] = {}
    for line in lines:
        fields_ = line.split()
        if len(fields_) < 4:
            continue
        path, fstype, options = _unescape(fields_[1]), fields_[2], set(fields_[3].split(","))
        if fstype == "cgroup2":
            v2_mounts.append((path, options))
        elif fstype == "cgroup":
            for controller in sorted(options & _V1_CONTROLLERS):
                # The first mount of a hierarchy wins; later ones are usually bind mounts.
                if controller not in v1_mounts:
                    v1_mounts[controller] = path
                    v1_options[path] = options
    if not v2_mounts and not v1_mounts:
        raise Unavailable(f"no cgroup filesystem is mounted (read {mounts_file})")

    v2_mounts.sort(key=lambda m: (_V2_PREFERRED.index(m[0]) if m[0] in _V2_PREFERRED
                                  else len(_V2_PREFERRED)))
    v2_with_cpu = [m for m in v2_mounts if "cpu" in _controllers(m[0])]
    if v2_with_cpu:
        path, options = v2_with_cpu[0]
        _check_writable(path, options)
        return CgroupLayout(cgroup_v2=True, v2_mount=path)

    v2_path = v2_mounts[0][0] if v2_mounts else None
    missing = [c for c in V1_REQUIRED if c not in v1_mounts]
    if missing:
        where = f"cgroup v2 at {v2_path} offers no cpu controller and " if v2_path else ""
        raise Unavailable(f"{where}cgroup v1 controller(s) {', '.join(missing)} are not "
                          "mounted; cells need cpu, cpuset, pids and freezer")
    used = {c: p for c, p in v1_mounts.items() if c in V1_REQUIRED + V1_OPTIONAL}
    for path in sorted(set(used.values())):
        _check_writable(path, v1_options[path])
    return CgroupLayout(cgroup_v2=False, v2_mount=v2_path, v1_mounts=dict(v1_mounts))


def make_driver(layout: CgroupLayout, root_name: str = "provisioner") -> CgroupDriver:
    """The driver for ``layout``; cells live under ``root_name`` in every hierarchy."""
    if layout.cgroup_v2:
        if layout.v2_mount is None:
            raise Unavailable("cgroup v2 layout without a v2 mount")
        return CgroupV2Driver(layout.v2_mount, root_name)
    return CgroupV1Driver(layout.v1_mounts, root_name)
