"""The compiled shim itself: its build, bad launch input, abandoned launches, and its log
files byte for byte against the reference writer (tests/node/log_reference.py)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.errors import FailedPrecondition, InvalidArgument
from provisioner.node.process import leaf as leafops
from provisioner.node.process.logs import STDERR, STDOUT, LogLimits, LogReader
from provisioner.node.process.procs import is_same_process, process_alive
from provisioner.node.process.shim_binary import build, shim_binary
from provisioner.node.process.shimspec import ShimSpec, ShimStatus, native_spec, read_status
from provisioner.node.process.supervise import (
    ShimLaunch,
    launch,
    request_stop,
    shim_alive,
    sweep_tmp_files,
)
from provisioner.node.types import LeafCgroup
from tests.node.log_reference import LineSplitter

pytestmark = pytest.mark.kernel


@pytest.fixture
def leaf() -> Iterator[LeafCgroup]:
    if os.geteuid() != 0:
        pytest.skip("needs root and cgroups")
    tag = f"ptest-{uuid.uuid4().hex[:8]}"
    dirs = [f"/sys/fs/cgroup/{c}/{tag}/_x.s" for c in ("freezer", "pids")]
    made = LeafCgroup(tuple(dirs), False, dirs[0])
    for d in dirs:
        os.makedirs(d)
    yield made
    with contextlib.suppress(Exception):
        leafops.kill_all(made)
    for d in dirs:
        for path in (d, os.path.dirname(d)):
            with contextlib.suppress(OSError):
                os.rmdir(path)


def make_spec(tmp_path: Path, leaf: LeafCgroup, command: str, **kw: object) -> ShimSpec:
    return ShimSpec(name="n", command=command, leaf=leaf, log_dir=str(tmp_path / "logs"),
                    status_file=str(tmp_path / "run" / "status.json"),
                    stop_grace_s=0.3, **kw)  # type: ignore[arg-type]


def run_raw(spec_bytes: bytes) -> tuple[int, str]:
    """Run the shim binary on raw spec bytes; (exit code, what it wrote to fd 3)."""
    ready_r, ready_w = os.pipe()

    def put_ready_on_fd3() -> None:
        os.dup2(ready_w, 3)

    done = subprocess.run([shim_binary()], input=spec_bytes, capture_output=True,
                          preexec_fn=put_ready_on_fd3, close_fds=False, timeout=10,
                          check=False)
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as f:
        return done.returncode, f.read().decode()


def wait_for(status_file: str, state: str, timeout_s: float = 5.0) -> ShimStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        st = read_status(status_file)
        if st.state == state:
            return st
        assert time.monotonic() < deadline, f"still {st.state}"
        time.sleep(0.01)


# -- build and bad input ------------------------------------------------------------

def test_build_writes_a_working_binary_atomically(tmp_path: Path) -> None:
    out = build(str(tmp_path / "shim"))
    assert os.access(out, os.X_OK)
    assert [p.name for p in tmp_path.iterdir()] == ["shim"]  # no temporary file left
    usage = subprocess.run([out], capture_output=True, text=True, check=False,
                           stdin=subprocess.DEVNULL)
    assert usage.returncode == 64 and "started by the provisioner" in usage.stderr


@pytest.mark.parametrize(("raw", "message"), [
    (b"name\0n\0", "status_file missing"),
    (b"name\0n", "not NUL-terminated"),
    (b"bogus\0x\0", "unknown key bogus"),
    (b"name\0", "key name has no value"),
    (b"stop_grace_s\0soon\0", "bad number for stop_grace_s"),
    (b"uid\0-5\0", "bad integer for uid"),
    (b"restart_policy\0sometimes\0", "bad restart policy sometimes"),
])
def test_bad_specs_are_refused_with_a_reason(raw: bytes, message: str) -> None:
    code, said = run_raw(raw)
    assert code == 2 and said.startswith("E") and message in said


def test_bad_log_limits_are_refused(tmp_path: Path, leaf: LeafCgroup) -> None:
    spec = make_spec(tmp_path, leaf, "true")
    raw = native_spec(spec, "").replace(b"log_max_line_bytes\x0016384", b"log_max_line_bytes\x008")
    code, said = run_raw(raw)
    assert code == 2 and "bad log limits" in said
    assert not (tmp_path / "run").exists()  # refused before anything was made


def test_a_spec_larger_than_a_pipe_buffer_arrives_whole(tmp_path: Path,
                                                         leaf: LeafCgroup) -> None:
    big = {f"V{i}": "x" * 1000 for i in range(300)}  # ~300 KB, > the 64 KiB pipe buffer
    st = launch(make_spec(tmp_path, leaf, 'echo "$V299" | wc -c', env=big))
    assert st.state in ("running", "exited")
    wait_for(st.status_file, "exited")
    assert [x.text for x in LogReader(st.log_dir).read()] == ["1001"]


def test_an_abandoned_launch_leaves_nothing(tmp_path: Path) -> None:
    pending = ShimLaunch()
    pid = pending.pid
    pending.abandon()
    pending.abandon()  # idempotent
    assert not process_alive(pid)  # reaped: not even a zombie
    assert list(tmp_path.iterdir()) == []


def test_the_tmp_file_made_ahead_is_used_or_removed(tmp_path: Path, leaf: LeafCgroup) -> None:
    run = tmp_path / "run"
    run.mkdir()
    ShimLaunch(str(run)).abandon()
    assert list(run.iterdir()) == []  # made while waiting, removed when abandoned
    spec = make_spec(tmp_path, leaf, "sleep 30")
    st = launch(spec, shim=ShimLaunch(str(run)))
    # The status, and (made by the shim right after it reported ready, so perhaps not
    # yet) the next write's file; the file made ahead is used up.
    names = {p.name for p in run.iterdir()}
    assert "status.json" in names
    assert names <= {"status.json", f"status.json.tmp.{st.shim_pid}"}
    request_stop(st)
    assert sorted(p.name for p in run.iterdir()) == ["status.json"]


def test_sweep_removes_tmp_files_of_dead_shims_only(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    names = [f".shim-{dead.pid}.tmp", f"a.json.tmp.{dead.pid}",  # gone: swept
             f".shim-{os.getpid()}.tmp", f"b.json.tmp.{os.getpid()}",  # alive: kept
             "c.json", "c.shim.log", "d.tmp.x"]  # not tmp files of a shim: kept
    for name in names:
        (tmp_path / name).write_text("")
    sweep_tmp_files(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])


def test_a_failed_check_abandons_the_pending_shim(tmp_path: Path, leaf: LeafCgroup) -> None:
    first = launch(make_spec(tmp_path, leaf, "sleep 30"))
    pending = ShimLaunch()
    with pytest.raises(FailedPrecondition, match="already supervised"):
        launch(make_spec(tmp_path, leaf, "sleep 30"), shim=pending)
    assert not process_alive(pending.pid)
    assert read_status(first.status_file).launch_id == first.launch_id  # untouched
    assert request_stop(first).state == "stopped"


def test_json_escaping_of_errors_and_paths(tmp_path: Path, leaf: LeafCgroup) -> None:
    odd = '/no/such "dir" \\ \u00e9\t'
    with pytest.raises(FailedPrecondition) as caught:
        launch(make_spec(tmp_path, leaf, "true", working_dir=odd))
    assert f"working_dir '{odd}'" in str(caught.value)
    assert read_status(str(tmp_path / "run" / "status.json")).last_error.startswith(
        f"working_dir '{odd}'")


def test_the_shim_is_named_after_its_executable(tmp_path: Path, leaf: LeafCgroup) -> None:
    st = launch(make_spec(tmp_path, leaf, "sleep 30"))
    with open(f"/proc/{st.shim_pid}/comm") as f:
        assert f.read().strip() == "shim:n"
    assert is_same_process(st.shim_pid, st.shim_start_time) and shim_alive(st)
    os.kill(st.shim_pid, signal.SIGTERM)
    assert wait_for(st.status_file, "stopped").exit_signal == signal.SIGTERM


@pytest.mark.parametrize("self_frozen", [False, True])
def test_stop_kills_what_hides_in_a_sub_cgroup(tmp_path: Path, leaf: LeafCgroup,
                                               self_frozen: bool) -> None:
    # A root executable (or a container runtime: runc puts its container in <leaf>/ctr)
    # moves a process that ignores SIGTERM, in a session of its own, into a sub-cgroup
    # of the leaf; on v1 it may even freeze that sub-cgroup. The stop must still reach it.
    subs = [os.path.join(d, "esc") for d in leaf.dirs]
    pid_file = tmp_path / "escapee.pid"
    moves = "; ".join(f"echo $$ > {d}/cgroup.procs" for d in subs)
    escape = tmp_path / "escape.sh"
    escape.write_text(f"trap '' TERM; {moves}; echo $$ > {pid_file}; exec setsid sleep 1000\n")
    command = f"mkdir {' '.join(subs)} && sh {escape} & echo started; wait"
    escapee = 0
    try:
        st = launch(make_spec(tmp_path, leaf, command))
        deadline = time.monotonic() + 5
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline, "the escapee never wrote its pid"
            time.sleep(0.01)
        escapee = int(pid_file.read_text())
        assert all(Path(d, "cgroup.procs").read_text().split() == [str(escapee)] for d in subs)
        assert escapee in leafops.pids(leaf)
        if self_frozen:
            assert leaf.freezer_dir is not None
            Path(leaf.freezer_dir, "esc", "freezer.state").write_text("FROZEN")
        final = request_stop(st)
        assert final.state == "stopped" and not final.last_error
        assert not process_alive(escapee)
        assert leafops.pids(leaf) == set()
    finally:
        if escapee and process_alive(escapee):
            os.kill(escapee, signal.SIGKILL)
        if self_frozen and leaf.freezer_dir is not None:
            with contextlib.suppress(OSError):
                Path(leaf.freezer_dir, "esc", "freezer.state").write_text("THAWED")
        leafops.kill_all(leaf)
        for d in subs:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)


def _runtime_with_a_container(tmp_path: Path, leaf: LeafCgroup,
                              after_container: str) -> tuple[str, list[str], Path]:
    """A command standing for ``runc run``: it ignores SIGTERM, puts a "container"
    (``sleep``, ignoring SIGTERM too) in the sub-cgroup ``ctr`` of the leaf, waits for
    it, then runs AFTER_CONTAINER (its clean-up). Returns (command, the sub-cgroups,
    the container's pid file)."""
    subs = _container_dirs(leaf)
    pid_file = tmp_path / "container.pid"
    moves = "; ".join(f"echo $$ > {d}/cgroup.procs" for d in subs)
    container = tmp_path / "container.sh"
    container.write_text(f"trap '' TERM; {moves}; echo $$ > {pid_file}; exec sleep 1000\n")
    command = (f"trap '' TERM; mkdir {' '.join(subs)} && sh {container} & wait; "
               f"{after_container}")
    return command, subs, pid_file


def _container_dirs(leaf: LeafCgroup) -> list[str]:
    """The sub-cgroup ``ctr`` of the leaf in every hierarchy (runc's place for a pod's
    container)."""
    return [os.path.join(d, "ctr") for d in leaf.dirs]


def _kill_and_remove(leaf: LeafCgroup, subs: list[str]) -> None:
    """Whatever a test left: every process of the leaf killed, the sub-cgroups gone."""
    leafops.kill_all(leaf)
    for d in subs:
        with contextlib.suppress(OSError):
            os.rmdir(d)


def _wait_for_pid(pid_file: Path) -> int:
    deadline = time.monotonic() + 5
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the container never wrote its pid"
        time.sleep(0.01)
    return int(pid_file.read_text())


def _stop_timed(tmp_path: Path, leaf: LeafCgroup, command: str, pid_file: Path,
                settle_s: float) -> float:
    """Launch COMMAND (a runtime with a container) with SETTLE_S and stop it; how long
    the stop took, once it is checked to have left nothing running in the leaf."""
    st = launch(make_spec(tmp_path, leaf, command, settle_s=settle_s))
    container = _wait_for_pid(pid_file)
    started = time.monotonic()
    final = request_stop(st)
    took = time.monotonic() - started
    assert final.state == "stopped" and not final.last_error
    assert not process_alive(container)
    assert leafops.pids(leaf) == set()
    return took


@pytest.mark.parametrize("settle_s", [0.0, 5.0])
def test_settle_kills_the_container_first_and_lets_the_runtime_clean_up(
        tmp_path: Path, leaf: LeafCgroup, settle_s: float) -> None:
    # With a settle time, the grace period over, the shim kills what is in the leaf's
    # sub-cgroups first and the runtime finishes its clean-up (here: writes a file, as
    # runc removes its state); without one, the runtime dies with its container.
    cleaned = tmp_path / "cleaned"
    subs = _container_dirs(leaf)
    command, _, pid_file = _runtime_with_a_container(
        tmp_path, leaf, f"echo done > {cleaned}; rmdir {' '.join(subs)}")
    try:
        took = _stop_timed(tmp_path, leaf, command, pid_file, settle_s)
        if settle_s:
            assert cleaned.read_text() == "done\n"
            assert not any(os.path.exists(d) for d in subs)  # the runtime removed them
            assert took < 0.3 + 2.0, took  # not the whole settle time
        else:
            assert not cleaned.exists()
    finally:
        _kill_and_remove(leaf, subs)


def test_a_runtime_that_does_not_exit_in_its_settle_time_is_killed(
        tmp_path: Path, leaf: LeafCgroup) -> None:
    cleaned = tmp_path / "cleaned"
    command, subs, pid_file = _runtime_with_a_container(
        tmp_path, leaf, f"while :; do sleep 0.05; done; echo done > {cleaned}")
    try:
        took = _stop_timed(tmp_path, leaf, command, pid_file, 0.5)
        assert not cleaned.exists()
        assert 0.3 + 0.5 <= took < 0.3 + 0.5 + 3.0, took  # grace, settle, then the kill
    finally:
        _kill_and_remove(leaf, subs)


@pytest.mark.parametrize("settle_s", [-1.0, 61.0, float("nan")])
def test_a_settle_time_out_of_range_is_refused(tmp_path: Path, leaf: LeafCgroup,
                                               settle_s: float) -> None:
    with pytest.raises(InvalidArgument, match="settle time"):
        make_spec(tmp_path, leaf, "true", settle_s=settle_s).check()


# -- log files, against the reference writer ----------------------------------------

def expected_records(data: bytes, max_line: int) -> list[tuple[str, bool]]:
    splitter = LineSplitter(max_line)
    pieces = splitter.feed(data) + splitter.flush()
    return [(raw.decode("utf-8", "replace"), continued) for raw, continued in pieces]


def run_to_exit(tmp_path: Path, leaf: LeafCgroup, command: str,
                limits: LogLimits) -> ShimStatus:
    st = launch(make_spec(tmp_path, leaf, command, log_limits=limits))
    return wait_for(st.status_file, "exited")


def test_lines_pieces_and_bad_utf8_match_the_reference(tmp_path: Path,
                                                      leaf: LeafCgroup) -> None:
    rng = random.Random(7)
    alphabet = [b"a", b"b", b" ", b"\n", b"\r", b"\xc3\xa9", b"\xe2\x82\xac",
                b"\xf0\x9f\x98\x80", b"\xff", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf",
                b"\xf4\x90\x80\x80", b"\x85", b"\t"]
    data = b"".join(rng.choice(alphabet) for _ in range(20_000)) + b"\nno newline at end"
    source = tmp_path / "input.bin"
    source.write_bytes(data)
    limits = LogLimits(max_bytes=1 << 20, keep=2, max_line_bytes=16)
    st = run_to_exit(tmp_path, leaf, f"cat {source}", limits)
    got = [(x.text, x.continued) for x in LogReader(st.log_dir).read()]
    assert got == expected_records(data, 16)
    # The input exercised what it is meant to: replacements, cut lines, a last piece.
    assert sum(text.count("\ufffd") for text, _ in got) > 100
    assert sum(continued for _, continued in got) > 100
    assert got[-2:] == [("no newline at en", True), ("d", False)]  # 17 bytes, no newline
    assert all(x.channel == STDOUT for x in LogReader(st.log_dir).read())


def test_stderr_and_stdout_are_told_apart(tmp_path: Path, leaf: LeafCgroup) -> None:
    st = run_to_exit(tmp_path, leaf, "echo out; echo err >&2; printf partial",
                     LogLimits())
    lines = LogReader(st.log_dir).read()
    assert sorted((x.channel, x.text) for x in lines) == [
        (STDERR, "err"), (STDOUT, "out"), (STDOUT, "partial")]
    assert all(x.ts_ns >= (st.started_at_ns or 0) for x in lines)


def test_rotation_bounds_the_directory_and_keeps_the_newest(tmp_path: Path,
                                                          leaf: LeafCgroup) -> None:
    limits = LogLimits(max_bytes=4096, keep=2, max_line_bytes=256)
    st = run_to_exit(tmp_path, leaf, 'i=0; while [ $i -lt 2000 ]; do echo "line $i"; '
                     "i=$((i+1)); done", limits)
    reader = LogReader(st.log_dir)
    assert len(reader.files()) == limits.keep + 1
    assert sum(os.path.getsize(f) for f in reader.files()) <= (limits.keep + 1) * 4096
    numbers = [int(x.text.split()[1]) for x in reader.read()]
    assert numbers == list(range(numbers[0], 2000)) and numbers[0] > 1000


def test_a_restarted_shim_appends_and_drops_beyond_a_smaller_keep(
        tmp_path: Path, leaf: LeafCgroup) -> None:
    many = 'i=0; while [ $i -lt 1000 ]; do echo "first $i"; i=$((i+1)); done'
    run_to_exit(tmp_path, leaf, many, LogLimits(max_bytes=4096, keep=4, max_line_bytes=256))
    reader = LogReader(str(tmp_path / "logs"))
    assert len(reader.files()) == 5
    last = reader.read(tail=1)[0]
    run_to_exit(tmp_path, leaf, "echo second", LogLimits(max_bytes=4096, keep=2,
                                                         max_line_bytes=256))
    assert len(reader.files()) == 3
    assert [x.text for x in reader.read(tail=2)] == [last.text, "second"]
