"""Process identity (procs.py) and leaf cgroup operations (leaf.py) on the real kernel."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from provisioner.errors import NotFound
from provisioner.node.process import leaf as leafops
from provisioner.node.process.procs import (
    is_same_process,
    proc_start_time,
    proc_state,
    process_alive,
    signal_group,
    signal_process,
)
from provisioner.node.types import LeafCgroup


def wait_until(pred: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "100"])
    yield proc
    proc.kill()
    proc.wait()


def test_start_time_survives_a_comm_with_spaces_and_parentheses() -> None:
    # The shell renames itself only once told to (a line on stdin), so the first read
    # of /proc/PID/stat is known to see the plain name "sh".
    script = 'read go; printf "a) b (c) 9 9" > /proc/$$/comm; while :; do sleep 1; done'
    proc = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE)
    assert proc.stdin is not None
    stat, comm = Path(f"/proc/{proc.pid}/stat"), Path(f"/proc/{proc.pid}/comm")
    try:
        before = stat.read_text()
        assert " (sh) " in before
        naive = int(before.split()[21])
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        wait_until(lambda: comm.read_text().startswith("a) b"))
        assert proc_start_time(proc.pid) == naive
        assert proc_state(proc.pid) in ("R", "S", "D")  # parsed past the odd comm
        assert is_same_process(proc.pid, naive)
    finally:
        proc.kill()
        proc.wait()


def test_a_reused_pid_is_not_mistaken(sleeper: subprocess.Popen[bytes]) -> None:
    start = proc_start_time(sleeper.pid)
    assert start is not None
    assert is_same_process(sleeper.pid, start)
    # Same pid, different start time: what a recycled pid looks like.
    assert not is_same_process(sleeper.pid, start + 1)
    assert not signal_process(sleeper.pid, start + 1, signal.SIGKILL)
    assert sleeper.poll() is None  # the "stranger" was not touched
    assert signal_process(sleeper.pid, start, signal.SIGKILL)
    sleeper.wait()
    assert not is_same_process(sleeper.pid, start)
    assert proc_start_time(sleeper.pid) is None


def test_zombies_count_as_dead() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        wait_until(lambda: proc_state(pid) == "Z")
        start = proc_start_time(pid)
        assert start is not None
        assert not process_alive(pid)
        assert not is_same_process(pid, start)
    finally:
        os.waitpid(pid, 0)


def test_signal_group_checks_the_leader() -> None:
    proc = subprocess.Popen(["sh", "-c", "sleep 100 & sleep 100 & wait"], start_new_session=True)
    try:
        start = proc_start_time(proc.pid)
        assert start is not None
        assert not signal_group(proc.pid, signal.SIGTERM, leader_start_time=start + 1)
        assert proc.poll() is None
        assert signal_group(proc.pid, signal.SIGTERM, leader_start_time=start)
        assert proc.wait(timeout=5) != 0
        with pytest.raises(ValueError):
            signal_group(1, signal.SIGTERM)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(params=["v1", "v2"])
def leaf(request: pytest.FixtureRequest) -> Iterator[LeafCgroup]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tag = f"ptest-{uuid.uuid4().hex[:8]}"
    if request.param == "v1":
        dirs = [f"/sys/fs/cgroup/{c}/{tag}/_x.t" for c in ("freezer", "pids")]
        made = LeafCgroup(tuple(dirs), False, dirs[0])
    else:
        if not os.path.exists("/sys/fs/cgroup/unified/cgroup.procs"):
            pytest.skip("no cgroup v2 mount at /sys/fs/cgroup/unified")
        dirs = [f"/sys/fs/cgroup/unified/{tag}/_x.t"]
        made = LeafCgroup(tuple(dirs), True)
    for d in dirs:
        os.makedirs(d)
    yield made
    with contextlib.suppress(Exception):
        leafops.kill_all(made)
    for d in dirs:
        os.rmdir(d)
        os.rmdir(os.path.dirname(d))


def start_in(leaf: LeafCgroup, script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sh", "-c", script], start_new_session=True,
                            preexec_fn=lambda: leafops.attach(leaf, os.getpid()))


@pytest.mark.kernel
def test_kill_all_kills_setsid_escapees_and_term_ignorers(leaf: LeafCgroup) -> None:
    script = ('trap "" TERM; for i in 1 2 3 4 5; do sleep 100 & done; '
              'setsid sleep 100 & (sleep 100 &); while :; do sleep 1; done')
    proc = start_in(leaf, script)
    try:
        wait_until(lambda: len(leafops.pids(leaf)) >= 8)
        members = {p: proc_start_time(p) for p in leafops.pids(leaf)}
        assert proc.pid in members
        leafops.kill_all(leaf)
        assert leafops.pids(leaf) == set()
        assert proc.wait(timeout=5) == -signal.SIGKILL
        assert not any(st is not None and is_same_process(p, st) for p, st in members.items())
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.kernel
def test_kill_all_wins_against_a_forking_loop(leaf: LeafCgroup) -> None:
    proc = start_in(leaf, "while :; do (sleep 100 &); sleep 0.005; done")
    try:
        wait_until(lambda: len(leafops.pids(leaf)) >= 20)
        leafops.kill_all(leaf)
        assert leafops.pids(leaf) == set()
        time.sleep(0.05)
        assert leafops.pids(leaf) == set()  # nothing respawned after the kill
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.kernel
def test_attach_to_a_missing_leaf_is_not_found(leaf: LeafCgroup) -> None:
    ghost = LeafCgroup(tuple(d + "-gone" for d in leaf.dirs), leaf.v2, None)
    with pytest.raises(NotFound):
        leafops.attach(ghost, os.getpid())
    assert leafops.pids(ghost) == set()
    leafops.kill_all(ghost)  # nothing to kill is not an error


def make_sub_cgroups(leaf: LeafCgroup) -> list[str]:
    """``<dir>/sub/deeper`` below every directory of LEAF; the deepest ones."""
    deepest = [os.path.join(d, "sub", "deeper") for d in leaf.dirs]
    for d in deepest:
        os.makedirs(d)
    return deepest


def remove_sub_cgroups(leaf: LeafCgroup) -> None:
    for d in leaf.dirs:
        for path in (os.path.join(d, "sub", "deeper"), os.path.join(d, "sub")):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(path)


@pytest.mark.kernel
def test_pids_and_kill_all_reach_into_sub_cgroups(leaf: LeafCgroup) -> None:
    # What a container runtime does (runc puts the container in <leaf>/ctr), and how a
    # root process could try to escape a stop: move into a sub-cgroup of the leaf.
    deepest = make_sub_cgroups(leaf)
    proc = start_in(leaf, "trap '' TERM; while :; do sleep 1; done")
    escapee = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 100"],
                               start_new_session=True,
                               preexec_fn=lambda: leafops.attach(leaf, os.getpid()))
    try:
        for d in deepest:
            Path(d, "cgroup.procs").write_text(str(escapee.pid))
        assert all(Path(d, "cgroup.procs").read_text().split() == [str(escapee.pid)]
                   for d in deepest)
        assert escapee.pid not in {int(p) for d in leaf.dirs
                                   for p in Path(d, "cgroup.procs").read_text().split()}
        wait_until(lambda: {proc.pid, escapee.pid} <= leafops.pids(leaf))
        assert not leafops.is_empty(leaf)
        if not leaf.v2:
            # A sub-cgroup frozen on its own stays frozen when the leaf thaws: its tasks
            # would never die of their SIGKILL unless it is thawed too.
            frozen = Path(os.path.dirname(deepest[0]), "freezer.state")
            assert leaf.freezer_dir is not None and deepest[0].startswith(leaf.freezer_dir)
            frozen.write_text("FROZEN")
            wait_until(lambda: frozen.read_text().strip() == "FROZEN")
        leafops.kill_all(leaf, timeout_s=3.0)
        assert leafops.pids(leaf) == set()
        assert escapee.wait(timeout=5) == -signal.SIGKILL
        assert proc.wait(timeout=5) == -signal.SIGKILL
    finally:
        for p in (proc, escapee):
            p.kill()
            p.wait()
        remove_sub_cgroups(leaf)
