"""The writer lock across real processes: contention, crash release, holder info."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from provisioner.errors import FailedPrecondition, LockBusy
from provisioner.node.state.lock import LockHolder, WriterLock, read_holder

REPO = Path(__file__).resolve().parents[2]
Spawn = Callable[..., "subprocess.Popen[str]"]

HOLDER_SCRIPT = """\
import sys, time
from provisioner.node.state.lock import WriterLock
lock = WriterLock(sys.argv[1]).acquire(5.0, "apply web.yaml")
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def spawn_holder(tmp_path: Path, state_dir: Path) -> Iterator[Spawn]:
    """Start ``lock_holder.py`` in another process; it holds the lock for N seconds."""
    script = tmp_path / "lock_holder.py"
    script.write_text(HOLDER_SCRIPT)
    procs: list[subprocess.Popen[str]] = []

    def spawn(hold_s: float = 30.0) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(state_dir), str(hold_s)],
            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        assert proc.stdout is not None
        proc.stdout.close()


def test_acquire_writes_holder_and_release_clears_it(state_dir: Path) -> None:
    lock = WriterLock(state_dir).acquire(0, "plan")
    holder = read_holder(state_dir)
    assert holder is not None and holder == lock.holder
    assert holder.pid == os.getpid() and holder.purpose == "plan"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", holder.since)
    lock.release()
    assert read_holder(state_dir) is None
    assert (state_dir / "lock").exists()  # never unlinked
    lock.release()  # idempotent


def test_context_manager(state_dir: Path) -> None:
    with WriterLock(state_dir, purpose="apply") as lock:
        assert lock.held and read_holder(state_dir) is not None
    assert not lock.held and read_holder(state_dir) is None
    with WriterLock(state_dir).acquire(1, "again"):
        assert read_holder(state_dir) is not None


def test_contention_names_the_holder(state_dir: Path, spawn_holder: Spawn) -> None:
    proc = spawn_holder()
    started = time.monotonic()
    with pytest.raises(LockBusy) as err:
        WriterLock(state_dir).acquire(0.3, "apply other.yaml")
    assert time.monotonic() - started >= 0.3
    message = str(err.value)
    assert message.startswith(f"state is locked by pid {proc.pid} (lock_holder.py ")
    assert "'apply web.yaml'" in message and message.endswith("waited 0.3s")
    holder = read_holder(state_dir)
    assert holder is not None and holder.pid == proc.pid


def test_waiter_gets_the_lock_when_holder_releases(state_dir: Path,
                                                   spawn_holder: Spawn) -> None:
    spawn_holder(0.3)
    with WriterLock(state_dir).acquire(10, "apply") as lock:
        assert lock.holder is not None and lock.holder.pid == os.getpid()


def test_sigkilled_holder_frees_the_lock(state_dir: Path, spawn_holder: Spawn) -> None:
    proc = spawn_holder()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    assert read_holder(state_dir) is None  # its leftover record names a dead process
    with WriterLock(state_dir).acquire(1, "recover") as lock:
        assert lock.held


def test_second_acquire_in_one_process_fails_fast(state_dir: Path) -> None:
    with WriterLock(state_dir, purpose="first") as lock:
        started = time.monotonic()
        with pytest.raises(FailedPrecondition, match="already held by this process"):
            WriterLock(state_dir).acquire(5, "second")
        with pytest.raises(FailedPrecondition, match="not re-entrant"):
            lock.acquire(5, "third")
        assert time.monotonic() - started < 1
    WriterLock(state_dir).acquire(0, "later").release()  # the failures left nothing behind


def test_children_do_not_inherit_the_lock(state_dir: Path) -> None:
    lock = WriterLock(state_dir).acquire(0, "apply")
    child = subprocess.Popen(["sleep", "30"])
    try:
        lock.release()
        WriterLock(state_dir).acquire(0, "after").release()
    finally:
        child.kill()
        child.wait()


def test_stale_or_torn_content_reads_as_free(state_dir: Path) -> None:
    state_dir.mkdir()
    # 2**22 is the kernel's highest possible pid_max, so this pid cannot exist.
    record = LockHolder(pid=2**22 + 7, command="x", hostname=socket.gethostname(),
                        since="2026-01-01T00:00:00Z")
    (state_dir / "lock").write_text(json.dumps(record.__dict__))
    assert read_holder(state_dir) is None
    (state_dir / "lock").write_text('{"pid": ')
    assert read_holder(state_dir) is None
