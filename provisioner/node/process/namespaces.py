"""Namespaces of isolated cells: one holder process per cell keeps them alive.

An isolated cell (``isolate_process`` and/or ``isolate_network``) gets a holder, started
by :func:`start_holder` inside the cell's ``_holder`` leaf cgroup *before* it unshares
(see :mod:`provisioner.node.process.holder`), so nothing in the cell's namespaces is ever outside
its cgroup. Executables join the holder's namespaces with the argv prefix of
:func:`nsenter_prefix`.

* ``isolate_process``: new pid, mount, ipc and uts namespaces; mounts made private
  (``--propagation=private``, i.e. ``mount --make-rprivate /``); a fresh ``/proc``; the
  holder is pid 1 and reaps orphans. The hostname, and the NIS domainname (as upstream
  Aurae), is the *last part* of the cell path (cell ``web/cache`` -> ``cache``, as
  upstream's ``CellName::leaf``): always a valid hostname (a full path can exceed the
  64 bytes a hostname may have), and for the usual top-level cell simply its name.
  Each executable also gets a cgroup namespace rooted at its own leaf (unshared by its
  shim's child once it is there: upstream always unshares one), so it sees itself at
  ``/`` in ``/proc/self/cgroup``; the holder has one rooted at its ``_holder`` leaf.
* ``isolate_network``: a new network namespace with only ``lo``, up.

The holder is named by pid plus start time (field 22 of /proc/PID/stat), so a recycled
pid is never mistaken for it. Its files are under ``<state_dir>/run/_cells/<cell>/``:
``holder.json`` (written once it is ready) and ``holder.log`` (its stderr).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time

import provisioner
from provisioner.errors import FailedPrecondition, InvalidArgument, NodeError
from provisioner.names import check_cell_path
from provisioner.node.cgroups.base import read_procs
from provisioner.node.process.procs import (
    is_same_process,
    kill_pids,
    proc_start_time,
    signal_process,
)
from provisioner.node.process.procs import wait_gone as _wait_gone
from provisioner.node.types import LeafCgroup, NamespaceTarget
from provisioner.pathnames import find_program

#: Namespaces of ``isolate_process``, as nsenter's option names.
PROCESS_NAMESPACES = ("pid", "mount", "ipc", "uts")
#: nsenter's option name -> the file in /proc/PID/ns.
NS_FILES = {"pid": "pid", "mount": "mnt", "ipc": "ipc", "uts": "uts", "net": "net"}
DEFAULT_START_TIMEOUT_S = 10.0
DEFAULT_STOP_TIMEOUT_S = 5.0


def cell_hostname(cell: str) -> str:
    """The hostname inside an isolated cell: the last part of its path."""
    return check_cell_path(cell).rsplit("/", 1)[-1]


def holder_dir(state_dir: str, cell: str) -> str:
    """``<state_dir>/run/_cells/<cell>``; '_' keeps it apart from executables' run dirs."""
    return os.path.join(state_dir, "run", "_cells", *check_cell_path(cell).split("/"))


def start_holder(cell: str, leaf: LeafCgroup, isolate_process: bool, isolate_network: bool,
                 state_dir: str,
                 timeout_s: float = DEFAULT_START_TIMEOUT_S) -> NamespaceTarget:
    """Start the cell's holder in ``leaf`` and return once its namespaces are ready.

    The leaf must be empty (FailedPrecondition otherwise: stop the old holder first).
    On failure everything started is killed and the holder's own message is reported.
    """
    cell = check_cell_path(cell)
    if not (isolate_process or isolate_network):
        raise InvalidArgument(f"cell {cell!r} is not isolated: it needs no namespace holder")
    busy = _leaf_pids(leaf)
    if busy:
        raise FailedPrecondition(
            f"holder leaf of cell {cell!r} already holds processes "
            f"{', '.join(map(str, sorted(busy)))}: stop the old holder first")
    run_dir = holder_dir(state_dir, cell)
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    ready = os.path.join(run_dir, "holder.json")
    log = os.path.join(run_dir, "holder.log")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(ready)
    namespaces = (PROCESS_NAMESPACES if isolate_process else ()) + (
        ("net",) if isolate_network else ())

    argv = [sys.executable, "-m", "provisioner.node.process.holder", cell_hostname(cell),
            "--launch", "--ready-file", ready,
            *(f"--cgroup-procs={os.path.join(d, 'cgroup.procs')}" for d in leaf.dirs)]
    if isolate_process:
        argv.append("--isolate-process")
    if isolate_network:
        argv.append("--net")
    # The package may not be installed (e.g. run from a checkout): point at this one.
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(provisioner.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH"))
                                        if p)
    import subprocess  # (~1.5 ms: only cells with namespaces start a holder)

    with open(log, "ab") as log_fh:
        log_fh.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting holder\n".encode())
        log_fh.flush()
        try:
            launched = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log_fh,
                                      stderr=log_fh, cwd="/", env=env, check=False,
                                      timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _give_up(leaf)
            raise NodeError(f"namespace holder launcher of cell {cell!r} hung; "
                            f"{_tail(log)}") from None
    if launched.returncode != 0:
        _give_up(leaf)
        raise NodeError(f"namespace holder of cell {cell!r} failed to start: {_tail(log)}")

    deadline = time.monotonic() + timeout_s
    while not os.path.exists(ready):
        if not _leaf_pids(leaf):
            raise NodeError(f"namespace holder of cell {cell!r} exited during setup: "
                            f"{_tail(log)}")
        if time.monotonic() > deadline:
            _give_up(leaf)
            raise NodeError(f"namespace holder of cell {cell!r} was not ready within "
                            f"{timeout_s:g} s: {_tail(log)}")
        time.sleep(0.005)
    return _verify(cell, leaf, ready, namespaces)


def _verify(cell: str, leaf: LeafCgroup, ready: str,
            namespaces: tuple[str, ...]) -> NamespaceTarget:
    """Check the ready file names a live process in the leaf, in namespaces of its own."""
    try:
        with open(ready, encoding="ascii") as fh:
            pid = int(json.load(fh)["pid"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _give_up(leaf)
        raise NodeError(f"namespace holder of cell {cell!r} wrote a bad {ready}: {exc}") from exc
    start = proc_start_time(pid)
    if start is None or pid not in _leaf_pids(leaf):
        _give_up(leaf)
        raise NodeError(f"namespace holder {pid} of cell {cell!r} is not running in its "
                        f"leaf {leaf.dirs[0]}")
    for name in namespaces:
        ns = NS_FILES[name]
        if os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/self/ns/{ns}"):
            _give_up(leaf)
            raise NodeError(f"namespace holder {pid} of cell {cell!r} shares our {name} "
                            "namespace")
    return NamespaceTarget(holder_pid=pid, holder_start_time=start, namespaces=namespaces)


def holder_alive(target: NamespaceTarget) -> bool:
    """True if the holder (same pid *and* start time) is still running."""
    return is_same_process(target.holder_pid, target.holder_start_time)


def stop_holder(target: NamespaceTarget, leaf: LeafCgroup | None = None,
                timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> bool:
    """SIGTERM the holder, SIGKILL it after ``timeout_s``; False if it was already gone.

    When the holder (pid 1 of its pid namespace) exits, the kernel kills every process
    still in that namespace. With ``leaf`` (the cell's ``_holder`` leaf), also wait until
    the leaf is empty - the ``unshare`` parent leaves just after the holder - killing
    whatever is left there, so that the leaf can be removed at once.
    """
    pid, start = target.holder_pid, target.holder_start_time
    stopped = signal_process(pid, start, signal.SIGTERM)
    if stopped and not _wait_gone(pid, start, timeout_s):
        signal_process(pid, start, signal.SIGKILL)
        if not _wait_gone(pid, start, timeout_s):
            raise NodeError(f"namespace holder {pid} survived SIGKILL for {timeout_s:g} s")
    if leaf is not None:
        deadline = time.monotonic() + timeout_s
        while (left := _leaf_pids(leaf)) and time.monotonic() < deadline:
            time.sleep(0.005)
        if left:
            _give_up(leaf)
    return stopped


def nsenter_prefix(target: NamespaceTarget, working_dir: str | None = None) -> list[str]:
    """argv prefix that runs a command in the holder's namespaces, e.g.
    ``[*nsenter_prefix(t), "--", "/bin/sh", "-c", "hostname"]``.

    nsenter forks when it enters a pid namespace, so the command really is in it (its
    children too). ``working_dir`` is resolved inside the cell's mount namespace.
    """
    nsenter = find_program("nsenter", os.environ.get("PATH", os.defpath))
    argv = [nsenter or "/usr/bin/nsenter", f"--target={target.holder_pid}",
            *(f"--{name}" for name in target.namespaces)]
    if working_dir is not None:
        argv.append(f"--wdns={working_dir}")
    return argv


def _leaf_pids(leaf: LeafCgroup) -> set[int]:
    out: set[int] = set()
    for d in leaf.dirs:
        out |= read_procs(os.path.join(d, "cgroup.procs"))
    return out


def _give_up(leaf: LeafCgroup) -> None:
    """Kill whatever a failed start left in the holder leaf (only ours is in there)."""
    deadline = time.monotonic() + 2.0
    while (left := _leaf_pids(leaf)) and time.monotonic() < deadline:
        kill_pids(left)
        time.sleep(0.01)


def _tail(log: str, limit: int = 1500) -> str:
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            text = fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return f"(no log at {log})"
    lines = [ln for ln in text.splitlines() if not ln.startswith("--- ")]
    return " | ".join(lines[-5:]) or f"(nothing in {log})"
