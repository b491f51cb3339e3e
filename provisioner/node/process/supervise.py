"""Launcher side of the shim: start it detached, read its status, stop it.

A :class:`ShimLaunch` starts the compiled supervisor ``provisioner-shim`` (sources in
``csrc/``) with ``posix_spawn`` - no fork of this (possibly large, multi-threaded)
Python process - in a session of its own: a *spec pipe* on fd 0, /dev/null on 1 and 2,
the write end of a *readiness pipe* on fd 3. The shim waits for its spec, so it can be
spawned *before* the caller has made the leaf and recorded the launch: its process
start overlaps that work (``NodeLayer.start_executable`` does this), and closing the
spec pipe without a spec (:meth:`ShimLaunch.abandon`, or the caller's death) makes it
exit having done nothing. Once it has its spec the shim forks once (the launcher reaps
that parent at once), so it is adopted by init and outlives whoever started it.
``launch`` sends the spec and waits
for EOF on the readiness pipe: the shim closes it once its status file says how the
first start went (``running``, or ``failed`` with the reason), and the kernel closes it
should the shim die first; a shim that cannot start at all writes ``E<reason>`` into the
pipe first. No polling: ``launch`` returns as soon as the child has exec'd. Stopping
waits on a pidfd of the shim in the same way.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import time

from provisioner.errors import FailedPrecondition, NodeError, NotFound
from provisioner.node.process import leaf as leafops
from provisioner.node.process.procs import (
    is_same_process,
    kill_pids,
    open_process,
    pidfd_signal,
    signal_group,
    wait_pidfd,
)
from provisioner.node.process.shim_binary import shim_binary
from provisioner.node.process.shimspec import (
    FAILED,
    STOPPED,
    TERMINAL_STATES,
    ShimSpec,
    ShimStatus,
    native_spec,
    read_status,
    write_status,
)
from provisioner.records import replace

__all__ = ["ShimLaunch", "crash_log_of", "is_running", "launch", "read_status",
           "request_stop", "shim_alive", "sweep_tmp_files"]

_STOP_MARGIN_S = 5.0
_EXITING_SHIM_WAIT_S = 2.0  # a shim that wrote a final state exits within milliseconds
_TMP_FILE = re.compile(r"\.shim-(\d+)\.tmp|[^/]+\.tmp\.(\d+)")  # see sweep_tmp_files
_READY_FD = 3  # where the shim finds the readiness pipe


def shim_alive(status: ShimStatus) -> bool:
    """True if the shim that wrote STATUS is still running."""
    return is_same_process(status.shim_pid, status.shim_start_time)


def is_running(status: ShimStatus) -> bool:
    """True if the child named by STATUS is alive (pass a freshly read status: after a
    restart the child is another process)."""
    if status.child_pid is None or status.child_start_time is None:
        return False
    return is_same_process(status.child_pid, status.child_start_time)


def log_tail(path: str, limit: int = 2000) -> str:
    """``"; <file name>: <last bytes>"`` of the shim's crash log, or "" if empty."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            text = f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f"; {os.path.basename(path)}: {text}" if text else ""


def crash_log_of(status_file: str) -> str:
    """Where the shim of STATUS_FILE writes what went wrong (``x.json`` -> ``x.shim.log``)."""
    return os.path.splitext(status_file)[0] + ".shim.log"


def sweep_tmp_files(runtime_dir: str) -> None:
    """Remove the tmp files of shims that are gone (killed between making one and
    renaming it): ``.shim-<pid>.tmp`` and ``<name>.json.tmp.<pid>``."""
    try:
        names = os.listdir(runtime_dir)
    except FileNotFoundError:
        return
    for name in names:
        match = _TMP_FILE.fullmatch(name)
        pid = match and (match.group(1) or match.group(2))
        if pid and not os.path.exists(f"/proc/{pid}"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(runtime_dir, name))


class ShimLaunch:
    """A shim spawned ahead of its spec (see the module docstring). Give it a spec with
    :func:`launch`, or :meth:`abandon` it; either reaps the spawned process.

    ``runtime_dir``: where the shim may make the tmp file of its first status write
    while it waits (the directory of the status file to come, so a rename moves it).
    """

    def __init__(self, runtime_dir: str | None = None) -> None:
        spec_r, self._spec_w = os.pipe()
        self._ready_r, ready_w = os.pipe()
        try:
            self.pid = os.posix_spawn(
                shim_binary(), ["provisioner-shim", *([runtime_dir] if runtime_dir else [])],
                {},
                file_actions=[(os.POSIX_SPAWN_DUP2, spec_r, 0),
                              (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                              (os.POSIX_SPAWN_DUP2, 1, 2),
                              (os.POSIX_SPAWN_DUP2, ready_w, _READY_FD)],
                setsid=True)
        except OSError as exc:
            for fd in (self._spec_w, self._ready_r):
                os.close(fd)
            raise NodeError(f"cannot start provisioner-shim: {exc}") from exc
        finally:
            os.close(spec_r)
            os.close(ready_w)  # now only the shim holds it
        self._done = False

    def _send(self, spec_bytes: bytes) -> None:
        try:
            view = memoryview(spec_bytes)
            while view:  # a large spec: the shim reads while we write
                view = view[os.write(self._spec_w, view):]
        except BrokenPipeError:
            pass  # it died: the readiness pipe tells (EOF, perhaps with a message)
        finally:
            os.close(self._spec_w)
            self._spec_w = -1

    def start(self, spec: ShimSpec, shim_log: str, deadline: float) -> str:
        """Send SPEC and wait until the shim is ready; what it wrote to the readiness
        pipe ("" if nothing: then the status file tells). NodeError if nothing happened
        before the deadline."""
        try:
            self._send(native_spec(spec, shim_log))
            return _wait_ready(spec, self._ready_r, deadline, shim_log)
        finally:
            self._finish()

    def abandon(self) -> None:
        """Close the spec pipe unsent: the shim exits having done nothing."""
        if not self._done:
            os.close(self._spec_w)
            self._spec_w = -1
            self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        os.close(self._ready_r)
        os.waitpid(self.pid, 0)  # the shim's parent: it exits right after its fork


def launch(spec: ShimSpec, timeout_s: float = 5.0,
           shim: ShimLaunch | None = None, new_leaf: bool = False) -> ShimStatus:
    """Have a detached shim supervise SPEC (SHIM if given: spawned ahead, else a new
    one); return its status once its child runs. SHIM is used up either way.

    ``new_leaf``: the caller has just made every directory of the spec's leaf, so no
    process can be in it yet, and it is not listed (an adopted leaf always is).

    Raises FailedPrecondition if a shim for this status file is still running or if the
    child could not be started (the reason comes from the shim: a missing working_dir,
    an exec failure, a vanished namespace holder), NodeError if the shim did not report.
    The returned status may already be ``exited`` or ``backoff`` for a short command.
    """
    try:
        spec.check()
        try:
            old = read_status(spec.status_file)
        except (NotFound, NodeError):
            old = None
        if old is not None and old.state in TERMINAL_STATES:
            # Its shim wrote its last status and is exiting: wait for that (briefly).
            _wait_exit(old, _EXITING_SHIM_WAIT_S)
        if old is not None and shim_alive(old):
            raise FailedPrecondition(
                f"{spec.name} is already supervised by shim {old.shim_pid}")
        # A shim kills its whole leaf when its child exits: it must not start next to
        # processes it does not know (e.g. the child of a crashed shim; request_stop that).
        leftovers = set() if new_leaf else leafops.pids(spec.leaf)
        if leftovers:
            raise FailedPrecondition(
                f"leaf of {spec.name} is not empty (pids "
                f"{', '.join(map(str, sorted(leftovers)))}); stop it first")
    except BaseException:
        if shim is not None:
            shim.abandon()
        raise
    spec = replace(spec, launch_id=os.urandom(16).hex())
    shim_log = crash_log_of(spec.status_file)
    _unlink_quietly(shim_log)  # a crash log of an earlier launch must not show for this one
    message = (shim or ShimLaunch()).start(spec, shim_log, time.monotonic() + timeout_s)
    status = _own_status(spec)
    if status is None:
        why = message or "it exited without writing its status"
        raise NodeError(f"shim for {spec.name} did not start: {why}{log_tail(shim_log)}")
    if status.state == FAILED:
        raise FailedPrecondition(f"cannot start {spec.name}: {status.last_error}")
    return status  # a shim's first status is written once its child has exec'd


def _wait_exit(status: ShimStatus, timeout_s: float) -> None:
    """Wait until the shim that wrote STATUS has exited, at most TIMEOUT_S."""
    pidfd = open_process(status.shim_pid, status.shim_start_time)
    if pidfd is not None:
        try:
            wait_pidfd(pidfd, timeout_s)
        finally:
            os.close(pidfd)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _wait_ready(spec: ShimSpec, ready_r: int, deadline: float, shim_log: str) -> str:
    """Read the readiness pipe to EOF; its content (an error from the shim) as text."""
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
                        # The shim writes a terminal state once its leaf is empty, or
                        # says that it could not empty it: then try again here (and
                        # raise NodeError naming the survivors if they still resist).
                        if final.last_error.startswith("processes survived"):
                            leafops.kill_all(status.leaf)
                        return final
                    # The shim died without finishing (killed meanwhile): finish here.
                    return _stop_directly(final)
                # The shim did not finish within the grace period (and a margin): take
                # over, and the grace is over - kill the whole leaf now.
                pidfd_signal(pidfd, signal.SIGKILL)
                wait_pidfd(pidfd, 1.0)
                return _stop_directly(read_status(status.status_file), grace_s=0.0)
        finally:
            os.close(pidfd)
    return _stop_directly(read_status(status.status_file))


def _stop_directly(status: ShimStatus, grace_s: float | None = None) -> ShimStatus:
    """Stop without a shim: SIGTERM, grace (``grace_s``, else the status's), kill_all
    (SIGKILL of the whole leaf: the last resort); write the status ourselves."""
    leaf = status.leaf
    if status.state in TERMINAL_STATES and leafops.is_empty(leaf):
        return status
    if status.child_pid is not None and status.child_start_time is not None:
        signal_group(status.child_pid, signal.SIGTERM, status.child_start_time)
    kill_pids(leafops.pids(leaf), signal.SIGTERM)
    deadline = time.monotonic() + (status.stop_grace_s if grace_s is None else grace_s)
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
