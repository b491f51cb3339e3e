"""Operations on one executable's leaf cgroup: attach a process, list, kill everything.

``kill_all`` is what makes "stop" mean *nothing survives*: a process group signal misses
children that called setsid, and a loop of "read cgroup.procs, SIGKILL each" races with
processes that fork faster than we kill. The cgroup itself is the complete list, so:

- cgroup v2 with ``cgroup.kill`` (Linux 5.14+): one write kills the whole subtree.
- cgroup v2 without it: freeze via ``cgroup.freeze``, SIGKILL every member, thaw.
- cgroup v1: freeze via the freezer hierarchy (``freezer.state``), SIGKILL every member of
  every hierarchy's directory, thaw. A frozen task cannot fork, so the list is final;
  the SIGKILLs take effect once the tasks are thawed.

"Everything in the leaf" includes its sub-cgroups: a container runtime (runc) puts the
container one cgroup below the leaf (``<leaf>/ctr``), and a root process could
otherwise escape a stop by making a sub-cgroup of its own. The v1 freezer and v2
``cgroup.kill`` / ``cgroup.freeze`` act on the whole subtree; :func:`pids` descends into
it (a kernfs directory's link count is 2 + its subdirectories, so a leaf without any
costs one stat). On v1 a sub-cgroup frozen by itself stays frozen when the leaf thaws,
so every sub-cgroup is thawed too. The compiled shim (``csrc/leaf.c``) follows the
same rules.
"""

from __future__ import annotations

import errno
import os
import signal
import time

from provisioner.errors import NodeError, NotFound
from provisioner.node.process.procs import kill_pids, proc_comm
from provisioner.node.types import LeafCgroup

DEFAULT_KILL_TIMEOUT_S = 5.0
_FREEZE_TIMEOUT_S = 1.0
#: Sub-cgroups deeper than this below a leaf are not looked at (as in csrc/leaf.c).
_MAX_DEPTH = 32


def _read(path: str) -> str:
    # Raw reads: these files are read many times per start and stop, and a Python file
    # object costs more than the syscalls themselves.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        return data.decode("ascii", "replace")
    finally:
        os.close(fd)


def _write(path: str, value: str) -> None:
    # Unbuffered single write: cgroup files act on each write(2) and report errors there.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def attach(leaf: LeafCgroup, pid: int) -> None:
    """Move PID into every directory of LEAF (one per hierarchy on cgroup v1).

    The shim's child calls this on itself before exec, so everything it starts is inside.
    """
    for d in leaf.dirs:
        path = os.path.join(d, "cgroup.procs")
        try:
            _write(path, str(pid))
        except FileNotFoundError as exc:
            raise NotFound(f"leaf cgroup {d} does not exist") from exc
        except OSError as exc:
            raise NodeError(f"cannot attach pid {pid} to {d}: {exc.strerror}") from exc


def pids(leaf: LeafCgroup) -> set[int]:
    """Every pid in any directory of LEAF or in a sub-cgroup of one (zombies are not
    listed by the kernel)."""
    found: set[int] = set()
    for d in leaf.dirs:
        _collect(d, found, 0)
    return found


def _collect(d: str, found: set[int], depth: int) -> None:
    try:
        text = _read(os.path.join(d, "cgroup.procs"))
    except FileNotFoundError:
        return  # a removed directory holds nothing
    found.update(int(tok) for tok in text.split())
    for sub in _subdirs(d, depth):
        _collect(sub, found, depth + 1)


def _subdirs(d: str, depth: int) -> list[str]:
    """Paths of the sub-cgroups of D (none beyond _MAX_DEPTH, none if D is gone)."""
    try:
        # kernfs counts a directory's subdirectories in its link count: 2 means none.
        if depth >= _MAX_DEPTH or os.stat(d).st_nlink <= 2:
            return []
        with os.scandir(d) as it:
            return [e.path for e in it if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _thaw_subtree_v1(d: str, depth: int = 0) -> None:
    """Thaw every sub-cgroup of the freezer directory D (see the module docstring)."""
    for sub in _subdirs(d, depth):
        try:
            _write(os.path.join(sub, "freezer.state"), "THAWED")
        except OSError:
            continue  # removed meanwhile: nothing left to thaw
        _thaw_subtree_v1(sub, depth + 1)


def is_empty(leaf: LeafCgroup) -> bool:
    """True when no process is left in the leaf (or its sub-cgroups)."""
    return not pids(leaf)


def _v2_dir(leaf: LeafCgroup) -> str:
    return leaf.dirs[0]


def _freeze_v1(freezer_dir: str, frozen: bool) -> None:
    state_file = os.path.join(freezer_dir, "freezer.state")
    _write(state_file, "FROZEN" if frozen else "THAWED")
    if not frozen:
        _thaw_subtree_v1(freezer_dir)
        return
    # The write returns while the state may still be FREEZING; wait (bounded) for FROZEN.
    # If it never settles (a task stuck in D state), killing still works, only less
    # atomically, so we go on rather than fail.
    deadline = time.monotonic() + _FREEZE_TIMEOUT_S
    while _read(state_file).strip() != "FROZEN" and time.monotonic() < deadline:
        time.sleep(0.002)


def _freeze_v2(d: str, frozen: bool) -> None:
    _write(os.path.join(d, "cgroup.freeze"), "1" if frozen else "0")
    if not frozen:
        return
    deadline = time.monotonic() + _FREEZE_TIMEOUT_S
    while time.monotonic() < deadline:
        events = _read(os.path.join(d, "cgroup.events"))
        if "frozen 1" in events:
            return
        time.sleep(0.002)


def _kill_round(leaf: LeafCgroup) -> None:
    """One freeze / SIGKILL everyone / thaw pass (or one cgroup.kill write)."""
    if leaf.v2:
        d = _v2_dir(leaf)
        kill_file = os.path.join(d, "cgroup.kill")
        if os.path.exists(kill_file):
            _write(kill_file, "1")
            return
        _freeze_v2(d, True)
        try:
            kill_pids(pids(leaf), signal.SIGKILL)
        finally:
            _freeze_v2(d, False)
        return
    if leaf.freezer_dir is not None:
        _freeze_v1(leaf.freezer_dir, True)
        try:
            kill_pids(pids(leaf), signal.SIGKILL)
        finally:
            # Thaw even if listing failed: a frozen leaf would hang its processes forever.
            _freeze_v1(leaf.freezer_dir, False)
        return
    # v1 without a freezer: best effort, repeated by the caller's loop until empty.
    kill_pids(pids(leaf), signal.SIGKILL)


def kill_all(leaf: LeafCgroup, timeout_s: float = DEFAULT_KILL_TIMEOUT_S) -> None:
    """SIGKILL every process in LEAF and wait until its cgroup.procs files are empty.

    Raises NodeError naming the survivors if the leaf is not empty within timeout_s.
    Note: a killed process that is the *caller's* child leaves the list as soon as it
    dies (zombies are not listed), so the caller need not reap first.
    """
    deadline = time.monotonic() + timeout_s
    next_round = 0.0
    while True:
        remaining = pids(leaf)
        if not remaining:
            return
        now = time.monotonic()
        if now >= deadline:
            who = ", ".join(f"{p} ({proc_comm(p)})" for p in sorted(remaining))
            raise NodeError(f"processes survived kill in {', '.join(leaf.dirs)}: {who}")
        if now >= next_round:
            # Dying tasks take a moment to leave the list; re-kill only if they linger.
            next_round = now + 0.1
            try:
                _kill_round(leaf)
            except FileNotFoundError:
                pass  # the directory went away with its processes; re-list
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.EAGAIN, errno.EINTR):
                    raise NodeError(f"cannot kill processes in {leaf.dirs[0]}: {exc}") from exc
        time.sleep(0.002)
