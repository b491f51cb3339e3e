"""Cells on cgroup v1 (and the v1 half of a hybrid layout).

A cell is one directory per hierarchy: cpu, cpuset, pids, freezer, and memory when it is
mounted. How the API's limits map onto v1 files:

* ``cpu_weight`` (v2 semantics, 1..10000, default 100) -> ``cpu.shares`` with systemd's
  mapping ``shares = weight * 1024 // 100``: weight 100 is 1024 shares (the v1 default),
  1 is 10, 10000 is 102400. Read back as ``round(shares * 100 / 1024)``, which returns
  every weight unchanged.
* ``cpu_max_us`` (CPU time per second) -> ``cpu.cfs_period_us = 1000000`` and
  ``cpu.cfs_quota_us = max``; unset is quota ``-1``. The period is written first: the
  kernel checks quota/period against the parent's ratio at each write, and a quota
  meant for a 1 s period is far too large for the default 100 ms one.
* ``cpuset_cpus`` / ``cpuset_mems`` -> ``cpuset.cpus`` / ``cpuset.mems``. A new v1 cpuset
  is empty and refuses tasks (ENOSPC), so every directory gets its parent's values before
  anything can join, and an unset value *follows* the parent: when a cell's cpuset
  changes, its leaves and its nested cells without their own cpuset change with it
  (v1 also requires a child's set to stay within its parent's, so the change is made
  in an order the kernel accepts). The kernel does the copying at mkdir where the
  parent has ``cgroup.clone_children`` set: the driver sets it on the root's cpuset
  directory, every directory made below inherits it, and one read of a new
  directory's ``cpuset.cpus`` checks that the copy happened (it does not when a
  sibling is cpu- or mem-exclusive, nor under a cell made before the flag was used:
  then the values are copied by hand, and the flag set on that parent).

Kernel rules found on the test machines (6.x, hybrid): a quota below 1000 us is EINVAL;
a child's quota/period ratio may not exceed its parent's, nor may a parent be lowered
below a child's (EINVAL); a cpuset naming a CPU that does not exist is ERANGE, one
outside the parent's is EACCES.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from provisioner.cpulist import format_cpu_list, parse_cpu_list
from provisioner.errors import InvalidArgument, NodeError, Unavailable
from provisioner.model import CellLimits
from provisioner.names import DNS_LABEL_RE
from provisioner.node.cgroups.base import (
    CPU_PERIOD_US,
    CPU_WEIGHT_DEFAULT,
    is_marked,
    read_text,
    recorded_limits,
    subdirs,
    write_text,
)
from provisioner.node.cgroups.tree import CgroupDriver
from provisioner.node.types import LeafCgroup

#: Hierarchies every v1 cell lives in, and those used when mounted.
V1_REQUIRED = ("cpu", "cpuset", "pids", "freezer")
V1_OPTIONAL = ("memory",)

_QUOTA_HINT = ("on cgroup v1 a cell's cpu max may not exceed its parent's, "
               "nor be lowered below a nested cell's")


def weight_to_shares(weight: int) -> int:
    """systemd's mapping: weight 100 (the v2 default) is 1024 shares (the v1 default)."""
    return weight * 1024 // 100


def shares_to_weight(shares: int) -> int:
    """Inverse of :func:`weight_to_shares`, rounded to nearest, clamped to 1..10000."""
    return max(1, min(10000, (shares * 100 + 512) // 1024))


class CgroupV1Driver(CgroupDriver):
    """Cells on cgroup v1. ``mounts`` maps controller name -> mount path."""

    cgroup_v2 = False

    def __init__(self, mounts: Mapping[str, str], root_name: str = "provisioner") -> None:
        missing = [c for c in V1_REQUIRED if c not in mounts]
        if missing:
            raise Unavailable(f"cgroup v1 controller(s) {', '.join(missing)} not mounted "
                              "(cells need cpu, cpuset, pids and freezer)")
        hierarchies: list[tuple[str, str]] = []
        for name in V1_REQUIRED + V1_OPTIONAL:
            path = mounts.get(name)
            # Co-mounted controllers (e.g. "cpu,cpuacct") share one directory tree.
            if path and all(path != p for _, p in hierarchies):
                hierarchies.append((name, path))
        super().__init__(hierarchies, root_name)
        index = {path: i for i, (_, path) in enumerate(hierarchies)}
        self._cpu = index[mounts["cpu"]]
        self._cpuset = index[mounts["cpuset"]]
        self._freezer = index[mounts["freezer"]]
        self._cpuset_root = self._roots[self._cpuset]

    # --- hooks -------------------------------------------------------------------

    def ensure_root(self) -> None:
        """Make the root in every hierarchy, with ``cgroup.clone_children`` set in the
        cpuset one so that cells inherit their parent's cpus and mems.
        """
        super().ensure_root()
        # Directories made below the root get their cpuset from their parent at mkdir.
        write_text(os.path.join(self._cpuset_root, "cgroup.clone_children"), "1")

    def _fields_of(self, index: int) -> tuple[str, ...]:
        if index == self._cpu:
            return ("cpu_weight", "cpu_max_us")
        if index == self._cpuset:
            return ("cpuset_cpus", "cpuset_mems")
        return ()

    def _prepare_dir(self, index: int, path: str, fresh: bool = False) -> None:
        if index != self._cpuset:
            return
        if fresh:
            # Copied by the kernel at mkdir (clone_children, see the module doc): cpus
            # and mems together, so one of them tells.
            if read_text(os.path.join(path, "cpuset.cpus")) != "":
                return
            keys: tuple[str, ...] = ("cpus", "mems")
        else:
            keys = tuple(k for k in ("cpus", "mems")
                         if read_text(os.path.join(path, f"cpuset.{k}")) == "")
        parent = os.path.dirname(path)
        for key in keys:
            name = f"cpuset.{key}"
            write_text(os.path.join(path, name), read_text(os.path.join(parent, name)))
        if fresh and path != self._cpuset_root:
            # A parent made without the flag (before it was used): its next children
            # are copied by the kernel.
            write_text(os.path.join(parent, "cgroup.clone_children"), "1")

    def _write_limits(self, cell: str, limits: CellLimits, fresh: bool = False) -> None:
        dirs = self.cell_dirs(cell)
        # A fresh cell already has its parent's cpuset (_prepare_dir) and nothing below it
        # to cascade to: only an explicit value needs writing.
        if not fresh or limits.cpuset_cpus is not None:
            self._write_cpuset(cell, dirs[self._cpuset], "cpus", limits.cpuset_cpus, fresh)
        if not fresh or limits.cpuset_mems is not None:
            self._write_cpuset(cell, dirs[self._cpuset], "mems", limits.cpuset_mems, fresh)
        cpu = dirs[self._cpu]
        quota = os.path.join(cpu, "cpu.cfs_quota_us")
        if limits.cpu_max_us is None:
            if not fresh:  # a fresh cgroup has no quota (-1) already
                write_text(quota, "-1", hint=_QUOTA_HINT)
        else:
            period = os.path.join(cpu, "cpu.cfs_period_us")
            # A fresh cgroup has the kernel's default period (100 ms), never ours.
            if fresh or read_text(period) != str(CPU_PERIOD_US):
                write_text(period, str(CPU_PERIOD_US), hint=_QUOTA_HINT)
            write_text(quota, str(limits.cpu_max_us), hint=_QUOTA_HINT)
        if not fresh or limits.cpu_weight is not None:  # fresh: the default 1024 shares
            weight = limits.cpu_weight if limits.cpu_weight is not None else CPU_WEIGHT_DEFAULT
            write_text(os.path.join(cpu, "cpu.shares"), str(weight_to_shares(weight)))

    def _kernel_limits(self, cell: str) -> tuple[CellLimits, CellLimits]:
        dirs = self.cell_dirs(cell)
        cpu, cpuset = dirs[self._cpu], dirs[self._cpuset]
        quota = int(read_text(os.path.join(cpu, "cpu.cfs_quota_us")))
        period = int(read_text(os.path.join(cpu, "cpu.cfs_period_us")))
        parent = os.path.dirname(cpuset)
        kernel = CellLimits(
            cpu_weight=shares_to_weight(int(read_text(os.path.join(cpu, "cpu.shares")))),
            cpu_max_us=None if quota < 0 else quota * CPU_PERIOD_US // period,
            cpuset_cpus=read_text(os.path.join(cpuset, "cpuset.cpus")) or None,
            cpuset_mems=read_text(os.path.join(cpuset, "cpuset.mems")) or None,
        )
        default = CellLimits(
            cpu_weight=CPU_WEIGHT_DEFAULT,
            cpuset_cpus=read_text(os.path.join(parent, "cpuset.cpus")) or None,
            cpuset_mems=read_text(os.path.join(parent, "cpuset.mems")) or None,
        )
        return kernel, default

    def _leaf_cgroup(self, dirs: list[str]) -> LeafCgroup:
        return LeafCgroup(dirs=tuple(dirs), v2=False, freezer_dir=dirs[self._freezer])

    # --- cpuset ------------------------------------------------------------------

    def _write_cpuset(self, cell: str, path: str, key: str, value: str | None,
                      fresh: bool = False) -> None:
        """Set ``cpuset.<key>`` of a cell (its parent's when ``value`` is None); a fresh
        cell has nothing below it, so the value is written directly (and the parent's
        read only to explain a refusal: the kernel checks the same)."""
        name = f"cpuset.{key}"
        if fresh and value is not None:
            try:
                write_text(os.path.join(path, name), format_cpu_list(parse_cpu_list(value)))
            except (InvalidArgument, NodeError):
                self._check_within_parent(cell, path, name, value)
                raise
            return
        allowed = self._check_within_parent(cell, path, name, value)
        wanted = parse_cpu_list(value) if value is not None else allowed
        if fresh:
            write_text(os.path.join(path, name), format_cpu_list(wanted))
            return
        self._cascade(path, cell, key, wanted)

    @staticmethod
    def _check_within_parent(cell: str, path: str, name: str, value: str | None) -> list[int]:
        """The ids the parent allows; InvalidArgument if ``value`` names others."""
        parent_file = os.path.join(os.path.dirname(path), name)
        allowed = parse_cpu_list(read_text(parent_file))
        wanted = parse_cpu_list(value) if value is not None else allowed
        outside = sorted(set(wanted) - set(allowed))
        if outside:
            raise InvalidArgument(
                f"{name} {value!r} of cell {cell!r} names {format_cpu_list(outside)}, "
                f"outside the {format_cpu_list(allowed)!r} its parent allows ({parent_file})")
        return allowed

    def _cascade(self, path: str, cell: str | None, key: str, wanted: list[int]) -> None:
        """Move ``path`` and every follower below it to ``wanted``, never leaving a child
        outside its parent: widen to old | new, move the followers, then narrow."""
        file = os.path.join(path, f"cpuset.{key}")
        current = read_text(file)
        old = parse_cpu_list(current) if current else []
        union = sorted(set(old) | set(wanted))
        if union != old:
            write_text(file, format_cpu_list(union))
        for name in subdirs(path):
            child = os.path.join(path, name)
            child_cell = self._follower(cell, name, child, key)
            if child_cell is not None:
                self._cascade(child, child_cell or None, key, wanted)
        if wanted != union:
            write_text(file, format_cpu_list(wanted),
                       hint="a nested cell with its own cpuset still uses these")

    def _follower(self, cell: str | None, name: str, child: str, key: str) -> str | None:
        """The cell path of a child that follows its parent's cpuset ("" for a leaf),
        or None for one that keeps its own (or is not ours)."""
        if not is_marked(child):
            return None
        if name.startswith("_"):
            return ""
        if cell is None or not DNS_LABEL_RE.fullmatch(name):
            return None
        child_cell = f"{cell}/{name}" if cell else name
        asked = recorded_limits(self.cell_dirs(child_cell)[0])
        own = getattr(asked, f"cpuset_{key}") if asked is not None else None
        return child_cell if own is None else None
