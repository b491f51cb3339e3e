"""The writer lock: one writer of a node's state at a time, across processes.

The lock is ``flock(LOCK_EX)`` on ``<state_dir>/lock``. The kernel drops it when the
holder's file descriptor closes, including when the holder crashes or is SIGKILLed, so
it never stays stuck. The descriptor is close-on-exec (Python's default), so shims and
other programs the holder starts never inherit the lock.

The file is never deleted: unlinking a locked file would let the next process lock a
fresh inode while a waiter still locks the old one, and both would think they write.
While held, the file holds one JSON object naming the holder (pid and its start time,
command line, hostname, since when in ISO 8601 UTC, purpose); the holder empties it
before unlocking. :func:`read_holder` reads it without the lock, and reports ``None``
when the file is empty or the process it names is gone.

The lock is not re-entrant: acquiring a lock file this process already holds (through
any :class:`WriterLock`, from any thread) raises :class:`FailedPrecondition` at once
rather than waiting for itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from datetime import UTC, datetime

from provisioner.errors import FailedPrecondition, LockBusy, NodeError
from provisioner.node.state.store import ensure_state_dir
from provisioner.pathnames import tidy_path
from provisioner.records import asdict, fields, record

LOCK_FILE = "lock"
_MAX_COMMAND_CHARS = 200

# (st_dev, st_ino) of every lock file this process holds or is acquiring, with why.
_held: dict[tuple[int, int], str] = {}
_held_guard = threading.Lock()


@record
class LockHolder:
    """Who holds the writer lock, as written in the lock file."""

    pid: int
    command: str
    hostname: str
    since: str  # ISO 8601 UTC, e.g. "2026-11-21T10:00:00Z"
    purpose: str = ""
    start_time: int | None = None  # field 22 of /proc/PID/stat, guards against pid reuse

    def describe(self) -> str:
        """E.g. ``pid 1234 (provisioner apply web.yaml) since 2026-11-21T10:00:00Z``."""
        text = f"pid {self.pid} ({self.command})"
        if self.hostname != os.uname().nodename:
            text += f" on {self.hostname}"
        text += f" since {self.since}"
        if self.purpose:
            text += f" for {self.purpose!r}"
        return text


_HOLDER_FIELDS = tuple(f.name for f in fields(LockHolder))


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), None if no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command (field 2) may contain spaces and ')', so split after its last ')'.
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def _command_line() -> str:
    """This process's command line, shortened: ``python3 /usr/bin/x a`` -> ``x a``."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        args = []
    if not args:
        return "?"
    if len(args) > 1 and os.path.basename(args[0]).startswith("python") and args[1][:1] != "-":
        args = args[1:]  # a script run by the interpreter: show the script
    args[0] = os.path.basename(args[0])
    command = " ".join(args)
    return command if len(command) <= _MAX_COMMAND_CHARS else command[:197] + "..."


def _is_alive(holder: LockHolder) -> bool:
    if holder.hostname != os.uname().nodename:
        return True  # a shared state dir; we cannot see that host's processes
    start_time = _start_time(holder.pid)
    if start_time is None:
        return False
    return holder.start_time is None or holder.start_time == start_time


def read_holder(state_dir: str | os.PathLike[str]) -> LockHolder | None:
    """Who holds the lock of ``state_dir``, read without taking it; ``None`` if free.

    Informational: a holder that has just taken the lock may not have written its
    name yet, and a crashed holder's leftover content is reported as ``None``.
    """
    path = tidy_path(os.path.join(state_dir, LOCK_FILE))
    for _ in range(5):  # a holder writes right after truncating: retry a torn read
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise NodeError(f"cannot read lock file {path}: {e}") from e
        if not text:
            return None
        try:
            data = json.loads(text)
            holder = LockHolder(**{k: data[k] for k in _HOLDER_FIELDS if k in data})
        except (ValueError, TypeError, AttributeError):
            time.sleep(0.01)
            continue
        return holder if _is_alive(holder) else None
    return None


class WriterLock:
    """The state directory's writer lock; also a context manager.

    ``with WriterLock(d, timeout_s=5, purpose="apply"):`` or
    ``lock.acquire(5, "apply")`` ... ``lock.release()``.
    """

    def __init__(self, state_dir: str | os.PathLike[str], *, timeout_s: float = 0.0,
                 purpose: str = "") -> None:
        self.state_dir = tidy_path(state_dir)
        self.path = tidy_path(os.path.join(self.state_dir, LOCK_FILE))
        self.timeout_s = timeout_s
        self.purpose = purpose
        self.holder: LockHolder | None = None  # our own record while we hold the lock
        self._fd: int | None = None
        self._key: tuple[int, int] | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self, timeout_s: float | None = None, purpose: str | None = None) -> WriterLock:
        """Take the lock, waiting up to ``timeout_s`` seconds; then raise LockBusy."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        purpose = self.purpose if purpose is None else purpose
        if self._fd is not None:
            raise FailedPrecondition(f"writer lock {self.path} is already held by this"
                                     " WriterLock; it is not re-entrant")
        ensure_state_dir(self.state_dir)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            st = os.fstat(fd)
        except OSError as e:
            raise NodeError(f"cannot open lock file {self.path}: {e}") from e
        key = (st.st_dev, st.st_ino)
        with _held_guard:
            if key in _held:
                os.close(fd)
                raise FailedPrecondition(
                    f"writer lock {self.path} is already held by this process"
                    f" (for {_held[key]!r}); it is not re-entrant")
            _held[key] = purpose
        try:
            self._wait(fd, timeout_s)
            self.holder = self._write_holder(fd, purpose)
        except BaseException:
            with _held_guard:
                del _held[key]
            os.close(fd)  # also drops the flock if we got it
            raise
        self._fd, self._key = fd, key
        return self

    def _wait(self, fd: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            except OSError as e:
                raise NodeError(f"cannot lock {self.path}: {e}") from e
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.1)
        holder = read_holder(self.state_dir)
        who = holder.describe() if holder else "another process (holder unknown)"
        raise LockBusy(f"state is locked by {who}; waited {timeout_s:.1f}s")

    def _write_holder(self, fd: int, purpose: str) -> LockHolder:
        pid = os.getpid()
        holder = LockHolder(
            pid=pid, command=_command_line(), hostname=os.uname().nodename,
            since=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), purpose=purpose,
            start_time=_start_time(pid))
        data = json.dumps(asdict(holder)).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError as e:
            raise NodeError(f"cannot write lock file {self.path}: {e}") from e
        return holder

    def release(self) -> None:
        """Release the lock (no-op when not held). The file is emptied, never removed."""
        fd, key = self._fd, self._key
        if fd is None or key is None:
            return
        self._fd = self._key = None
        self.holder = None
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # before unlocking, so we never wipe a successor's name
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
            with _held_guard:
                _held.pop(key, None)

    def __enter__(self) -> WriterLock:
        return self if self.held else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
