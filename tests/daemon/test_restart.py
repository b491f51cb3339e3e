"""A daemon killed with SIGKILL while executables run: the next one adopts them, their
logs go on, and nothing is started twice (persistent executables included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from provisioner._proto.aurae.observe.v0 import observe_pb2 as ob
from provisioner._proto.aurae.observe.v0 import observe_pb2_grpc as ob_grpc
from provisioner._proto.aurae.runtime.v0 import runtime_pb2 as rt
from provisioner._proto.aurae.runtime.v0 import runtime_pb2_grpc as rt_grpc
from provisioner._proto.meta import meta_pb2
from provisioner._proto.runtime import runtime_pb2 as legacy_rt
from provisioner._proto.schedule import schedule_pb2_grpc as sched_grpc
from provisioner.node.process.procs import is_same_process, proc_start_time
from provisioner.node.runtime.layer import NodeLayer
from tests.conftest import make_config, tear_down
from tests.daemon.test_server import short_dir

pytestmark = pytest.mark.kernel


@contextmanager
def daemon_process(state_dir: str, cgroup_root: str, sock: str) -> Iterator[
        subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioner", "daemon", "--socket", sock, "--state-dir",
         state_dir, "--cgroup-root", cgroup_root], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert proc.poll() is None and time.monotonic() < deadline, "daemon did not start"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=20)


def cell_holds_only(layer: NodeLayer, cell: str, pid: int) -> bool:
    """The cell's cgroup holds PID and its children, nothing else. The shell forks a
    `sleep` every 50 ms, so the two reads agree only between forks: retry a few times
    for a snapshot in which they do (a loaded machine can interleave a fork)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for _ in range(20):
        before = set(map(int, children.read_text().split()))
        pids = layer.cgroups.pids(cell)
        if before == set(map(int, children.read_text().split())):
            return pids == {pid} | before
    return False


def counter_lines(channel: grpc.Channel, pid: int, at_least: int) -> list[int]:
    stream = ob_grpc.ObserveServiceStub(channel).GetSubProcessStream(
        ob.GetSubProcessStreamRequest(channel_type=ob.LOG_CHANNEL_TYPE_STDOUT, process_id=pid),
        timeout=20)
    numbers: list[int] = []
    for item in stream:
        numbers.extend(int(text) for text in item.line.split("\n"))
        if len(numbers) >= at_least:
            stream.cancel()
            break
    return numbers


def test_sigkilled_daemon_is_replaced_and_everything_is_adopted(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    config = make_config(tmp_path / "state")
    try:
        with short_dir() as tmp:
            sock = str(tmp / "p.sock")
            with daemon_process(config.state_dir, config.cgroup_root, sock) as first:
                with grpc.insecure_channel(f"unix://{sock}") as channel:
                    grpc.channel_ready_future(channel).result(timeout=10)
                    cells = rt_grpc.CellServiceStub(channel)
                    cells.Allocate(rt.CellServiceAllocateRequest(cell=rt.Cell(name="keep")))
                    pid = cells.Start(rt.CellServiceStartRequest(
                        cell_name="keep", executable=rt.Executable(
                            name="counter",
                            command="i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done"),
                    )).pid
                    sched_grpc.ScheduleExecutableStub(channel).Enable(legacy_rt.Executable(
                        meta=meta_pb2.AuraeMeta(name="beat"), command="sleep 1000"))
                    before = counter_lines(channel, pid, 5)
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
            start_time = proc_start_time(pid)
            assert start_time is not None and is_same_process(pid, start_time)
            layer = NodeLayer(config)
            beat_status = layer.read_shim_status("beat")
            layer.close()
            assert beat_status is not None and beat_status.child_pid is not None
            beat_pid = beat_status.child_pid
            assert os.path.exists(sock)  # left by the killed daemon: replaced, not a blocker
            with daemon_process(config.state_dir, config.cgroup_root, sock) as second, \
                    grpc.insecure_channel(f"unix://{sock}") as channel:
                grpc.channel_ready_future(channel).result(timeout=10)
                after = counter_lines(channel, pid, len(before) + 20)
                assert second.poll() is None
            # The same processes: nothing was started twice.
            assert is_same_process(pid, start_time)
            layer = NodeLayer(config)
            try:
                status = layer.read_shim_status("beat")
                assert status is not None and status.child_pid == beat_pid
                assert cell_holds_only(layer, "keep", pid)
            finally:
                layer.close()
            # Its log went on across the daemon's death: the counter only grew.
            assert after[: len(before)] == before
            assert after == list(range(1, len(after) + 1))
    finally:
        tear_down(NodeLayer(config))
