"""Cells on the cgroup v2 unified hierarchy.

Limits map directly: ``cpu.weight``, ``cpu.max`` as ``"<max> 1000000"`` (or ``"max"``
when unset), ``cpuset.cpus`` / ``cpuset.mems`` (empty when unset: v2 then uses the
parent's). A controller's files only appear in a cgroup once the controller is enabled
in its parent's ``cgroup.subtree_control``, so before writing limits the driver enables
the controllers the cell needs in every ancestor, from the mount down to the cell's
parent - only those the cell needs, and only if the mount offers them in
``cgroup.controllers`` (otherwise :class:`Unavailable`, before anything is created).

Cells never hold processes themselves (only their ``_x.*`` / ``_holder`` leaves do), so
the "no internal processes" rule of v2 never blocks enabling a controller.
"""

from __future__ import annotations

import os

from provisioner.errors import NodeError, Unavailable
from provisioner.model import CellLimits
from provisioner.node.cgroups.base import (
    CPU_PERIOD_US,
    CPU_WEIGHT_DEFAULT,
    read_text,
    write_text,
)
from provisioner.node.cgroups.tree import CgroupDriver
from provisioner.node.types import LeafCgroup
from provisioner.records import fields


def needed_controllers(limits: CellLimits) -> list[str]:
    """The v2 controllers a cell with ``limits`` needs enabled above it."""
    out: list[str] = []
    if limits.cpu_weight is not None or limits.cpu_max_us is not None:
        out.append("cpu")
    if limits.cpuset_cpus is not None or limits.cpuset_mems is not None:
        out.append("cpuset")
    return out


class CgroupV2Driver(CgroupDriver):
    """Cells on a cgroup v2 mount (``/sys/fs/cgroup`` on pure v2 hosts)."""

    cgroup_v2 = True
    _staged = False  # cgroup v2 refuses rename: the mark follows mkdir at once

    def __init__(self, mount: str, root_name: str = "provisioner") -> None:
        super().__init__([("unified", mount)], root_name)
        self.mount = mount

    def available_controllers(self) -> set[str]:
        """Controllers this mount offers (its root's ``cgroup.controllers``)."""
        return set(read_text(os.path.join(self.mount, "cgroup.controllers")).split())

    # --- hooks -------------------------------------------------------------------

    def _check_supported(self, limits: CellLimits) -> None:
        available = self.available_controllers()
        for controller in needed_controllers(limits):
            if controller not in available:
                raise Unavailable(
                    f"the cgroup v2 {controller} controller is not available on "
                    f"{self.mount} (its cgroup.controllers offers: "
                    f"{', '.join(sorted(available)) or 'nothing'}), so {controller} limits "
                    "cannot be set here")

    def _fields_of(self, index: int) -> tuple[str, ...]:
        return tuple(f.name for f in fields(CellLimits))  # one hierarchy holds them all

    def _write_limits(self, cell: str, limits: CellLimits, fresh: bool = False) -> None:
        path = self.cell_dirs(cell)[0]
        self._enable(path, needed_controllers(limits))
        # A controller enabled earlier (for this cell or a sibling) has files even when
        # this cell sets nothing: reset those to the kernel's defaults.
        weight = limits.cpu_weight if limits.cpu_weight is not None else CPU_WEIGHT_DEFAULT
        cpu_max = "max" if limits.cpu_max_us is None else f"{limits.cpu_max_us} {CPU_PERIOD_US}"
        # "\n", not "": an empty write(2) may never reach the kernel's handler.
        values = {
            "cpu.weight": str(weight),
            "cpu.max": cpu_max,
            "cpuset.cpus": limits.cpuset_cpus or "\n",
            "cpuset.mems": limits.cpuset_mems or "\n",
        }
        for name, value in values.items():
            default = value in (str(CPU_WEIGHT_DEFAULT), "max", "\n")
            if fresh and default:
                continue  # a new cgroup's files hold the defaults already
            file = os.path.join(path, name)
            if os.path.exists(file):
                write_text(file, value)
            elif not default:
                raise NodeError(f"{file} is missing although its controller was enabled "
                                f"in {os.path.dirname(path)}/cgroup.subtree_control")

    def _kernel_limits(self, cell: str) -> tuple[CellLimits, CellLimits]:
        path = self.cell_dirs(cell)[0]
        weight = self._read_optional(path, "cpu.weight")
        cpu_max = (self._read_optional(path, "cpu.max") or "max").split()
        kernel = CellLimits(
            cpu_weight=int(weight) if weight else CPU_WEIGHT_DEFAULT,
            cpu_max_us=(None if cpu_max[0] == "max"
                        else int(cpu_max[0]) * CPU_PERIOD_US // int(cpu_max[1])),
            cpuset_cpus=self._read_optional(path, "cpuset.cpus") or None,
            cpuset_mems=self._read_optional(path, "cpuset.mems") or None,
        )
        return kernel, CellLimits(cpu_weight=CPU_WEIGHT_DEFAULT)

    def _leaf_cgroup(self, dirs: list[str]) -> LeafCgroup:
        return LeafCgroup(dirs=tuple(dirs), v2=True)

    # --- helpers -----------------------------------------------------------------

    @staticmethod
    def _read_optional(path: str, name: str) -> str | None:
        file = os.path.join(path, name)
        return read_text(file) if os.path.exists(file) else None

    def _enable(self, cell_dir: str, controllers: list[str]) -> None:
        """Enable ``controllers`` in the subtree_control of every ancestor of ``cell_dir``."""
        if not controllers:
            return
        relative = os.path.relpath(os.path.dirname(cell_dir), self.mount)
        chain = [self.mount]
        for part in [] if relative == "." else relative.split(os.sep):
            chain.append(os.path.join(chain[-1], part))
        for ancestor in chain:
            control = os.path.join(ancestor, "cgroup.subtree_control")
            enabled = set(read_text(control).split())
            for controller in controllers:
                if controller not in enabled:
                    write_text(control, f"+{controller}",
                               hint="v2 refuses this while the cgroup holds processes itself")
