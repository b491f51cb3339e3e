"""Process identity and safe signalling.

A pid alone does not identify a process: once a process is reaped its pid can be handed
to a stranger. The node layer therefore names a process by ``(pid, start_time)``, where
``start_time`` is field 22 of ``/proc/PID/stat`` (clock ticks since boot), and checks both
before it signals anything.

Signals go through a pidfd (``pidfd_open`` then verify the start time then
``pidfd_send_signal``): the pidfd pins the process that owned the pid when it was opened,
and a start time that still matches afterwards proves that process is the one we meant,
so there is no window in which a recycled pid could receive the signal. Waiting for a
process to end polls the same pidfd (it becomes readable when the process exits, child
of ours or not), so a wait ends the moment the process does instead of on a sleep tick.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal


def _read_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (index 0 is field 3, the state), or None if gone.

    Field 2 (comm) is wrapped in parentheses and may itself contain spaces and ``)``,
    so the line is split at the *last* ``)``; everything after it is space-separated.
    """
    # Raw os.open/os.read: a Python file object costs more than the syscalls, and
    # this runs before every signal and every liveness check.
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, 4096)  # one line, well below a page (comm is 15 bytes at most)
    except OSError as exc:
        # ESRCH is what a read returns when the task died between open and read.
        if exc.errno == errno.ESRCH:
            return None
        raise
    finally:
        os.close(fd)
    close = data.rfind(b")")
    if close < 0:
        return None
    return data[close + 1 :].decode("ascii", "replace").split()


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); None if gone."""
    if pid <= 0:
        return None
    fields = _read_stat(pid)
    # Field 22 is index 19 once fields 1 (pid) and 2 (comm) are removed.
    if fields is None or len(fields) < 20:
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def proc_state(pid: int) -> str | None:
    """The one-letter state (R, S, D, Z, T, ...) of PID, or None if it does not exist."""
    if pid <= 0:
        return None
    fields = _read_stat(pid)
    return fields[0] if fields else None


def proc_comm(pid: int) -> str:
    """The command name of PID (for messages); ``?`` if it is gone."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def process_alive(pid: int) -> bool:
    """True if PID exists and is not a zombie (a zombie has already exited)."""
    state = proc_state(pid)
    return state is not None and state not in ("Z", "X")


#: The kernel's PID_MAX_LIMIT (2^22): no pid or process group is larger.
MAX_PID = 1 << 22


def is_same_process(pid: int, start_time: int) -> bool:
    """True if PID is alive (not a zombie) and is the process that started at start_time."""
    fields = _read_stat(pid) if 0 < pid <= MAX_PID else None
    if fields is None or len(fields) < 20 or fields[0] in ("Z", "X"):
        return False
    try:
        return int(fields[19]) == start_time
    except ValueError:
        return False


def open_process(pid: int, start_time: int) -> int | None:
    """A pidfd for (pid, start_time) if that process is alive; None otherwise.

    The caller owns the fd (close it). While it is open it keeps naming that process,
    even after the pid is recycled, so signals through it can never hit a stranger.
    """
    if not 0 < pid <= MAX_PID:  # (a damaged status file: never an OverflowError)
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    # Checked after opening: a zombie, or a recycled pid, must not be reported alive.
    if not is_same_process(pid, start_time):
        os.close(pidfd)
        return None
    return pidfd


def pidfd_signal(pidfd: int, sig: int) -> bool:
    """Send SIG through PIDFD; False if the process has already exited."""
    try:
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except ProcessLookupError:
        return False


def wait_pidfd(pidfd: int, timeout_s: float | None) -> bool:
    """Block until the process of PIDFD has exited; True if it did within timeout_s."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    timeout_ms = None if timeout_s is None else max(0, int(timeout_s * 1000 + 0.999))
    return bool(poller.poll(timeout_ms))


def signal_process(pid: int, start_time: int, sig: int) -> bool:
    """Send SIG to (pid, start_time) if it is still that process and alive; True if sent."""
    pidfd = open_process(pid, start_time)
    if pidfd is None:
        return False
    try:
        return pidfd_signal(pidfd, sig)
    finally:
        os.close(pidfd)


def signal_group(pgid: int, sig: int, leader_start_time: int | None = None) -> bool:
    """Send SIG to process group PGID; True if at least one member received it.

    A group id is its leader's pid, and the kernel does not hand that number to a new
    process while any member of the group is alive. The one danger is an *empty* group
    whose number was recycled by a stranger who then became a group leader: when
    ``leader_start_time`` is given and a process now holds the pid with another start
    time, nothing is sent. (A caller that is the leader's parent and has not reaped it
    yet needs no start time: the pid cannot be recycled before the reap.)
    """
    if pgid <= 1:
        raise ValueError(f"refusing to signal process group {pgid}")
    if pgid > MAX_PID:
        return False  # no such group can exist (a damaged status file)
    if leader_start_time is not None:
        now = proc_start_time(pgid)
        if now is not None and now != leader_start_time:
            return False
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def kill_pids(pids: set[int] | list[int], sig: int = signal.SIGKILL) -> None:
    """Send SIG to each pid, ignoring those already gone.

    Meant for pids just read from a cgroup's ``cgroup.procs`` (frozen, or about to be
    re-read), where membership rather than start time is the identity check.
    """
    for pid in pids:
        if pid <= 1:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_gone(pid: int, start_time: int, timeout_s: float) -> bool:
    """Wait until (pid, start_time) is no longer alive; True if it went within timeout_s.

    Event-driven (pidfd): returns as soon as the process exits. A zombie counts as gone.
    """
    pidfd = open_process(pid, start_time)
    if pidfd is None:
        return True
    try:
        return wait_pidfd(pidfd, timeout_s) or not is_same_process(pid, start_time)
    finally:
        os.close(pidfd)
