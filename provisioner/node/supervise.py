"""Launcher side of the shim: start it detached, read its status, stop it.

``launch`` writes ``spec.json`` next to the status file and runs
``python -m provisioner.node.shim --detach spec.json`` in a new session with stdin and
stdout on /dev/null and stderr on ``shim.log`` (so a crashing shim leaves a traceback
somewhere). The shim forks once more and its parent exits, so init (or the nearest
subreaper) adopts the shim: it outlives the caller and never lingers as the caller's
zombie. ``launch`` then polls the status file for the state the new shim reports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import provisioner
from provisioner.errors import FailedPrecondition, NodeError, NotFound
from provisioner.node import leaf as leafops
from provisioner.node.procs import (
    is_same_process,
    kill_pids,
    signal_group,
    signal_process,
    wait_gone,
)
from provisioner.node.shimspec import (
    FAILED,
    STARTING,
    STOPPED,
    TERMINAL_STATES,
    ShimSpec,
    ShimStatus,
    read_status,
    write_json_atomic,
    write_status,
)

__all__ = ["is_running", "launch", "read_status", "request_stop", "shim_alive"]

_POLL_S = 0.005
_STOP_MARGIN_S = 5.0
_SRC_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(provisioner.__file__)))


def shim_alive(status: ShimStatus) -> bool:
    """True if the shim that wrote STATUS is still running."""
    return is_same_process(status.shim_pid, status.shim_start_time)


def is_running(status: ShimStatus) -> bool:
    """True if the child named by STATUS is alive (pass a freshly read status: after a
    restart the child is another process)."""
    if status.child_pid is None or status.child_start_time is None:
        return False
    return is_same_process(status.child_pid, status.child_start_time)


def _shim_log_tail(run_dir: str) -> str:
    try:
        with open(os.path.join(run_dir, "shim.log"), "rb") as f:
            text = f.read()[-2000:].decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f"; shim.log: {text}" if text else ""


def launch(spec: ShimSpec, timeout_s: float = 5.0) -> ShimStatus:
    """Start a detached shim for SPEC; return its status once its child runs.

    Raises FailedPrecondition if a shim for this status file is still running or if the
    child could not be started (the reason comes from the shim: a missing working_dir,
    an exec failure, a vanished namespace holder), NodeError if the shim did not report.
    The returned status may already be ``exited`` or ``backoff`` for a short command.
    """
    spec.check()
    run_dir = os.path.dirname(spec.status_file)
    os.makedirs(run_dir, exist_ok=True)
    os.makedirs(spec.log_dir, exist_ok=True)
    try:
        old = read_status(spec.status_file)
    except (NotFound, NodeError):
        old = None
    if old is not None and shim_alive(old):
        raise FailedPrecondition(f"{spec.name} is already supervised by shim {old.shim_pid}")
    # A shim kills its whole leaf when its child exits: it must not start next to
    # processes it does not know (e.g. the child of a crashed shim; request_stop that).
    leftovers = leafops.pids(spec.leaf)
    if leftovers:
        raise FailedPrecondition(f"leaf of {spec.name} is not empty (pids "
                                 f"{', '.join(map(str, sorted(leftovers)))}); stop it first")
    spec = replace(spec, launch_id=uuid.uuid4().hex)
    spec_file = os.path.join(run_dir, "spec.json")
    write_json_atomic(spec_file, spec.to_json())
    # -S: the shim needs only the stdlib and this package (PYTHONPATH), and skipping
    # site-packages (.pth files, editable-install finders) saves ~15 ms of start-up.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": _SRC_ROOT}
    with open(os.path.join(run_dir, "shim.log"), "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-m", "provisioner.node.shim", "--detach", spec_file],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            close_fds=True, start_new_session=True, cwd="/", env=env)
    deadline = time.monotonic() + timeout_s
    try:
        rc = proc.wait(timeout=timeout_s)  # the --detach parent exits right after forking
    except subprocess.TimeoutExpired:
        rc = None
    if rc:
        raise NodeError(f"shim for {spec.name} exited with {rc}{_shim_log_tail(run_dir)}")
    while True:
        try:
            status: ShimStatus | None = read_status(spec.status_file)
        except NotFound:
            status = None
        if status is not None and status.launch_id == spec.launch_id:
            if status.state == FAILED:
                raise FailedPrecondition(f"cannot start {spec.name}: {status.last_error}")
            if status.state != STARTING:
                return status
            if not shim_alive(status):
                raise NodeError(f"shim for {spec.name} died while starting"
                                f"{_shim_log_tail(run_dir)}")
        if time.monotonic() >= deadline:
            raise NodeError(f"shim for {spec.name} did not report within {timeout_s}s"
                            f"{_shim_log_tail(run_dir)}")
        time.sleep(_POLL_S)


def request_stop(status: ShimStatus, wait: bool = True,
                 timeout_s: float | None = None) -> ShimStatus:
    """Stop the executable STATUS describes; with ``wait``, return its final status.

    If its shim is alive, the shim is asked (SIGTERM) and does the stop itself. If the
    shim is gone (crashed, killed), the stop is done here: SIGTERM to the child's group
    and the leaf, the grace period, then kill_all(leaf), and the status is written.
    """
    timeout = status.stop_grace_s + _STOP_MARGIN_S if timeout_s is None else timeout_s
    if signal_process(status.shim_pid, status.shim_start_time, signal.SIGTERM):
        if not wait:
            return status
        if wait_gone(status.shim_pid, status.shim_start_time, timeout):
            final = read_status(status.status_file)
            if final.state in TERMINAL_STATES:
                if not leafops.is_empty(status.leaf):  # belt and braces: nothing survives
                    leafops.kill_all(status.leaf)
                return final
            # The shim died without finishing (killed meanwhile): finish the stop here.
            return _stop_directly(final)
        # The shim did not finish in time: take over.
        signal_process(status.shim_pid, status.shim_start_time, signal.SIGKILL)
        wait_gone(status.shim_pid, status.shim_start_time, 1.0)
    return _stop_directly(read_status(status.status_file))


def _stop_directly(status: ShimStatus) -> ShimStatus:
    """Stop without a shim: SIGTERM, grace, kill_all; write the status ourselves."""
    leaf = status.leaf
    if status.state in TERMINAL_STATES and leafops.is_empty(leaf):
        return status
    if status.child_pid is not None and status.child_start_time is not None:
        signal_group(status.child_pid, signal.SIGTERM, status.child_start_time)
    kill_pids(leafops.pids(leaf), signal.SIGTERM)
    deadline = time.monotonic() + status.stop_grace_s
    while not leafops.is_empty(leaf) and time.monotonic() < deadline:
        time.sleep(0.02)
    leafops.kill_all(leaf)
    final = status.with_(
        state=STOPPED, updated_at_ns=time.time_ns(), next_start_at_ns=None,
        exited_at_ns=status.exited_at_ns if status.state in TERMINAL_STATES else time.time_ns(),
        last_error=status.last_error or "shim was gone; stopped by the launcher")
    write_status(final)
    return final
