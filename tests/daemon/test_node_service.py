"""provisioner.v1.NodeService through a real channel on a real node: GetState, Plan and
Apply creating cells and processes, refusals with their codes, drivers as resources."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from provisioner import serde
from provisioner._proto.provisioner.v1 import node_pb2 as npb
from provisioner._proto.provisioner.v1 import node_pb2_grpc as ngrpc
from provisioner.events import EventType
from provisioner.executors.remote import RemoteExecutor
from provisioner.model import (
    CellLimits,
    CellSpec,
    DesiredState,
    DriverSpec,
    ExecutableSpec,
    ResourceSpec,
)
from provisioner.node.process.procs import is_same_process
from provisioner.node.state.drivers import DriverKey, DriverStore, sha256_file
from tests.daemon.node_harness import Daemon, code_of, details_of, rpc_error, running_daemon

pytestmark = pytest.mark.kernel


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path) as running:
        yield running


def stub(daemon: Daemon) -> ngrpc.NodeServiceStub:
    return ngrpc.NodeServiceStub(daemon.channel)  # type: ignore[no-untyped-call]


def plan(daemon: Daemon, specs: list[ResourceSpec], **options: object) -> npb.Plan:
    request = npb.PlanRequest(resources=[serde.spec_to_proto(s) for s in specs],
                              manifest_set="app", **options)  # type: ignore[arg-type]
    response: npb.PlanResponse = stub(daemon).Plan(request, timeout=30)
    return response.plan


def apply(daemon: Daemon, pb: npb.Plan) -> list[npb.ApplyEvent]:
    return list(stub(daemon).Apply(npb.ApplyRequest(plan=pb, parallelism=4), timeout=60))


def state(daemon: Daemon) -> dict[str, npb.ObservedResource]:
    response = stub(daemon).GetState(npb.GetStateRequest(), timeout=10)
    return {f"{r.resource.kind}/{r.resource.metadata.name}": r
            for r in response.state.resources}


APP: list[ResourceSpec] = [
    CellSpec("box", CellLimits(cpu_weight=300)),
    ExecutableSpec("sleeper", "sleep 1000", cell="box", stop_grace_s=1.0),
    ExecutableSpec("other", "sleep 1000", stop_grace_s=1.0),
]


def test_plan_apply_state_round_trip_on_a_real_node(daemon: Daemon) -> None:
    assert state(daemon) == {}
    first = plan(daemon, APP)
    assert first.generation == 0 and first.manifest_set == "app"
    assert [(s.action, s.kind, s.name) for s in first.steps] == [
        (npb.STEP_ACTION_ALLOCATE, "Cell", "box"),
        (npb.STEP_ACTION_START, "Executable", "sleeper"),
        (npb.STEP_ACTION_START, "Executable", "other")]
    assert state(daemon) == {}  # planning changes nothing
    events = apply(daemon, first)
    kinds = [e.type for e in events]
    assert kinds[-1] == npb.APPLY_EVENT_TYPE_SUMMARY and kinds.count(kinds[-1]) == 1
    assert kinds.count(npb.APPLY_EVENT_TYPE_STEP_SUCCEEDED) == 3
    for index in range(3):  # each step starts before it succeeds
        mine = [e.type for e in events if e.HasField("step") and e.step.index == index]
        assert mine == [npb.APPLY_EVENT_TYPE_STEP_STARTED, npb.APPLY_EVENT_TYPE_STEP_SUCCEEDED]
    summary = events[-1].summary
    assert (summary.created, summary.failed) == (3, 0) and summary.generation > 0
    now = state(daemon)
    assert set(now) == {"Cell/box", "Executable/sleeper", "Executable/other"}
    sleeper = now["Executable/sleeper"]
    assert sleeper.process_state == npb.PROCESS_STATE_RUNNING
    assert is_same_process(sleeper.pid, sleeper.pid_start_time)
    assert sleeper.pid in daemon.layer.cgroups.pids("box")
    assert now["Cell/box"].resource.cell.cpu.weight == 300
    assert plan(daemon, APP).steps == []  # converged: nothing to do
    # A stale plan is refused as a status before any event, and changes nothing.
    stream = stub(daemon).Apply(npb.ApplyRequest(plan=first), timeout=60)
    error = rpc_error(lambda: next(stream))  # the very first read: no event came before
    assert code_of(error) is grpc.StatusCode.FAILED_PRECONDITION
    assert "the plan was made at node generation 0" in details_of(error)
    assert state(daemon)["Executable/sleeper"].pid == sleeper.pid
    # Destroy takes everything of the set down, processes included.
    events = apply(daemon, plan(daemon, [], destroy=True))
    assert events[-1].summary.deleted == 3
    assert state(daemon) == {} and daemon.layer.cgroups.list_cells() == []
    assert not is_same_process(sleeper.pid, sleeper.pid_start_time)


def test_invalid_resources_are_invalid_argument_listing_every_error(daemon: Daemon) -> None:
    bad: list[ResourceSpec] = [CellSpec("box", CellLimits(cpu_weight=0, cpuset_cpus="5-1")),
           ExecutableSpec("e", "true", cell="missing"), ExecutableSpec("e", "true")]
    error = rpc_error(lambda: plan(daemon, bad))
    assert code_of(error) is grpc.StatusCode.INVALID_ARGUMENT
    text = details_of(error)
    assert text.startswith("invalid resources: 4 validation error(s):")
    assert "request:resources[0]:" in text and "spec.cpu.weight" in text
    assert "spec.cpuset.cpus" in text
    assert "cell 'missing' is not declared" in text
    assert "request:resources[2]:" in text and "duplicate Executable/e" in text


def test_apply_refuses_a_plan_with_an_invalid_step_resource(daemon: Daemon) -> None:
    good = plan(daemon, APP[:1])
    good.steps[0].resource.cell.cpu.weight = 0
    error = rpc_error(lambda: apply(daemon, good))
    assert code_of(error) is grpc.StatusCode.INVALID_ARGUMENT
    assert "request:plan.steps[0]" in details_of(error)
    good.steps[0].resource.cell.cpu.weight = 5
    good.format_version = 7
    error = rpc_error(lambda: apply(daemon, good))
    assert code_of(error) is grpc.StatusCode.INVALID_ARGUMENT
    assert state(daemon) == {}


def test_a_failed_step_is_an_event_and_the_stream_still_ends_with_the_summary(
        daemon: Daemon) -> None:
    broken = ExecutableSpec("broken", "true", working_dir="/no/such/dir")
    events = apply(daemon, plan(daemon, [broken]))
    assert [e.type for e in events] == [npb.APPLY_EVENT_TYPE_STEP_STARTED,
                                        npb.APPLY_EVENT_TYPE_STEP_FAILED,
                                        npb.APPLY_EVENT_TYPE_SUMMARY]
    assert "/no/such/dir" in events[1].message and events[2].summary.failed == 1


def test_a_driver_is_pushed_observed_and_re_pushed_after_drift(daemon: Daemon,
                                                               tmp_path: Path) -> None:
    source = tmp_path / "raft.so"
    source.write_bytes(os.urandom(50_000))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    driver = DriverSpec("raft", "1.0", "2", str(source), digest)
    events = apply(daemon, plan(daemon, [driver]))
    assert events[-1].summary.created == 1, events
    store = DriverStore(daemon.layer.config.state_dir)
    key = DriverKey("raft", "1.0", "2")
    with store.open(key) as handle:
        assert handle.read() == source.read_bytes()
    assert state(daemon)["Driver/raft"].present
    os.unlink(store.path(key))
    observed = state(daemon)["Driver/raft"]
    assert not observed.present and list(observed.drift) == ["stored driver file is missing"]
    again = plan(daemon, [driver])
    assert [s.action for s in again.steps] == [npb.STEP_ACTION_PUSH]
    apply(daemon, again)
    assert store.exists(key)
    newer = DriverSpec("raft", "1.1", "2", str(source), digest)  # the old version goes
    apply(daemon, plan(daemon, [newer]))
    assert not store.exists(key) and store.exists(DriverKey("raft", "1.1", "2"))
    events = apply(daemon, plan(daemon, [], destroy=True))
    assert events[-1].summary.deleted == 1 and state(daemon) == {}
    assert not (Path(store.root) / "raft").exists()


def test_a_driver_file_the_node_does_not_have_is_pushed_by_the_client(
        daemon: Daemon, tmp_path: Path) -> None:
    """The client's file goes through the registry before the apply, so the daemon
    never needs to see it (here the file is deleted between push and apply)."""
    source = tmp_path / "client" / "raft.so"
    source.parent.mkdir()
    source.write_bytes(os.urandom(3 * (1 << 20) + 5))  # several registry chunks
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    driver = DriverSpec("raft", "1.0", "2", str(source), digest)
    with RemoteExecutor(daemon.target) as remote:
        pushed = remote.plan(DesiredState((driver,), "drivers"))
        remote.push_driver_files(pushed)
        source.unlink()  # the daemon cannot read it from here on
        events = list(remote.apply(pushed))
        assert events[-1].summary is not None and events[-1].summary.created == 1
        store = DriverStore(daemon.layer.config.state_dir)
        assert sha256_file(store.path(DriverKey("raft", "1.0", "2"))) == digest
        # A file neither on the node nor pushed: planned (its SHA-256 names it), but
        # the apply says what is missing and records nothing.
        ghost = DriverSpec("ghost", "1.0", "2", str(tmp_path / "nowhere.so"), "ab" * 32)
        missing = remote.plan(DesiredState((driver, ghost), "drivers"))
        failed = [e for e in remote.apply(missing) if e.type is EventType.STEP_FAILED]
        assert len(failed) == 1 and "pushes the file first" in failed[0].message
    assert "Driver/ghost" not in state(daemon)


def test_two_applies_of_one_plan_at_once_run_one_and_refuse_the_other(
        daemon: Daemon) -> None:
    both = plan(daemon, [CellSpec(f"c{i}") for i in range(20)])
    outcomes: list[object] = []

    def run() -> None:
        try:
            outcomes.append(apply(daemon, both)[-1].summary.created)
        except grpc.RpcError as exc:
            outcomes.append(code_of(exc))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes, key=str) == sorted([20, grpc.StatusCode.FAILED_PRECONDITION],
                                               key=str)
    assert len(daemon.layer.cgroups.list_cells()) == 20


def test_plan_accepts_references_to_resources_the_node_has_in_other_sets(
        daemon: Daemon) -> None:
    def plan_in(manifest_set: str, specs: list[ResourceSpec], destroy: bool = False) -> npb.Plan:
        request = npb.PlanRequest(resources=[serde.spec_to_proto(s) for s in specs],
                                  manifest_set=manifest_set, destroy=destroy)
        response: npb.PlanResponse = stub(daemon).Plan(request, timeout=30)
        return response.plan

    apply(daemon, plan_in("cell.box", [CellSpec("box")]))
    sleeper = ExecutableSpec("sleeper", "sleep 1000", cell="box", stop_grace_s=1.0)
    own = plan_in("executable.sleeper", [sleeper])
    assert [(s.action, s.kind, s.name) for s in own.steps] == [
        (npb.STEP_ACTION_START, "Executable", "sleeper")]  # the cell of the other set stays
    assert apply(daemon, own)[-1].summary.created == 1
    now = state(daemon)
    assert now["Executable/sleeper"].pid in daemon.layer.cgroups.pids("box")
    assert now["Executable/sleeper"].manifest_set == "executable.sleeper"
    assert now["Cell/box"].manifest_set == "cell.box"
    # A cell the node does not have is still refused, saying so.
    error = rpc_error(lambda: plan_in("x", [ExecutableSpec("lost", "true", cell="missing")]))
    assert code_of(error) is grpc.StatusCode.INVALID_ARGUMENT
    assert ("spec.cell: cell 'missing' is not declared by any document and does not exist "
            "on the node") in details_of(error)
    # The cell's set cannot remove it while the other set's executable runs in it.
    error = rpc_error(lambda: plan_in("cell.box", [], destroy=True))
    assert code_of(error) is grpc.StatusCode.FAILED_PRECONDITION
    assert "Executable/sleeper of manifest set 'executable.sleeper' runs in it" in \
        details_of(error)
    assert apply(daemon, plan_in("executable.sleeper", [], destroy=True))[-1].summary.deleted == 1
    assert apply(daemon, plan_in("cell.box", [], destroy=True))[-1].summary.deleted == 1
    assert state(daemon) == {}
