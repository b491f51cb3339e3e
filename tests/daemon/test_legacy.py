"""First-generation Aurae through a real channel: runtime.Runtime.Exec and the schedule
services (persistent executables), including restarts and a simulated daemon restart."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from provisioner._proto.aurae.observe.v0 import observe_pb2 as ob
from provisioner._proto.aurae.observe.v0 import observe_pb2_grpc as ob_grpc
from provisioner._proto.aurae.runtime.v0 import runtime_pb2 as v0
from provisioner._proto.aurae.runtime.v0 import runtime_pb2_grpc as v0_grpc
from provisioner._proto.meta import meta_pb2
from provisioner._proto.runtime import runtime_pb2 as rpb
from provisioner._proto.runtime import runtime_pb2_grpc as rpb_grpc
from provisioner._proto.schedule import schedule_pb2 as spb
from provisioner._proto.schedule import schedule_pb2_grpc as spb_grpc
from provisioner.daemon.legacy import EXEC_LEAF_PREFIX, MAX_OUTPUT_BYTES
from provisioner.daemon.services import on_start
from provisioner.model import ExecutableSpec, Kind, PersistentExecutableSpec
from provisioner.node.process import leaf as leafops
from provisioner.node.process.procs import process_alive
from provisioner.node.runtime.persistent import declare, list_persistent, restart_enabled
from tests.daemon.aurae_harness import Daemon, code_of, details_of, running_daemon, wait_for

pytestmark = pytest.mark.kernel
C = grpc.StatusCode


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path) as d:
        yield d


def exec_(daemon: Daemon, command: str, timeout: float | None = None,
          name: str = "") -> rpb.ExecutableStatus:
    stub = rpb_grpc.RuntimeStub(daemon.channel)
    reply: rpb.ExecutableStatus = stub.Exec(
        rpb.Executable(meta=meta_pb2.AuraeMeta(name=name), command=command), timeout=timeout)
    return reply


def exec_leaves(daemon: Daemon) -> list[str]:
    root = daemon.layer.cgroups.cell_dirs("")[0]
    return [n for n in os.listdir(root) if n.startswith(EXEC_LEAF_PREFIX)]


def test_exec_returns_output_exit_code_and_status(daemon: Daemon) -> None:
    ok = exec_(daemon, "echo 'a b' | tr a-z A-Z; echo warn >&2", name="shout")
    assert (ok.stdout, ok.stderr, ok.exit_code) == ("A B\n", "warn\n", "0")
    assert ok.status == meta_pb2.STATUS_COMPLETE and ok.proc.pid > 0
    assert ok.meta.name == "shout" and ok.meta.message == "exited with 0"
    assert exec_(daemon, "cat; echo done").stdout == "done\n"  # stdin is empty
    failed = exec_(daemon, "echo partial; exit 3")
    assert (failed.stdout, failed.exit_code, failed.status) == (
        "partial\n", "3", meta_pb2.STATUS_ERROR)
    killed = exec_(daemon, "kill -9 $$")
    assert (killed.exit_code, killed.status) == ("-9", meta_pb2.STATUS_ERROR)
    assert killed.meta.message == "killed by signal 9"
    # It ran in a leaf of the daemon's root cell, which is gone afterwards.
    where = exec_(daemon, "cat /proc/self/cgroup").stdout
    assert f"/{daemon.layer.config.cgroup_root}/{EXEC_LEAF_PREFIX}" in where
    assert exec_leaves(daemon) == []
    assert code_of(lambda: exec_(daemon, "  ")) is C.INVALID_ARGUMENT


def test_exec_leaves_nothing_behind_and_bounds_output(daemon: Daemon) -> None:
    reply = exec_(daemon, "sleep 60 & echo $!")
    child = int(reply.stdout)
    wait_for(lambda: not process_alive(child), what="the background child to be killed")
    big = exec_(daemon, f"head -c {MAX_OUTPUT_BYTES + 1000} /dev/zero | tr '\\0' a")
    assert big.stdout.startswith("a" * MAX_OUTPUT_BYTES)
    assert big.stdout.endswith("output truncated: 1000 more bytes were dropped")
    assert big.exit_code == "0"


def test_exec_deadline_kills_the_whole_tree(daemon: Daemon, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = f"sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait"
    began = time.monotonic()
    assert code_of(lambda: exec_(daemon, command, timeout=0.7)) is C.DEADLINE_EXCEEDED
    assert time.monotonic() - began < 3
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2)
    for pid in map(int, pids.read_text().split()):
        wait_for(lambda pid=pid: not process_alive(pid), what=f"pid {pid} to be killed")
    wait_for(lambda: exec_leaves(daemon) == [], what="the Exec leaf to be removed")


def enable(daemon: Daemon, name: str, command: str = "", comment: str = "") -> str:
    stub = spb_grpc.ScheduleExecutableStub(daemon.channel)
    reply = stub.Enable(rpb.Executable(meta=meta_pb2.AuraeMeta(name=name), command=command,
                                       comment=comment))
    message: str = reply.meta.message
    return message


def shown(daemon: Daemon, enabled: bool) -> list[tuple[str, str, str, str]]:
    stub = spb_grpc.ScheduleStub(daemon.channel)
    reply = (stub.ShowEnabled(spb.ShowEnabledRequest()) if enabled
             else stub.ShowDisabled(spb.ShowDisabledRequest()))
    return [(e.meta.name, e.command, e.comment, e.meta.message) for e in reply.Executables]


def child_pid(daemon: Daemon, name: str) -> int | None:
    status = daemon.layer.read_shim_status(name)
    return status.child_pid if status is not None and daemon.layer.is_running(name) else None


def test_enable_disable_destroy_and_show(daemon: Daemon) -> None:
    layer = daemon.layer
    sched = spb_grpc.ScheduleExecutableStub(daemon.channel)
    assert enable(daemon, "ticker", "exec sleep 60", "keeps time").startswith("enabled")
    pid = child_pid(daemon, "ticker")
    assert pid is not None
    assert shown(daemon, True) == [("ticker", "exec sleep 60", "keeps time", "running")]
    assert shown(daemon, False) == []
    # One resource of kind PersistentExecutable, no Executable record next to it.
    assert layer.store.get_resource(Kind.PERSISTENT_EXECUTABLE, "ticker") is not None
    assert layer.store.get_resource(Kind.EXECUTABLE, "ticker") is None
    enable(daemon, "ticker", "exec sleep 60", "keeps time")  # idempotent: same process
    assert child_pid(daemon, "ticker") == pid

    request = rpb.Executable(meta=meta_pb2.AuraeMeta(name="ticker"))
    assert sched.Disable(request).meta.message == "disabled"
    wait_for(lambda: not process_alive(pid))
    assert shown(daemon, False) == [("ticker", "exec sleep 60", "keeps time", "disabled")]
    assert shown(daemon, True) == []
    sched.Disable(request)  # disabling twice is fine
    enable(daemon, "ticker")  # no command: re-enabled as registered
    assert child_pid(daemon, "ticker") not in (None, pid)

    enable(daemon, "ticker", "exec sleep 61")  # a new command replaces the process
    assert shown(daemon, True)[0][1] == "exec sleep 61"
    assert sched.Destroy(request).meta.message == "destroyed"
    assert shown(daemon, True) == shown(daemon, False) == []
    assert layer.store.get_process("ticker") is None
    assert code_of(lambda: sched.Destroy(request)) is C.NOT_FOUND
    assert code_of(lambda: sched.Disable(request)) is C.NOT_FOUND
    assert code_of(lambda: enable(daemon, "ticker")) is C.INVALID_ARGUMENT  # no command
    for bad in ["", "a_b", "-x", "a/b"]:
        assert code_of(lambda bad=bad: enable(daemon, bad, "true")) is C.INVALID_ARGUMENT
        assert code_of(lambda bad=bad: sched.Disable(rpb.Executable(
            meta=meta_pb2.AuraeMeta(name=bad)))) is C.INVALID_ARGUMENT


def test_an_enabled_one_is_restarted_when_it_dies(daemon: Daemon) -> None:
    enable(daemon, "phoenix", "exec sleep 60")
    first = child_pid(daemon, "phoenix")
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: child_pid(daemon, "phoenix") not in (None, first),
             what="the restart after back-off")


def test_restart_enabled_after_a_daemon_restart(daemon: Daemon) -> None:
    layer = daemon.layer
    enable(daemon, "keeper", "exec sleep 60")
    enable(daemon, "resting", "exec sleep 60")
    spb_grpc.ScheduleExecutableStub(daemon.channel).Disable(
        rpb.Executable(meta=meta_pb2.AuraeMeta(name="resting")))
    # The daemon restarts while the shims run on: nothing to do, nothing restarted.
    running = child_pid(daemon, "keeper")
    assert restart_enabled(layer) == []
    assert child_pid(daemon, "keeper") == running
    # The node rebooted: every process is gone. The next daemon start brings it back.
    layer.stop_executable("keeper")
    assert child_pid(daemon, "keeper") is None
    on_start(daemon.ctx)
    assert child_pid(daemon, "keeper") not in (None, running)
    assert child_pid(daemon, "resting") is None  # disabled stays down
    assert sorted((s.name, s.enabled, up) for s, up in list_persistent(layer)) == [
        ("keeper", True, True), ("resting", False, False)]


def test_executables_and_persistent_executables_share_names(daemon: Daemon) -> None:
    cells = v0_grpc.CellServiceStub(daemon.channel)
    enable(daemon, "shared", "exec sleep 60")
    start = v0.CellServiceStartRequest(executable=v0.Executable(name="shared", command="true"))
    assert code_of(lambda: cells.Start(start)) is C.ALREADY_EXISTS
    assert "persistent executable" in details_of(lambda: cells.Start(start))
    stop = v0.CellServiceStopRequest(executable_name="shared")
    assert code_of(lambda: cells.Stop(stop)) is C.FAILED_PRECONDITION

    daemon.layer.start_executable(ExecutableSpec("plain", "exec sleep 60"))
    assert code_of(lambda: enable(daemon, "plain", "true")) is C.ALREADY_EXISTS
    assert "an executable named 'plain'" in details_of(lambda: enable(daemon, "plain", "true"))
    disable = rpb.Executable(meta=meta_pb2.AuraeMeta(name="plain"))
    assert code_of(lambda: spb_grpc.ScheduleExecutableStub(daemon.channel).Disable(disable)
                   ) is C.NOT_FOUND


def test_a_restarted_one_is_streamed_by_its_old_and_new_pid(daemon: Daemon) -> None:
    enable(daemon, "reborn", "echo alive; exec sleep 60")
    first = child_pid(daemon, "reborn")
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: child_pid(daemon, "reborn") not in (None, first))
    second = child_pid(daemon, "reborn")
    observe = ob_grpc.ObserveServiceStub(daemon.channel)
    for pid in (first, second):
        stream = observe.GetSubProcessStream(ob.GetSubProcessStreamRequest(process_id=pid))
        # both runs said it; waiting lines may come coalesced in one item
        assert next(stream).line.split("\n")[0] == "alive"
        stream.cancel()


def test_on_start_removes_leftover_exec_leaves(daemon: Daemon) -> None:
    leaf = daemon.layer.cgroups.create_leaf("", f"{EXEC_LEAF_PREFIX}crashed")
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        leafops.attach(leaf, orphan.pid)
        on_start(daemon.ctx)
        assert orphan.wait(timeout=5) == -signal.SIGKILL
        assert exec_leaves(daemon) == []
    finally:
        orphan.kill()
        orphan.wait()


def test_declare_registers_a_disabled_one_without_starting_it(daemon: Daemon) -> None:
    layer = daemon.layer
    declare(layer, PersistentExecutableSpec("later", "exec sleep 60", enabled=False), "site")
    assert layer.read_shim_status("later") is None  # never started
    assert shown(daemon, False) == [("later", "exec sleep 60", "", "disabled")]
    record = layer.store.get_resource(Kind.PERSISTENT_EXECUTABLE, "later")
    assert record is not None and record.manifest_set == "site"
    declare(layer, PersistentExecutableSpec("later", "exec sleep 60"), "site")
    assert child_pid(daemon, "later") is not None
    declare(layer, PersistentExecutableSpec("later", "exec sleep 60", enabled=False), "site")
    assert child_pid(daemon, "later") is None
