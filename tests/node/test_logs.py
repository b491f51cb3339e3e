"""Log files, rotation, follow and the in-memory ring (no kernel features needed)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from provisioner.errors import InvalidArgument
from provisioner.node.process.logs import (
    STDERR,
    STDOUT,
    LogLimits,
    LogLine,
    LogReader,
    LogRing,
)
from tests.node.log_reference import LineSplitter, LogWriter

SMALL = LogLimits(max_bytes=4096, keep=2, max_line_bytes=256)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir())


def test_lines_keep_channel_timestamp_and_order(tmp_path: Path) -> None:
    w = LogWriter(str(tmp_path))
    w.write(STDOUT, "first", ts_ns=100)
    w.write(STDERR, b"second", ts_ns=200)
    w.write_lines(STDOUT, [("third", False), ("fourth", False)], ts_ns=300)
    w.close()
    r = LogReader(str(tmp_path))
    assert r.read() == [
        LogLine(100, STDOUT, "first"), LogLine(200, STDERR, "second"),
        LogLine(300, STDOUT, "third"), LogLine(300, STDOUT, "fourth"),
    ]
    assert [x.text for x in r.read(since_ns=200)] == ["second", "third", "fourth"]
    assert [x.text for x in r.read(until_ns=300)] == ["first", "second"]
    assert [x.text for x in r.read(channel=STDERR)] == ["second"]
    assert [x.text for x in r.read(tail=2)] == ["third", "fourth"]
    assert [x.text for x in r.read(channel=STDOUT, tail=1, until_ns=300)] == ["first"]


def test_invalid_utf8_and_odd_separators_never_break_lines(tmp_path: Path) -> None:
    w = LogWriter(str(tmp_path))
    w.write(STDOUT, b"bad \xff\xfe bytes", ts_ns=1)
    w.write(STDOUT, "cr\r, nel\x85, ls\u2028 and a space-led ' x'", ts_ns=2)
    w.write(STDERR, "", ts_ns=3)
    with pytest.raises(InvalidArgument):
        w.write(STDOUT, "two\nlines")
    w.close()
    lines = LogReader(str(tmp_path)).read()
    assert lines[0].text == "bad \ufffd\ufffd bytes"
    assert lines[1].text == "cr\r, nel\x85, ls\u2028 and a space-led ' x'"
    assert lines[2] == LogLine(3, STDERR, "")


def test_splitter_bounds_memory_and_marks_pieces() -> None:
    s = LineSplitter(8)
    assert s.feed(b"abc\nde") == [(b"abc", False)]
    assert s.feed(b"fghijklmnop") == [(b"defghijk", True)]  # never holds > 8 bytes
    assert s.feed(b"q\nexactly8\n") == [(b"lmnopq", False), (b"exactly8", False)]
    assert s.feed(b"tail") == []
    assert s.flush() == [(b"tail", False)]
    assert s.flush() == []
    # A cut never lands inside a UTF-8 sequence: "é" is two bytes.
    pieces = LineSplitter(8).feed(("abcdefg" + "é" * 4 + "\n").encode())
    assert [p.decode() for p, _ in pieces] == ["abcdefg", "éééé"]
    assert [c for _, c in pieces] == [True, False]


def test_rotation_bounds_the_disk_and_keeps_the_newest(tmp_path: Path) -> None:
    w = LogWriter(str(tmp_path), SMALL)
    for i in range(2000):
        w.write(STDOUT, f"line {i:05d} " + "x" * 40, ts_ns=i)
    w.close()
    assert len(LogReader(str(tmp_path)).files()) == SMALL.keep + 1
    assert dir_bytes(tmp_path) <= (SMALL.keep + 1) * SMALL.max_bytes
    lines = LogReader(str(tmp_path)).read()
    numbers = [x.ts_ns for x in lines]
    assert numbers == list(range(numbers[0], 2000))  # contiguous, oldest first, newest kept
    assert numbers[0] > 1000


def test_writer_reopens_and_drops_files_beyond_keep(tmp_path: Path) -> None:
    w = LogWriter(str(tmp_path), LogLimits(max_bytes=4096, keep=4, max_line_bytes=256))
    for i in range(1000):
        w.write(STDOUT, f"{i} " + "y" * 50, ts_ns=i)
    w.close()
    assert len(LogReader(str(tmp_path)).files()) == 5
    before = LogReader(str(tmp_path)).read(tail=1)
    w = LogWriter(str(tmp_path), SMALL)  # keep shrank from 4 to 2
    w.write(STDOUT, "after reopen", ts_ns=5000)
    w.close()
    assert len(LogReader(str(tmp_path)).files()) == 3
    assert LogReader(str(tmp_path)).read(tail=2)[0] == before[0]  # appended, not truncated
    assert LogReader(str(tmp_path)).read(tail=1)[0].text == "after reopen"


def test_limits_are_checked() -> None:
    with pytest.raises(InvalidArgument):
        LogLimits(max_bytes=1000, keep=1, max_line_bytes=1024).check()
    with pytest.raises(InvalidArgument):
        LogLimits(keep=-1).check()


def test_follow_survives_two_rotations_between_reads(tmp_path: Path) -> None:
    w = LogWriter(str(tmp_path), LogLimits(max_bytes=4096, keep=5, max_line_bytes=256))
    for i in range(10):
        w.write(STDOUT, f"old {i}", ts_ns=i)
    stop = threading.Event()
    gen = LogReader(str(tmp_path)).follow(stop=stop, poll_s=0.01)
    assert [next(gen).text for _ in range(10)] == [f"old {i}" for i in range(10)]
    # The follower is suspended on the current file; rotate it away twice meanwhile.
    for i in range(200):
        w.write(STDOUT, f"new {i:03d} " + "z" * 30, ts_ns=100 + i)
    assert len(LogReader(str(tmp_path)).files()) >= 3
    got = [next(gen).ts_ns for _ in range(200)]
    assert got == list(range(100, 300))
    stop.set()
    assert list(gen) == []
    w.close()


def test_follow_tail_then_live_lines_from_a_writer_thread(tmp_path: Path) -> None:
    limits = LogLimits(max_bytes=4096, keep=8, max_line_bytes=256)
    w = LogWriter(str(tmp_path), limits)
    for i in range(50):
        w.write(STDOUT if i % 2 else STDERR, f"pre {i}", ts_ns=i)
    total = 1500

    def produce() -> None:
        for i in range(total):
            w.write(STDOUT, f"live {i:04d} " + "q" * 30, ts_ns=1000 + i)
            if i % 100 == 0:
                time.sleep(0.005)

    stop = threading.Event()
    seen: list[LogLine] = []
    gen = LogReader(str(tmp_path)).follow(tail=3, channel=STDOUT, stop=stop, poll_s=0.005)
    producer = threading.Thread(target=produce)
    producer.start()
    watchdog = threading.Timer(10, stop.set)  # a lost line must fail the test, not hang it
    watchdog.start()
    for line in gen:
        seen.append(line)
        if len(seen) == 3 + total:
            break
    watchdog.cancel()
    producer.join()
    stop.set()
    w.close()
    assert [x.text for x in seen[:3]] == ["pre 45", "pre 47", "pre 49"]
    assert [x.ts_ns for x in seen[3:]] == list(range(1000, 1000 + total))  # none lost
    assert len(os.listdir(tmp_path)) > 3  # it really rotated


def test_follow_waits_for_a_file_to_appear(tmp_path: Path) -> None:
    stop = threading.Event()
    gen = LogReader(str(tmp_path / "later")).follow(stop=stop, poll_s=0.005)
    threading.Timer(0.05, lambda: LogWriter(str(tmp_path / "later")).write(STDOUT, "hi")).start()
    watchdog = threading.Timer(5, stop.set)
    watchdog.start()
    assert next(gen).text == "hi"
    watchdog.cancel()
    stop.set()


def test_follow_ends_when_the_directory_is_replaced(tmp_path: Path) -> None:
    """A deleted executable's log is moved away; one made again under its name writes a
    new directory: the follower of the old one must not read the new one's lines."""
    logs = tmp_path / "talker"
    old = LogWriter(str(logs))
    old.write(STDOUT, "first life")
    old.close()
    stop = threading.Event()
    reader = LogReader(str(logs))
    gen = reader.follow(stop=stop, poll_s=0.005)
    watchdog = threading.Timer(5, stop.set)
    watchdog.start()
    assert next(gen).text == "first life"
    assert reader.same_directory()
    os.rename(logs, tmp_path / "retired")
    new = LogWriter(str(logs))
    new.write(STDOUT, "second life")
    new.close()
    assert list(gen) == []  # it ended, having read nothing of the new directory
    assert not stop.is_set(), "the follower did not notice the replacement"
    assert not reader.same_directory()
    watchdog.cancel()
    assert [x.text for x in LogReader(str(logs)).read()] == ["second life"]


def test_ring_reports_missed_lines() -> None:
    ring = LogRing(5)
    for i in range(12):
        assert ring.append(LogLine(i, STDOUT, str(i))) == i
    lines, missed = ring.since(0)
    assert missed == 7 and [x.text for x in lines] == ["7", "8", "9", "10", "11"]
    lines, missed = ring.since(10)
    assert missed == 0 and [x.text for x in lines] == ["10", "11"]
    lines, missed = ring.since(8, limit=2)
    assert missed == 0 and [x.text for x in lines] == ["8", "9"]
    assert ring.since(12) == ([], 0)
    assert ring.next_seq == 12


def test_ring_wait_wakes_on_append() -> None:
    ring = LogRing(3)
    assert ring.wait(0, timeout_s=0.01) is False
    threading.Timer(0.02, lambda: ring.append(LogLine(1, STDERR, "x"))).start()
    assert ring.wait(0, timeout_s=5) is True
    with pytest.raises(InvalidArgument):
        LogRing(0)
