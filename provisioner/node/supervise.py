"""Launcher side of the shim: start it detached, read its status, stop it.

``launch`` has a shim started for a spec, detached: its own session, adopted by init,
stdin/stdout on /dev/null, and a crash's traceback in ``shim.log`` next to the status
file. Two ways:

* with a :class:`~provisioner.node.zygote_client.ZygoteClient` (what the node layer
  uses), by the zygote: a fork of a process that has the shim's code loaded (~1 ms),
  with the spec sent along in the request;
* without one, as ``python -S -m provisioner.node.shim --detach --ready-fd N spec.json``
  (an interpreter start, ~50 ms; kept for callers without a node layer).

Either way the launcher passes the write end of a *readiness pipe* and waits for EOF on
its read end: the shim closes it once its status file says how the first start went
(``running``, or ``failed`` with the reason), and the kernel closes it should the shim
die first. No polling: ``launch`` returns as soon as the child has exec'd. Stopping
waits on a pidfd of the shim in the same way.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace

from provisioner.errors import FailedPrecondition, NodeError, NotFound
from provisioner.node import leaf as leafops
from provisioner.node.procs import (
    is_same_process,
    kill_pids,
    open_process,
    pidfd_signal,
    signal_group,
    wait_pidfd,
)
from provisioner.node.shimspec import (
    FAILED,
    STOPPED,
    TERMINAL_STATES,
    ShimSpec,
    ShimStatus,
    read_status,
    spec_bytes,
    write_bytes_atomic,
    write_status,
)
from provisioner.node.zygote_client import ZygoteClient, helper_env, log_tail

__all__ = ["is_running", "launch", "read_status", "request_stop", "shim_alive"]

_STOP_MARGIN_S = 5.0


def shim_alive(status: ShimStatus) -> bool:
    """True if the shim that wrote STATUS is still running."""
    return is_same_process(status.shim_pid, status.shim_start_time)


def is_running(status: ShimStatus) -> bool:
    """True if the child named by STATUS is alive (pass a freshly read status: after a
    restart the child is another process)."""
    if status.child_pid is None or status.child_start_time is None:
        return False
    return is_same_process(status.child_pid, status.child_start_time)


def launch(spec: ShimSpec, timeout_s: float = 5.0,
           zygote: ZygoteClient | None = None) -> ShimStatus:
    """Start a detached shim for SPEC (through ZYGOTE if given); return its status once
    its child runs.

    Raises FailedPrecondition if a shim for this status file is still running or if the
    child could not be started (the reason comes from the shim: a missing working_dir,
    an exec failure, a vanished namespace holder), NodeError if the shim did not report.
    The returned status may already be ``exited`` or ``backoff`` for a short command.
    """
    spec.check()
    run_dir = os.path.dirname(spec.status_file)  # made by the shim (or ahead by a spare)
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
    shim_log = os.path.join(run_dir, "shim.log")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(shim_log)  # a crash log of an earlier launch must not be shown for this one
    deadline = time.monotonic() + timeout_s
    message = _start_shim(spec, run_dir, zygote, deadline)
    status = _own_status(spec)
    if status is None and not message and zygote is not None and not zygote.alive():
        # The zygote died with our request unread: nothing of it ran (the pipe is closed
        # everywhere, and no status carries our launch id). A fresh zygote takes it.
        message = _start_shim(spec, run_dir, zygote, deadline)
        status = _own_status(spec)
    if status is None:
        why = message or "it exited without writing its status"
        raise NodeError(f"shim for {spec.name} did not start: {why}{log_tail(shim_log)}")
    if status.state == FAILED:
        raise FailedPrecondition(f"cannot start {spec.name}: {status.last_error}")
    return status  # a shim's first status is written once its child has exec'd


def _start_shim(spec: ShimSpec, run_dir: str, zygote: ZygoteClient | None,
                deadline: float) -> str:
    """Have a shim started and wait until it is ready; what failed on the way, if anything.

    Returns the message a helper wrote to the readiness pipe ("" if none: then the
    status file tells). NodeError if nothing happened before the deadline.
    """
    shim_log = os.path.join(run_dir, "shim.log")
    spec_file = os.path.join(run_dir, "spec.json")
    ready_r, ready_w = os.pipe()
    try:
        try:
            if zygote is not None:  # the spec travels with the request: no file to write
                zygote.spawn(spec_bytes(spec), shim_log, ready_w, spec_file)
            else:
                os.makedirs(run_dir, exist_ok=True)
                write_bytes_atomic(spec_file, spec_bytes(spec))
                _run_detached(spec, spec_file, shim_log, ready_w, deadline)
        finally:
            os.close(ready_w)  # now only the shim (or a helper on its way) holds it
        return _wait_ready(spec, ready_r, deadline, shim_log)
    finally:
        os.close(ready_r)


def _run_detached(spec: ShimSpec, spec_file: str, shim_log: str, ready_w: int,
                  deadline: float) -> None:
    # -S: the shim needs only the stdlib and this package (PYTHONPATH), and skipping
    # site-packages (.pth files, editable-install finders) saves ~15 ms of start-up.
    with open(shim_log, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-m", "provisioner.node.shim", "--detach",
             "--ready-fd", str(ready_w), spec_file],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            close_fds=True, pass_fds=(ready_w,), start_new_session=True, cwd="/",
            env=helper_env())
    try:
        rc = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        rc = None  # still starting: the readiness pipe tells the rest
    if rc:
        raise NodeError(f"shim for {spec.name} exited with {rc}{log_tail(shim_log)}")


def _wait_ready(spec: ShimSpec, ready_r: int, deadline: float, shim_log: str) -> str:
    """Read the readiness pipe to EOF; its content (an error from a helper) as text."""
    poller = select.poll()
    poller.register(ready_r, select.POLLIN)
    data = b""
    while True:
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0 or not poller.poll(left_ms):
            raise NodeError(f"shim for {spec.name} did not report within the launch "
                            f"timeout{log_tail(shim_log)}")
        chunk = os.read(ready_r, 4096)
        if not chunk:
            return data.decode("utf-8", "replace").removeprefix("E")
        data += chunk


def _own_status(spec: ShimSpec) -> ShimStatus | None:
    """The status the shim of this launch wrote, or None (none, or an older one)."""
    try:
        status = read_status(spec.status_file)
    except (NotFound, NodeError):
        return None
    return status if status.launch_id == spec.launch_id else None


def request_stop(status: ShimStatus, wait: bool = True,
                 timeout_s: float | None = None) -> ShimStatus:
    """Stop the executable STATUS describes; with ``wait``, return its final status.

    If its shim is alive, the shim is asked (SIGTERM) and does the stop itself; the
    wait for it is a pidfd poll, so it ends the moment the shim exits. If the shim is
    gone (crashed, killed), the stop is done here: SIGTERM to the child's group and the
    leaf, the grace period, then kill_all(leaf), and the status is written.
    """
    timeout = status.stop_grace_s + _STOP_MARGIN_S if timeout_s is None else timeout_s
    pidfd = open_process(status.shim_pid, status.shim_start_time)
    if pidfd is not None:
        try:
            if pidfd_signal(pidfd, signal.SIGTERM):
                if not wait:
                    return status
                if wait_pidfd(pidfd, timeout):
                    final = read_status(status.status_file)
                    if final.state in TERMINAL_STATES:
                        if not leafops.is_empty(status.leaf):  # belt and braces
                            leafops.kill_all(status.leaf)
                        return final
                    # The shim died without finishing (killed meanwhile): finish here.
                    return _stop_directly(final)
                # The shim did not finish in time: take over.
                pidfd_signal(pidfd, signal.SIGKILL)
                wait_pidfd(pidfd, 1.0)
        finally:
            os.close(pidfd)
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
    pause = 0.0005  # the polite usually go within a millisecond: start short, back off
    while not leafops.is_empty(leaf) and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    leafops.kill_all(leaf)
    final = status.with_(
        state=STOPPED, updated_at_ns=time.time_ns(), next_start_at_ns=None,
        exited_at_ns=status.exited_at_ns if status.state in TERMINAL_STATES else time.time_ns(),
        last_error=status.last_error or "shim was gone; stopped by the launcher")
    write_status(final)
    return final
