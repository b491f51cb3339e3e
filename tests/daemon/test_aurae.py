"""aurae.runtime.v0 CellService / PodService, aurae.runtime.pod.v0 and aurae.discovery.v0
through a real channel, against the real kernel."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import provisioner
from provisioner._proto.aurae.discovery.v0 import discovery_pb2, discovery_pb2_grpc
from provisioner._proto.aurae.runtime.pod.v0 import pod_pb2, pod_pb2_grpc
from provisioner._proto.aurae.runtime.v0 import runtime_pb2 as pb
from provisioner._proto.aurae.runtime.v0 import runtime_pb2_grpc as pb_grpc
from provisioner.model import CellLimits, CellSpec, Kind
from provisioner.node.cgroups.layout import OWNER_XATTR
from provisioner.node.process.procs import process_alive
from provisioner.node.state.store import ProcessState
from tests.daemon.aurae_harness import Daemon, code_of, details_of, running_daemon, wait_for

pytestmark = pytest.mark.kernel
C = grpc.StatusCode


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path) as d:
        yield d


@pytest.fixture
def cells(daemon: Daemon) -> pb_grpc.CellServiceStub:
    return pb_grpc.CellServiceStub(daemon.channel)


def allocate(cells: pb_grpc.CellServiceStub, name: str, **fields: object
             ) -> pb.CellServiceAllocateResponse:
    return cells.Allocate(pb.CellServiceAllocateRequest(cell=pb.Cell(name=name, **fields)))


def start(cells: pb_grpc.CellServiceStub, name: str, command: str,
          cell: str | None = None) -> int:
    request = pb.CellServiceStartRequest(executable=pb.Executable(name=name, command=command))
    if cell is not None:
        request.cell_name = cell
    pid: int = cells.Start(request).pid
    return pid


def cgroup_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


def test_allocate_start_stop_free_round_trip(daemon: Daemon,
                                             cells: pb_grpc.CellServiceStub) -> None:
    layer, root = daemon.layer, daemon.layer.config.cgroup_root
    reply = allocate(cells, "web", cpu=pb.CpuController(weight=200, max=500_000))
    assert reply.cell_name == "web"
    assert reply.cgroup_v2 is layer.cgroup_v2
    record = layer.store.get_resource(Kind.CELL, "web")
    assert record is not None and record.manifest_set == ""
    assert layer.cgroups.read_limits("web") == CellLimits(cpu_weight=200, cpu_max_us=500_000)
    allocate(cells, "web/cache")  # nested in an existing parent

    pid = start(cells, "server", "echo started; exec sleep 60", cell="web/cache")
    assert pid > 0 and process_alive(pid)
    assert f"/{root}/web/cache/_x.server" in cgroup_of(pid)
    wait_for(lambda: layer.store.get_process("server") is not None)

    cells.Stop(pb.CellServiceStopRequest(cell_name="web/cache", executable_name="server"))
    wait_for(lambda: not process_alive(pid), what="the process to end")
    stopped = layer.store.get_process("server")
    assert stopped is not None and stopped.state is ProcessState.STOPPED
    assert stopped.exit_signal == 15 or stopped.exit_code is not None  # exit status kept

    cells.Free(pb.CellServiceFreeRequest(cell_name="web"))  # nested cells go with it
    assert not layer.cgroups.exists("web")
    assert layer.store.get_resource(Kind.CELL, "web/cache") is None


def test_start_without_cell_runs_in_the_root_cell(daemon: Daemon,
                                                  cells: pb_grpc.CellServiceStub) -> None:
    pid = start(cells, "rooted", "exec sleep 60")
    assert f"/{daemon.layer.config.cgroup_root}/_x.rooted" in cgroup_of(pid)
    # Already running: a second Start is refused; Stop must name the cell it runs in.
    assert code_of(lambda: start(cells, "rooted", "sleep 1")) is C.ALREADY_EXISTS
    allocate(cells, "other")
    assert code_of(lambda: cells.Stop(pb.CellServiceStopRequest(
        cell_name="other", executable_name="rooted"))) is C.NOT_FOUND
    cells.Stop(pb.CellServiceStopRequest(executable_name="rooted"))
    wait_for(lambda: not process_alive(pid))
    # An executable that ended may be started again under its name.
    assert start(cells, "rooted", "exec sleep 60") != pid


def test_allocate_is_idempotent_and_conflicts_are_already_exists(
        daemon: Daemon, cells: pb_grpc.CellServiceStub) -> None:
    layer = daemon.layer
    allocate(cells, "db", cpu=pb.CpuController(weight=50), cpuset=pb.CpusetController(cpus="0"))
    generation = layer.store.generation()
    reply = allocate(cells, "db", cpu=pb.CpuController(weight=50),
                     cpuset=pb.CpusetController(cpus="0-0"))  # the same set of cpus
    assert reply.cell_name == "db"
    assert layer.store.generation() == generation  # nothing changed
    assert code_of(lambda: allocate(cells, "db", cpu=pb.CpuController(weight=51))
                   ) is C.ALREADY_EXISTS
    assert code_of(lambda: allocate(cells, "db", cpu=pb.CpuController(weight=50),
                                    cpuset=pb.CpusetController(cpus="0"),
                                    isolate_network=True)) is C.ALREADY_EXISTS

    # A cell a manifest made keeps its record when the raw API allocates it identically.
    layer.allocate_cell(CellSpec("managed", labels=(("team", "a"),)), "site")
    allocate(cells, "managed")
    record = layer.store.get_resource(Kind.CELL, "managed")
    assert record is not None and record.manifest_set == "site" and "team" in record.spec_json


def test_not_found(daemon: Daemon, cells: pb_grpc.CellServiceStub) -> None:
    assert code_of(lambda: cells.Free(pb.CellServiceFreeRequest(cell_name="nope"))
                   ) is C.NOT_FOUND
    assert code_of(lambda: cells.Stop(pb.CellServiceStopRequest(executable_name="nope"))
                   ) is C.NOT_FOUND
    assert code_of(lambda: start(cells, "x", "true", cell="nope")) is C.NOT_FOUND
    assert code_of(lambda: allocate(cells, "nope/child")) is C.NOT_FOUND  # no parent


@pytest.mark.parametrize("name", ["", "a_b", "../etc", "-a", "a/", "a//b", "x" * 64, "a b"])
def test_bad_cell_names_are_invalid_argument(cells: pb_grpc.CellServiceStub,
                                             name: str) -> None:
    assert code_of(lambda: allocate(cells, name)) is C.INVALID_ARGUMENT
    assert code_of(lambda: cells.Free(pb.CellServiceFreeRequest(cell_name=name))
                   ) is C.INVALID_ARGUMENT
    if name:  # an empty cell_name on Start means the root cell
        assert code_of(lambda: start(cells, "ok", "true", cell=name)) is C.INVALID_ARGUMENT


def test_bad_requests_are_invalid_argument(cells: pb_grpc.CellServiceStub) -> None:
    bad = [
        lambda: cells.Allocate(pb.CellServiceAllocateRequest()),  # no cell
        lambda: allocate(cells, "c", cpu=pb.CpuController(weight=0)),
        lambda: allocate(cells, "c", cpu=pb.CpuController(weight=10_001)),
        lambda: allocate(cells, "c", cpu=pb.CpuController(max=999)),  # kernel minimum
        lambda: allocate(cells, "c", cpu=pb.CpuController(max=-1)),
        lambda: allocate(cells, "c", cpuset=pb.CpusetController(cpus="5-1")),
        lambda: allocate(cells, "c", cpuset=pb.CpusetController(mems="")),
        lambda: cells.Start(pb.CellServiceStartRequest()),  # no executable
        lambda: start(cells, "bad name", "true"),
        lambda: start(cells, "", "true"),
        lambda: start(cells, "empty", "   "),
        lambda: cells.Stop(pb.CellServiceStopRequest(executable_name="no/slash")),
        lambda: cells.Stop(pb.CellServiceStopRequest(executable_name="")),
    ]
    for call in bad:
        assert code_of(call) is C.INVALID_ARGUMENT


def test_a_foreign_cgroup_is_failed_precondition(daemon: Daemon,
                                                 cells: pb_grpc.CellServiceStub) -> None:
    foreign = os.path.join(daemon.layer.cgroups.cell_dirs("")[0], "foreign")
    os.mkdir(foreign)  # made behind the provisioner's back: no ownership mark
    try:
        assert code_of(lambda: allocate(cells, "foreign")) is C.FAILED_PRECONDITION
        assert code_of(lambda: cells.Free(pb.CellServiceFreeRequest(cell_name="foreign"))
                       ) is C.FAILED_PRECONDITION
        assert os.path.isdir(foreign)  # untouched
    finally:
        os.rmdir(foreign)


def test_pod_services_answer_as_documented(daemon: Daemon) -> None:
    pods = pb_grpc.PodServiceStub(daemon.channel)
    undeclared = [
        lambda: pods.Allocate(pb.PodServiceAllocateRequest(pod=pb.Pod(name="web"))),
        lambda: pods.Start(pb.PodServiceStartRequest(name="web")),
        lambda: pods.Stop(pb.PodServiceStopRequest(pod_name="web", container_name="nginx")),
    ]
    for call in undeclared:  # a Pod message has only a name: a manifest declares it
        assert code_of(call) is C.NOT_FOUND
        assert "declare its containers with a Pod manifest" in details_of(call)
    free = lambda: pods.Free(pb.PodServiceFreeRequest())  # noqa: E731
    assert code_of(free) is C.FAILED_PRECONDITION and "names no pod" in details_of(free)
    for call in [lambda: pods.Allocate(pb.PodServiceAllocateRequest()),
                 lambda: pods.Allocate(pb.PodServiceAllocateRequest(pod=pb.Pod(name="a_b"))),
                 lambda: pods.Start(pb.PodServiceStartRequest(name="")),
                 lambda: pods.Stop(pb.PodServiceStopRequest(pod_name="ok",
                                                            container_name="-bad"))]:
        assert code_of(call) is C.INVALID_ARGUMENT  # bad input is reported first

    named = (("pod", "web"),)
    named_free = lambda: pods.Free(pb.PodServiceFreeRequest(), metadata=named)  # noqa: E731
    assert code_of(named_free) is C.NOT_FOUND  # the metadata names it: not declared

    # aurae.runtime.pod.v0: empty messages; the metadata names the pod, or the node's
    # only one is meant. This node declares none.
    v0 = pod_pb2_grpc.PodServiceStub(daemon.channel)
    calls = [lambda md: v0.Allocate(pod_pb2.PodServiceAllocateRequest(), metadata=md),
             lambda md: v0.Start(pod_pb2.PodServiceStartRequest(), metadata=md),
             lambda md: v0.Stop(pod_pb2.PodServiceStopRequest(), metadata=md),
             lambda md: v0.Free(pod_pb2.PodServiceFreeRequest(), metadata=md)]
    for call in calls:
        assert code_of(functools.partial(call, ())) is C.FAILED_PRECONDITION
        assert "'pod: <name>'" in details_of(functools.partial(call, ()))
        assert code_of(functools.partial(call, named)) is C.NOT_FOUND
        for bad in ((("pod", "a_b"),), (("pod", "x"), ("pod", "y"))):
            assert code_of(functools.partial(call, bad)) is C.INVALID_ARGUMENT
    stop_bad = lambda: v0.Stop(pod_pb2.PodServiceStopRequest(),  # noqa: E731
                               metadata=(("pod", "web"), ("container", "-bad")))
    assert code_of(stop_bad) is C.INVALID_ARGUMENT


def test_discover_reports_a_real_health_check(daemon: Daemon) -> None:
    discovery = discovery_pb2_grpc.DiscoveryServiceStub(daemon.channel)
    reply = discovery.Discover(discovery_pb2.DiscoverRequest())
    assert reply.healthy is True
    assert reply.version == provisioner.__version__ and reply.version
    # Take the ownership mark off the cgroup root: the node can no longer make cells.
    root = daemon.layer.cgroups.cell_dirs("")[0]
    mark = os.getxattr(root, OWNER_XATTR)
    os.removexattr(root, OWNER_XATTR)
    try:
        assert discovery.Discover(discovery_pb2.DiscoverRequest()).healthy is False
    finally:
        os.setxattr(root, OWNER_XATTR, mark)
    assert discovery.Discover(discovery_pb2.DiscoverRequest()).healthy is True
