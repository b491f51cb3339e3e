"""A reference writer of the executable log format (provisioner/node/process/logs.py).

The shim writes the real files (``provisioner/node/process/csrc/logs.c``); this Python writer
does the same from a test, with timestamps of the test's choosing. Reader tests use it
to make exact files, and the shim's own tests use it as the oracle its output must
equal (tests/node/test_shim_native.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from provisioner.errors import InvalidArgument
from provisioner.node.process.logs import (
    _TAGS,
    LogLimits,
    LogLine,
    _numbered,
    _path,
)

__all__ = ["LineSplitter", "LogWriter", "format_record"]


def format_record(line: LogLine) -> bytes:
    tag = _TAGS[line.channel] + ("+" if line.continued else "")
    return f"{line.ts_ns} {tag} {line.text}\n".encode("utf-8", "replace")



class LineSplitter:
    """Cuts a byte stream into lines, never buffering more than max_line_bytes."""

    def __init__(self, max_line_bytes: int) -> None:
        self._max = max_line_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        """Complete lines (without newline) as ``(bytes, continued)`` pairs."""
        buf = self._buf
        buf += data
        out: list[tuple[bytes, bool]] = []
        start = 0
        while start < len(buf):
            # A line fits if its newline is within max_line_bytes + 1 of its start.
            nl = buf.find(b"\n", start, start + self._max + 1)
            if nl >= 0:
                out.append((bytes(buf[start:nl]), False))
                start = nl + 1
                continue
            if len(buf) - start <= self._max:
                break  # an incomplete line that still fits: wait for more
            cut = start + self._max
            # Do not split a UTF-8 sequence: back up over continuation bytes (10xxxxxx).
            back = cut
            while back > cut - 3 and (buf[back] & 0xC0) == 0x80:
                back -= 1
            if back > start and (buf[back] & 0xC0) != 0x80:
                cut = back
            out.append((bytes(buf[start:cut]), True))
            start = cut
        del buf[:start]
        return out

    def flush(self) -> list[tuple[bytes, bool]]:
        """The unterminated rest at end of stream, as a last line."""
        rest = bytes(self._buf)
        self._buf.clear()
        return [(rest, False)] if rest else []


class LogWriter:
    """Appends records to the numbered files of ``directory``, rotating by size. One
    writer per directory.

    The directory and the file are made at the first line, not before: an executable
    that never writes anything costs no file creation at all (on a busy ext4 each costs
    up to ~0.5 ms, on the path of every start).
    """

    def __init__(self, directory: str, limits: LogLimits | None = None) -> None:
        self.limits = limits or LogLimits()
        self.limits.check()
        self.directory = directory
        self._seq = 0  # the file being written, once open
        self._fd = -1
        self._size = 0

    @property
    def path(self) -> str:
        """The file being written (or that the next line will go to)."""
        if self._seq:
            return _path(self.directory, self._seq)
        files = _numbered(self.directory)
        return _path(self.directory, files[-1][1] if files else 1)

    def _open_first(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        files = _numbered(self.directory)
        self._seq = files[-1][1] if files else 1  # append to the newest file
        self._open()

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o640)
        self._size = os.fstat(self._fd).st_size
        # Drop what is beyond ``keep`` (also after a restart with a smaller keep).
        for path, seq in _numbered(self.directory):
            if seq < self._seq - self.limits.keep:
                os.unlink(path)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._seq += 1
        self._open()

    def write(self, channel: str, text: str | bytes, ts_ns: int | None = None,
              continued: bool = False) -> None:
        """Write one line (must not contain a newline)."""
        self.write_lines(channel, [(text, continued)], ts_ns)

    def write_lines(self, channel: str, lines: Iterable[tuple[str | bytes, bool]],
                    ts_ns: int | None = None) -> None:
        """Write lines of one channel, all stamped ts_ns (default: now)."""
        if channel not in _TAGS:
            raise InvalidArgument(f"unknown log channel {channel!r}")
        ts = time.time_ns() if ts_ns is None else ts_ns
        batch = bytearray()
        for text, continued in lines:
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            if "\n" in text:
                raise InvalidArgument("a log line must not contain a newline")
            rec = format_record(LogLine(ts, channel, text, continued))
            if self._fd < 0:
                self._open_first()
            if self._size + len(batch) + len(rec) > self.limits.max_bytes:
                self._flush(batch)
                batch.clear()
                if self._size > 0:
                    self._rotate()
            batch += rec
        self._flush(batch)

    def _flush(self, batch: bytearray) -> None:
        view = memoryview(batch)
        while view:
            n = os.write(self._fd, view)
            self._size += n
            view = view[n:]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


