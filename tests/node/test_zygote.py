"""The zygote (fork server) and its spare shims, through the node layer, for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from provisioner.errors import FailedPrecondition
from provisioner.model import CellSpec, ExecutableSpec, RestartPolicy
from provisioner.node import leaf as leafops
from provisioner.node.layer import NodeConfig, NodeLayer
from provisioner.node.logs import LogReader
from provisioner.node.procs import is_same_process, proc_start_time, wait_gone
from provisioner.node.spare import SPARE_PREFIX
from provisioner.node.supervise import is_running, shim_alive
from tests.conftest import make_config, tear_down

pytestmark = pytest.mark.kernel


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def log_text(node: NodeLayer, name: str) -> str:
    return "\n".join(line.text for line in LogReader(node.log_dir(name)).read())


def helpers_of(state_dir: str) -> set[int]:
    """Live processes forked from a zygote of STATE_DIR (zygote, spares, shims, their
    stand-by children before exec): they all share its command line."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"provisioner.node.zygote" in cmdline and os.fsencode(state_dir) in cmdline:
            start = proc_start_time(int(entry))
            if start is not None and is_same_process(int(entry), start):
                found.add(int(entry))
    return found


def prepared_left(state_dir: str) -> list[str]:
    return [f"{sub}/{name}" for sub in ("run", "logs")
            for name in os.listdir(os.path.join(state_dir, sub)) if name.startswith(SPARE_PREFIX)]


@pytest.fixture
def config(tmp_path: Path) -> Iterator[NodeConfig]:
    """A config whose cells and processes are torn down after the test, whoever made them."""
    if os.geteuid() != 0:
        pytest.skip("the node layer needs root and cgroups")
    cfg = make_config(tmp_path / "state")
    yield cfg
    tear_down(NodeLayer(cfg))


CALLER = """
import json, sys
from provisioner.model import CellSpec, ExecutableSpec
from provisioner.node.layer import NodeConfig, NodeLayer
layer = NodeLayer(NodeConfig(state_dir=sys.argv[1], cgroup_root=sys.argv[2]))
layer.allocate_cell(CellSpec("web"), "s")
status = layer.start_executable(ExecutableSpec(
    "ticker", "while :; do echo tick; sleep 0.05; done", cell="web"), "s")
print(json.dumps({"zygote": layer.zygote.pid, "status": status.to_json()}))
# No close(): the caller just ends, as a killed CLI would.
"""


def test_shims_outlive_their_caller_and_its_zygote(config: NodeConfig) -> None:
    done = subprocess.run([sys.executable, "-c", CALLER, config.state_dir, config.cgroup_root],
                          capture_output=True, timeout=60, check=True)
    out = json.loads(done.stdout)
    zygote_start = proc_start_time(out["zygote"])
    # The caller is gone: its zygote sees EOF and exits; so does the spare it kept.
    assert zygote_start is None or wait_gone(out["zygote"], zygote_start, 5.0)
    node = NodeLayer(config)
    try:
        status = node.read_shim_status("ticker")
        assert status is not None and shim_alive(status) and is_running(status)
        assert status.shim_pid == out["status"]["shim_pid"]
        wait_for(lambda: helpers_of(config.state_dir) == {status.shim_pid})
        wait_for(lambda: not prepared_left(config.state_dir))
        before = log_text(node, "ticker").count("tick")
        wait_for(lambda: log_text(node, "ticker").count("tick") > before + 3)  # still logging
        # A later process adopts it by pid + start time and stops it.
        final = node.stop_executable("ticker")
        assert final is not None and final.state == "stopped"
        assert not shim_alive(status) and not is_running(status)
    finally:
        node.close()


def test_close_stops_the_zygote_but_not_the_executables(config: NodeConfig) -> None:
    node = NodeLayer(config)
    node.allocate_cell(CellSpec("web"), "s")
    status = node.start_executable(ExecutableSpec("keeper", "sleep 1000", cell="web"), "s")
    zygote = node.zygote.pid
    assert zygote is not None and zygote in helpers_of(config.state_dir)
    node.close()
    assert proc_start_time(zygote) is None  # reaped by close()
    wait_for(lambda: helpers_of(config.state_dir) == {status.shim_pid})
    wait_for(lambda: not prepared_left(config.state_dir))
    assert is_running(status) and shim_alive(status)


def test_a_dead_zygote_is_replaced_transparently(node: NodeLayer) -> None:
    node.allocate_cell(CellSpec("web"), "s")
    first = node.start_executable(ExecutableSpec("one", "sleep 1000", cell="web"), "s")
    zygote = node.zygote.pid
    assert zygote is not None
    os.kill(zygote, signal.SIGKILL)
    wait_for(lambda: not node.zygote.alive())
    second = node.start_executable(ExecutableSpec("two", "sleep 1000", cell="web"), "s")
    assert node.zygote.pid not in (None, zygote)
    assert is_running(first) and is_running(second)  # the old zygote's shim is unharmed
    for name in ("one", "two"):
        final = node.stop_executable(name)
        assert final is not None and final.state == "stopped"


def test_concurrent_launches_from_eight_threads(node: NodeLayer) -> None:
    node.allocate_cell(CellSpec("web"), "s")
    names = [f"x{i}" for i in range(24)]
    errors: list[BaseException] = []

    def each(part: list[str], action: Callable[[str], object]) -> None:
        try:
            for name in part:
                action(name)
        except BaseException as exc:
            errors.append(exc)

    def in_threads(action: Callable[[str], object]) -> None:
        threads = [threading.Thread(target=each, args=(names[t::8], action)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors

    in_threads(lambda n: node.start_executable(
        ExecutableSpec(n, f"echo I am {n}; exec sleep 1000", cell="web"), "s"))
    statuses = {n: node.read_shim_status(n) for n in names}
    children = {s.child_pid for s in statuses.values() if s is not None and is_running(s)}
    assert len(children) == len(names)  # every one runs, each its own process
    for n in names:
        assert node.cgroups.leaf("web", f"_x.{n}") and children & leafops.pids(
            node.cgroups.leaf("web", f"_x.{n}"))
        wait_for(lambda n=n: f"I am {n}" in log_text(node, n))
    in_threads(lambda n: node.stop_executable(n, forget=True))
    assert node.cgroups.pids("web") == set()
    assert not any(is_same_process(p, proc_start_time(p) or -1) for p in children)


def test_launch_errors_stay_clear_and_leave_nothing(node: NodeLayer, tmp_path: Path) -> None:
    node.allocate_cell(CellSpec("web"), "s")
    with pytest.raises(FailedPrecondition, match=r"working_dir '/no/such/dir': No such file"):
        node.start_executable(ExecutableSpec("lost", "true", cell="web",
                                             working_dir="/no/such/dir"), "s")
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(FailedPrecondition, match=r"working_dir .*Not a directory"):
        node.start_executable(ExecutableSpec("lost", "true", cell="web",
                                             working_dir=str(a_file)), "s")
    assert not node.is_running("lost") and node.cgroups.pids("web") == set()
    status = node.read_shim_status("lost")
    assert status is not None and status.state == "failed"
    assert wait_gone(status.shim_pid, status.shim_start_time, 2.0)
    # The failed start consumed a spare: the next one still works.
    ok = node.start_executable(ExecutableSpec("lost", "exec sleep 1000", cell="web"), "s")
    assert ok.state == "running" and is_running(ok)


def test_user_directory_environment_and_restarts_through_a_spare(node: NodeLayer) -> None:
    node.allocate_cell(CellSpec("web"), "s")
    script = 'id -u; id -g; pwd; echo "$FOO"; echo "${PYTEST_CURRENT_TEST:-clean}"; sleep 0.05'
    node.start_executable(ExecutableSpec(
        "who", script, cell="web", env=(("FOO", "bar baz"),), working_dir="/usr", uid=65534,
        restart_policy=RestartPolicy.ALWAYS), "s")
    wait_for(lambda: (s := node.read_shim_status("who")) is not None and s.restart_count >= 3)
    lines = log_text(node, "who").splitlines()
    assert lines[:5] == ["65534", "65534", "/usr", "bar baz", "clean"]
    assert lines.count("/usr") >= 3  # restarted runs (forked on demand) are the same
    final = node.stop_executable("who")
    assert final is not None and final.state == "stopped"


def test_a_spec_too_large_for_one_message_goes_by_file(node: NodeLayer) -> None:
    node.allocate_cell(CellSpec("web"), "s")
    big = "x" * 100_000
    node.start_executable(ExecutableSpec(
        "big", f": {big}; echo ${{#BIG}}; exec sleep 1000", cell="web",
        env=(("BIG", "y" * 60_000),)), "s")
    wait_for(lambda: "60000" in log_text(node, "big"))
    assert node.stop_executable("big") is not None
