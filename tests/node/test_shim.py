"""The shim and its launcher against real processes and real cgroups."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import FailedPrecondition
from provisioner.node.process import leaf as leafops
from provisioner.node.process.logs import STDERR, STDOUT, LogLimits, LogReader
from provisioner.node.process.procs import is_same_process, proc_start_time, wait_gone
from provisioner.node.process.shimspec import ShimSpec, ShimStatus, read_status
from provisioner.node.process.supervise import is_running, launch, request_stop, shim_alive
from provisioner.node.types import LeafCgroup, NamespaceTarget

pytestmark = pytest.mark.kernel


def wait_status(status_file: str, pred: Callable[[ShimStatus], bool],
                timeout_s: float = 5.0) -> ShimStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        st = read_status(status_file)
        if pred(st):
            return st
        assert time.monotonic() < deadline, f"status never matched; last: {st}"
        time.sleep(0.01)


def texts(st: ShimStatus, channel: str | None = None) -> list[str]:
    return [x.text for x in LogReader(st.log_dir).read(channel=channel)]


def make_leaf(layout: str) -> LeafCgroup:
    tag = f"ptest-{uuid.uuid4().hex[:8]}"
    if layout == "v1":
        dirs = [f"/sys/fs/cgroup/{c}/{tag}/_x.s" for c in ("freezer", "pids")]
        made = LeafCgroup(tuple(dirs), False, dirs[0])
    else:
        dirs = [f"/sys/fs/cgroup/unified/{tag}/_x.s"]
        made = LeafCgroup(tuple(dirs), True)
    for d in dirs:
        os.makedirs(d)
    return made


class Harness:
    """Builds specs on fresh leaves and cleans every process and cgroup dir up."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.leaves: list[LeafCgroup] = []
        self.status_files: list[str] = []

    def spec(self, command: str, layout: str = "v1", **kw: Any) -> ShimSpec:
        leaf = make_leaf(layout)
        self.leaves.append(leaf)
        name = f"x{len(self.leaves)}"
        status_file = str(self.root / "run" / name / "status.json")
        self.status_files.append(status_file)
        kw.setdefault("stop_grace_s", 0.3)
        return ShimSpec(name=name, command=command, leaf=leaf,
                        log_dir=str(self.root / "logs" / name), status_file=status_file, **kw)

    def cleanup(self) -> None:
        for sf in self.status_files:
            with contextlib.suppress(Exception):
                st = read_status(sf)
                if shim_alive(st):
                    os.kill(st.shim_pid, signal.SIGKILL)
        for leaf in self.leaves:
            with contextlib.suppress(Exception):
                leafops.kill_all(leaf)
            for d in leaf.dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(d)
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.dirname(d))


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    if os.geteuid() != 0:
        pytest.skip("needs root and cgroups")
    harness = Harness(tmp_path)
    yield harness
    harness.cleanup()


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_launch_puts_the_child_in_the_leaf(h: Harness, layout: str) -> None:
    spec = h.spec("sleep 1000", layout)
    st = launch(spec)
    assert st.state == "running" and st.child_pid is not None and is_running(st)
    assert st.child_start_time == proc_start_time(st.child_pid)
    cgroup = Path(f"/proc/{st.child_pid}/cgroup").read_text()
    for d in spec.leaf.dirs:
        rel = d.split("/", 5)[5] if layout == "v1" else d.removeprefix("/sys/fs/cgroup/unified")
        assert rel.lstrip("/") in cgroup
    assert st.child_pid in leafops.pids(spec.leaf)
    assert st.shim_pid not in leafops.pids(spec.leaf)  # the shim stays outside
    with pytest.raises(FailedPrecondition, match="already supervised"):
        launch(spec)
    final = request_stop(st)
    assert final.state == "stopped" and final.exit_signal == signal.SIGTERM
    assert leafops.pids(spec.leaf) == set()
    assert not shim_alive(final)


def test_a_leaf_with_a_stray_process_is_refused_unless_made_by_the_caller(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shim never starts next to processes it does not know: an adopted leaf is
    listed first. A leaf the caller has just made (``new_leaf``) holds nothing, so it
    is not listed."""
    spec = h.spec("sleep 1000")
    stray = subprocess.Popen(["sleep", "1000"])
    try:
        leafops.attach(spec.leaf, stray.pid)
        with pytest.raises(FailedPrecondition, match="is not empty"):
            launch(spec)
        assert not os.path.exists(spec.status_file)  # nothing was started
    finally:
        stray.kill()
        stray.wait()
    listed: list[LeafCgroup] = []
    monkeypatch.setattr(leafops, "pids", lambda leaf: listed.append(leaf) or set())
    st = launch(spec, new_leaf=True)
    assert listed == [] and st.state == "running"
    launch_again = h.spec("sleep 1000")
    st2 = launch(launch_again)
    assert listed == [launch_again.leaf] and st2.state == "running"
    monkeypatch.undo()
    for status in (st, st2):
        assert request_stop(status).state == "stopped"


def test_stdout_and_stderr_lines_with_timestamps(h: Harness) -> None:
    before = time.time_ns()
    script = ("for i in $(seq 1 3000); do echo o$i; echo e$i >&2; done; "
              "head -c 20000 /dev/zero | tr '\\0' a; echo; printf 'x\\377y\\n'; printf tail")
    st = launch(h.spec(script, log_limits=LogLimits(max_line_bytes=4096)))
    st = wait_status(st.status_file, lambda s: s.state == "exited")
    assert st.exit_code == 0 and st.exit_signal is None and st.restart_count == 0
    lines = LogReader(st.log_dir).read()
    assert all(before <= x.ts_ns <= time.time_ns() for x in lines)
    assert texts(st, STDERR) == [f"e{i}" for i in range(1, 3001)]
    out = [x for x in lines if x.channel == STDOUT]
    assert [x.text for x in out[:3000]] == [f"o{i}" for i in range(1, 3001)]
    long = out[3000:3005]  # 20000 bytes cut into 4096-byte pieces, all but the last marked
    assert [x.continued for x in long] == [True] * 4 + [False]
    assert "".join(x.text for x in long) == "a" * 20000
    assert [x.text for x in out[3005:]] == ["x\ufffdy", "tail"]


def test_env_working_dir_and_uid_are_applied(h: Harness) -> None:
    script = ('id -u; id -g; pwd; echo "$FOO"; echo "$HOME"; '
              'echo "${PYTEST_CURRENT_TEST:-clean}"; echo "$PATH"')
    st = launch(h.spec(script, env={"FOO": "bar baz"}, working_dir="/usr", uid=65534,
                       gid=65534))
    st = wait_status(st.status_file, lambda s: s.state == "exited")
    out = texts(st, STDOUT)
    assert out[:6] == ["65534", "65534", "/usr", "bar baz", "/nonexistent", "clean"]
    assert "/usr/bin" in out[6]
    assert texts(st, STDERR) == []


def test_bad_working_dir_is_a_clear_error(h: Harness) -> None:
    spec = h.spec("true", working_dir="/no/such/dir")
    with pytest.raises(FailedPrecondition, match=r"working_dir '/no/such/dir': No such file"):
        launch(spec)
    st = read_status(spec.status_file)
    assert st.state == "failed" and wait_gone(st.shim_pid, st.shim_start_time, 2.0)


def test_policy_never_and_on_failure_with_success(h: Harness) -> None:
    st = launch(h.spec("exit 3"))
    st = wait_status(st.status_file, lambda s: s.state == "exited")
    assert (st.exit_code, st.restart_count) == (3, 0)
    st = launch(h.spec("kill -9 $$", restart_policy="never"))
    st = wait_status(st.status_file, lambda s: s.state == "exited")
    assert (st.exit_code, st.exit_signal) == (None, signal.SIGKILL)
    st = launch(h.spec("exit 0", restart_policy="on-failure", backoff_base_s=0.01))
    st = wait_status(st.status_file, lambda s: s.state == "exited")
    assert (st.exit_code, st.restart_count) == (0, 0)
    assert wait_gone(st.shim_pid, st.shim_start_time, 2.0)


def test_always_restarts_even_after_success(h: Harness) -> None:
    st = launch(h.spec("echo run", restart_policy="always", backoff_base_s=0.02))
    st = wait_status(st.status_file, lambda s: s.restart_count >= 3)
    final = request_stop(st)
    assert final.state == "stopped" and texts(final).count("run") >= 3


def test_on_failure_backs_off_exponentially_up_to_the_cap(h: Harness) -> None:
    spec = h.spec("echo run; exit 1", restart_policy="on-failure", backoff_base_s=0.1,
                  backoff_cap_s=0.4, backoff_reset_s=100)
    st = launch(spec)
    # restart_count is raised as run N+1 starts, so runs 1..N have logged their line.
    st = wait_status(st.status_file, lambda s: s.restart_count >= 5)
    final = request_stop(st)
    assert final.state == "stopped" and final.restart_count >= 5
    starts = [x.ts_ns / 1e9 for x in LogReader(spec.log_dir).read()][:5]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    for gap, delay in zip(gaps, [0.1, 0.2, 0.4, 0.4], strict=True):
        assert delay * 0.95 <= gap < delay + 0.3, gaps


def test_a_healthy_run_resets_the_back_off(h: Harness) -> None:
    # Each run outlives backoff_reset_s, so each wait before a restart is the base
    # (0.3 s), never its double. Timed from a run's last line to the next run's first,
    # so a run slowed by the machine's load does not count.
    spec = h.spec("echo run; sleep 0.2; echo end; exit 1", restart_policy="on-failure",
                  backoff_base_s=0.3, backoff_reset_s=0.1)
    st = launch(spec)
    # Until the fourth run has logged its start (restart_count is raised before a run
    # is spawned, so a status saying 3 can come before that run's first line).
    deadline = time.monotonic() + 15
    while True:
        lines = [(x.text, x.ts_ns / 1e9) for x in LogReader(spec.log_dir).read()]
        if sum(text == "run" for text, _ in lines) >= 4:
            break
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
    request_stop(read_status(st.status_file))
    ends = [ts for text, ts in lines if text == "end"][:3]
    starts = [ts for text, ts in lines if text == "run"][1:4]
    waits = [start - end for end, start in zip(ends, starts, strict=True)]
    # A doubled back-off would wait >= 0.6 s from the second restart on.
    assert len(waits) == 3 and all(0.28 <= w < 0.5 for w in waits), waits


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_stop_leaves_nothing_of_a_term_ignoring_forking_tree(h: Harness, layout: str) -> None:
    script = ('trap "" TERM; sleep 1000 & sleep 1000 & setsid sleep 1000 & '
              'while :; do sleep 1; done')
    spec = h.spec(script, layout, stop_grace_s=0.3)
    st = launch(spec)
    deadline = time.monotonic() + 5
    while len(leafops.pids(spec.leaf)) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    members = {p: proc_start_time(p) for p in leafops.pids(spec.leaf)}
    t0 = time.monotonic()
    final = request_stop(st)
    took = time.monotonic() - t0
    assert final.state == "stopped" and final.exit_signal == signal.SIGKILL
    assert 0.3 <= took < 2.5
    assert not any(s is not None and is_same_process(p, s) for p, s in members.items())
    for d in spec.leaf.dirs:
        assert Path(d, "cgroup.procs").read_text() == ""
    assert not shim_alive(final)


def test_a_polite_child_stops_without_waiting_for_the_grace(h: Harness) -> None:
    st = launch(h.spec("echo up; exec sleep 1000", stop_grace_s=10))
    t0 = time.monotonic()
    final = request_stop(st)
    assert time.monotonic() - t0 < 2 and final.exit_signal == signal.SIGTERM


def test_stop_when_the_shim_is_gone(h: Harness) -> None:
    spec = h.spec('trap "" TERM; sleep 1000 & while :; do sleep 1; done')
    st = launch(spec)
    os.kill(st.shim_pid, signal.SIGKILL)
    assert wait_gone(st.shim_pid, st.shim_start_time, 2.0)
    assert is_running(st)  # the executable does not depend on its shim
    with pytest.raises(FailedPrecondition, match="not empty"):
        launch(spec)  # a new shim must not start next to the orphaned processes
    final = request_stop(st)
    assert final.state == "stopped" and "shim was gone" in final.last_error
    assert leafops.pids(spec.leaf) == set() and not is_running(st)


LAUNCHER = """
import json, sys
from provisioner.node.process.shimspec import ShimSpec
from provisioner.node.process.supervise import launch
print(json.dumps(launch(ShimSpec.from_json(json.loads(sys.argv[1]))).to_json()))
"""


def test_the_shim_outlives_its_launcher(h: Harness) -> None:
    spec = h.spec("while :; do echo tick; sleep 0.05; done")
    # capture_output also proves the shim keeps no pipe of its launcher open.
    done = subprocess.run([sys.executable, "-c", LAUNCHER, json.dumps(spec.to_json())],
                          capture_output=True, timeout=20, check=True)
    launcher_pid = json.loads(done.stdout)["shim_pid"]
    st = read_status(spec.status_file)
    assert st.shim_pid == launcher_pid and shim_alive(st) and is_running(st)
    first = len(texts(st))
    time.sleep(0.4)
    assert len(texts(st)) > first + 3
    assert request_stop(st).state == "stopped"


@pytest.fixture
def holder() -> Iterator[NamespaceTarget]:
    outer = subprocess.Popen(["unshare", "--pid", "--mount", "--fork", "--mount-proc",
                              "sleep", "1000"])
    children = Path(f"/proc/{outer.pid}/task/{outer.pid}/children")
    deadline = time.monotonic() + 5
    while not children.read_text().split():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pid = int(children.read_text().split()[0])
    start = proc_start_time(pid)
    assert start is not None
    yield NamespaceTarget(pid, start, ("pid", "mount"))
    os.kill(pid, signal.SIGKILL)  # pid 1 of its namespace: unshare then exits too
    try:
        outer.wait(timeout=5)
    except subprocess.TimeoutExpired:
        outer.kill()
        outer.wait()


def test_namespace_target_is_entered(h: Harness, holder: NamespaceTarget) -> None:
    spec = h.spec("readlink /proc/self/ns/pid; echo $$; pwd; exec sleep 1000",
                  namespace=holder, working_dir="/tmp")
    st = launch(spec)
    deadline = time.monotonic() + 5
    while len(texts(st)) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    ns, inner_pid, cwd = texts(st)[:3]
    assert ns == os.readlink(f"/proc/{holder.holder_pid}/ns/pid")
    assert int(inner_pid) < 10 and cwd == "/tmp"
    assert len(leafops.pids(spec.leaf)) >= 2  # nsenter and the shell are both inside
    assert request_stop(st).state == "stopped" and leafops.pids(spec.leaf) == set()
    assert is_same_process(holder.holder_pid, holder.holder_start_time)
    with pytest.raises(FailedPrecondition, match="does not exist in the cell"):
        launch(h.spec("true", namespace=holder, working_dir="/no/such"))
    gone = NamespaceTarget(holder.holder_pid, holder.holder_start_time + 1, ("pid",))
    with pytest.raises(FailedPrecondition, match=r"holder \d+ is gone"):
        launch(h.spec("true", namespace=gone))
