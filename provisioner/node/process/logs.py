"""Per-executable log files: timestamped stdout/stderr lines, bounded and rotated.

The shim (``csrc/logs.c``) writes them; this module reads them. The format:

One directory per executable (``logs/<executable>/``) holds numbered files
``output-00000001.log``, ``output-00000002.log``, ... The highest number is being written;
rotation starts the next number and deletes the oldest beyond ``keep``. Nothing is ever
renamed, so a reader can never confuse two files (a rename scheme like ``.1 -> .2`` races
with a reader listing the directory). A record is one text line::

    <ts_ns> <tag> <text>\\n

where ``tag`` is ``O`` (stdout) or ``E`` (stderr), followed by ``+`` when the record is a
piece of an overlong line that continues in the next record of the same channel. Text
is stored as UTF-8 with invalid bytes replaced; it never contains ``\\n``.

Bounds: a line is held in memory up to ``max_line_bytes`` and then split (with the ``+``
marker), a file is rotated before it would exceed ``max_bytes``, and ``keep`` rotated
files are kept, so a directory never holds more than ``(keep + 1) * max_bytes``.

``LogReader.follow`` behaves like ``tail -F``: at end of file it checks whether a newer
file exists and, after draining its own to the end, continues with the next one, so no
line is lost across a rotation. ``LogRing`` (in-memory) tells a slow reader how many
lines it missed instead of silently skipping them.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterator

from provisioner.errors import InvalidArgument
from provisioner.limits import MAX_LOG_FILE_BYTES, MAX_LOG_FILES_KEPT, MAX_LOG_LINE_BYTES
from provisioner.logline import STDERR, STDOUT, LogLine
from provisioner.records import record

__all__ = ["STDERR", "STDOUT", "LogLimits", "LogLine", "LogReader", "LogRing", "parse_record"]

_TAGS = {STDOUT: "O", STDERR: "E"}
_CHANNELS = {"O": STDOUT, "E": STDERR}
_PREFIX, _SUFFIX = "output-", ".log"


@record
class LogLimits:
    """How large a log file grows before rotating, how many are kept, and the longest line."""
    max_bytes: int = 8 * 1024 * 1024  # per file
    keep: int = 3  # rotated files kept besides the current one
    max_line_bytes: int = 16 * 1024  # longer lines are split into marked pieces

    def check(self) -> None:
        """InvalidArgument if a limit is out of its range."""
        if not (0 <= self.keep <= MAX_LOG_FILES_KEPT and 16 <= self.max_line_bytes
                <= MAX_LOG_LINE_BYTES and self.max_bytes <= MAX_LOG_FILE_BYTES):
            raise InvalidArgument(f"bad log limits {self} (at most {MAX_LOG_FILES_KEPT} "
                                  f"files kept, {MAX_LOG_LINE_BYTES} bytes per line, "
                                  f"{MAX_LOG_FILE_BYTES} per file)")
        # A record must always fit into an empty file.
        # (Replacing invalid UTF-8 can triple a line's bytes.)
        if self.max_bytes < 4 * self.max_line_bytes + 64:
            raise InvalidArgument(f"log max_bytes must be >= 4 * max_line_bytes + 64: {self}")


def parse_record(raw: bytes) -> LogLine | None:
    """One record (without its newline) back into a LogLine; None if it is malformed."""
    parts = raw.split(b" ", 2)
    if len(parts) < 2:
        return None
    ts, tag = parts[0], parts[1]
    channel = _CHANNELS.get(tag[:1].decode("ascii", "replace"))
    if channel is None or not ts.isdigit():
        return None
    text = parts[2].decode("utf-8", "replace") if len(parts) == 3 else ""
    return LogLine(int(ts), channel, text, tag[1:] == b"+")


def _path(directory: str, seq: int) -> str:
    return os.path.join(directory, f"{_PREFIX}{seq:08d}{_SUFFIX}")


def _numbered(directory: str) -> list[tuple[str, int]]:
    """The log files of DIRECTORY as (path, number), oldest first."""
    out: list[tuple[str, int]] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return out
    for name in names:
        middle = name[len(_PREFIX):-len(_SUFFIX)]
        if name.startswith(_PREFIX) and name.endswith(_SUFFIX) and middle.isdigit():
            out.append((os.path.join(directory, name), int(middle)))
    return sorted(out, key=lambda pn: pn[1])


class LogReader:
    """Reads the records of one executable's log directory, oldest first."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        #: The directory's (st_dev, st_ino) once ``follow`` has read a file of it.
        self.followed: tuple[int, int] | None = None

    def same_directory(self) -> bool:
        """False once the directory ``follow`` reads from has been moved away or
        replaced (the executable was deleted, and maybe made again under its name)."""
        return self.followed is None or _identity(self.directory) == self.followed

    def files(self) -> list[str]:
        """Existing log files, oldest first."""
        return [path for path, _ in _numbered(self.directory)]

    def read(self, since_ns: int | None = None, until_ns: int | None = None,
             tail: int | None = None, channel: str | None = None) -> list[LogLine]:
        """Lines with since_ns <= ts < until_ns of the channel (None: both), oldest first;
        with ``tail`` only the last ``tail`` of those."""
        out: deque[LogLine] = deque(maxlen=tail)
        for path in self.files():
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue  # rotated away between listing and opening
            # An unterminated last record is being written right now: not a line yet.
            for raw in data.split(b"\n")[:-1]:
                line = parse_record(raw)
                if line is not None and _matches(line, since_ns, until_ns, channel):
                    out.append(line)
        return list(out)

    def follow(self, since_ns: int | None = None, channel: str | None = None,
               tail: int | None = None, stop: threading.Event | None = None,
               poll_s: float = 0.1) -> Iterator[LogLine]:
        """Yield the existing lines (the last ``tail`` of them if given), then new lines
        as they are written, across rotations, until ``stop`` is set (or forever).

        "Existing" is a byte-exact snapshot of the files' sizes (files are append-only)
        taken at this call, so lines written meanwhile are never folded into the tail.
        A follower slower than ``keep`` whole files loses the deleted ones. Following
        ends (the iterator returns) when the directory is moved away or replaced: the
        lines of a later executable of that name are not its own (see
        :meth:`same_directory`)."""
        snapshot: dict[int, int] = {}  # file number -> size now
        if tail is not None:
            for path, seq in _numbered(self.directory):
                try:
                    snapshot[seq] = os.stat(path).st_size
                except FileNotFoundError:
                    continue
        return self._follow(snapshot, since_ns, channel, tail, stop, poll_s)

    def _follow(self, snapshot: dict[int, int], since_ns: int | None, channel: str | None,
                tail: int | None, stop: threading.Event | None,
                poll_s: float) -> Iterator[LogLine]:
        backlog: deque[LogLine] | None = deque(maxlen=tail) if tail is not None else None
        fd, seq, pos = -1, 0, 0  # pos: file offset just past the last complete record
        buf = b""
        rotated = False  # a newer file exists; switch at our next EOF
        try:
            while True:
                if fd < 0:
                    identity = _identity(self.directory)
                    newer = [(p, n) for p, n in _numbered(self.directory) if n > seq]
                    if newer and self.followed not in (None, identity):
                        return  # replaced: these are another executable's files
                    if newer:
                        try:
                            fd = os.open(newer[0][0], os.O_RDONLY | os.O_CLOEXEC)
                        except FileNotFoundError:
                            continue  # deleted by rotation meanwhile: take the next
                        seq, buf, pos, rotated = newer[0][1], b"", 0, False
                        self.followed = identity
                chunk = os.read(fd, 1 << 16) if fd >= 0 else b""
                if chunk:
                    buf += chunk
                    *records, buf = buf.split(b"\n")
                    for raw in records:
                        pos += len(raw) + 1
                        line = parse_record(raw)
                        if line is None or not _matches(line, since_ns, None, channel):
                            continue
                        if backlog is not None:
                            if pos <= snapshot.get(seq, -1):
                                backlog.append(line)
                                continue
                            yield from backlog  # the first line newer than the snapshot
                            backlog = None
                        yield line
                    continue
                if fd >= 0 and rotated:
                    # EOF seen *after* a newer file appeared: the writer finished ours
                    # before creating it, so nothing more can arrive here.
                    # (A half record left by a crashed writer is dropped.)
                    os.close(fd)
                    fd = -1
                    continue
                if fd >= 0 and any(n > seq for _, n in _numbered(self.directory)):
                    rotated = True  # read ours once more to EOF before switching
                    continue
                if backlog is not None:
                    yield from backlog  # caught up with the end: the tail is complete
                    backlog = None
                if (stop is not None and stop.is_set()) or not self.same_directory():
                    return
                if stop is not None:
                    stop.wait(poll_s)
                else:
                    time.sleep(poll_s)
        finally:
            if fd >= 0:
                os.close(fd)


def _identity(directory: str) -> tuple[int, int] | None:
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _matches(line: LogLine, since_ns: int | None, until_ns: int | None,
             channel: str | None) -> bool:
    if since_ns is not None and line.ts_ns < since_ns:
        return False
    if until_ns is not None and line.ts_ns >= until_ns:
        return False
    return channel is None or line.channel == channel


class LogRing:
    """A bounded in-memory ring of lines with sequence numbers, safe across threads.

    Lines are numbered 0, 1, 2... A reader keeps a cursor (the next seq it wants):
    ``lines, missed = ring.since(cursor)`` then ``cursor += missed + len(lines)``.
    ``missed`` counts lines that were overwritten before the reader got to them.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise InvalidArgument("LogRing capacity must be positive")
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._next = 0
        self._cond = threading.Condition()

    @property
    def next_seq(self) -> int:
        """The sequence number the next appended line will get."""
        with self._cond:
            return self._next

    def append(self, line: LogLine) -> int:
        """Add a line; returns its sequence number."""
        with self._cond:
            self._lines.append(line)
            self._next += 1
            self._cond.notify_all()
            return self._next - 1

    def since(self, seq: int, limit: int | None = None) -> tuple[list[LogLine], int]:
        """Lines numbered seq.. (at most ``limit``), and how many before them were lost."""
        with self._cond:
            first = self._next - len(self._lines)
            missed = max(0, first - seq)
            start = max(0, seq - first)
            stop = len(self._lines) if limit is None else min(len(self._lines), start + limit)
            return [self._lines[i] for i in range(start, stop)], missed

    def wait(self, seq: int, timeout_s: float | None = None) -> bool:
        """Block until a line numbered >= seq exists; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._next > seq, timeout_s)
