"""Small value types shared by the node layer's modules (cgroups, namespaces, shim)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LeafCgroup:
    """The cgroup directories, one per hierarchy, that one executable's processes live in.

    ``dirs`` are absolute paths, each with a ``cgroup.procs`` file. On cgroup v2 there is
    one directory (``v2`` is true and it has ``cgroup.kill``). On v1 / hybrid there is one
    per hierarchy used (cpu, cpuset, pids, freezer...), and ``freezer_dir`` names the
    freezer one so that a whole tree can be frozen before it is killed.
    """

    dirs: tuple[str, ...]
    v2: bool
    freezer_dir: str | None = None


@dataclass(frozen=True)
class NamespaceTarget:
    """Namespaces an executable joins: those of the cell's holder process.

    ``holder_pid`` plus ``holder_start_time`` (field 22 of /proc/PID/stat) identify the
    holder. ``namespaces`` are nsenter's long option names without dashes, for example
    ``("pid", "mount", "ipc", "uts", "net")``.
    """

    holder_pid: int
    holder_start_time: int
    namespaces: tuple[str, ...]
