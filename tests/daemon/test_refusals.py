"""Requests the daemon refuses change nothing on the node, and say what is wrong.

Each of these failed before: a Start with a 1 MB command was FAILED_PRECONDITION after
making a leaf, a status file and a record; a refused PushDriver left empty folders;
GetLogs("../run") blamed an empty pod name; names with a trailing newline passed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from provisioner._proto.atomix.runtime.v1 import registry_pb2 as rpb
from provisioner._proto.atomix.runtime.v1 import registry_pb2_grpc as rgrpc
from provisioner._proto.aurae.runtime.v0 import runtime_pb2 as pb
from provisioner._proto.aurae.runtime.v0 import runtime_pb2_grpc as pb_grpc
from provisioner._proto.provisioner.v1 import node_pb2 as npb
from provisioner._proto.provisioner.v1 import node_pb2_grpc as ngrpc
from provisioner._proto.runtime import runtime_pb2 as legacy_rpb
from provisioner._proto.runtime import runtime_pb2_grpc as legacy_rgrpc
from provisioner._proto.schedule import schedule_pb2_grpc as spb_grpc
from provisioner._proto.v1alpha import api_pb2 as rkt
from provisioner._proto.v1alpha import api_pb2_grpc as rkt_grpc
from provisioner.errors import FailedPrecondition, InvalidArgument, UnsafeName
from provisioner.model import ExecutableSpec
from provisioner.names import check_artifact_name, check_cell_path, check_dns_label
from provisioner.node.process.exec_limits import MAX_ARG_STRLEN
from provisioner.node.runtime.layer import NodeLayer
from tests.daemon import aurae_harness, node_harness


def files_under(root: str) -> list[str]:
    """Every file and folder below ``root`` (relative), sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        found += [os.path.relpath(os.path.join(folder, n), root) for n in dirs + files]
    return sorted(found)


def node_footprint(layer: NodeLayer) -> tuple[list[str], list[str], list[str], list[str]]:
    """What a request could leave: files of the state directory (but the database's),
    cgroup directories under the root, records."""
    state = [f for f in files_under(layer.config.state_dir) if not f.startswith("state.db")]
    cgroups = sorted({f for root in layer.cgroups.cell_dirs("") for f in files_under(root)
                      if os.path.isdir(os.path.join(root, f))})
    return (state, cgroups, [r.name for r in layer.store.list_resources()],
            [p.name for p in layer.store.list_processes()])


@pytest.fixture
def aurae(tmp_path: Path) -> Iterator[aurae_harness.Daemon]:
    with aurae_harness.running_daemon(tmp_path) as daemon:
        yield daemon


@pytest.fixture
def node(tmp_path: Path) -> Iterator[node_harness.Daemon]:
    with node_harness.running_daemon(tmp_path, max_driver_bytes=64 * 1024) as daemon:
        yield daemon


def test_a_start_too_long_to_exec_is_invalid_argument_and_makes_nothing(
        aurae: aurae_harness.Daemon) -> None:
    cells = pb_grpc.CellServiceStub(aurae.channel)
    cells.Allocate(pb.CellServiceAllocateRequest(cell=pb.Cell(name="web")))
    before = node_footprint(aurae.layer)
    huge = "echo " + "x" * (1024 * 1024)
    for cell in ("web", ""):
        error = aurae_harness.rpc_error(lambda cell=cell: cells.Start(  # type: ignore[misc]
            pb.CellServiceStartRequest(cell_name=cell, executable=pb.Executable(
                name="big", command=huge)), timeout=10))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "MAX_ARG_STRLEN" in error.details()  # type: ignore[attr-defined]
    assert node_footprint(aurae.layer) == before
    assert aurae_harness.code_of(lambda: cells.Stop(pb.CellServiceStopRequest(
        cell_name="web", executable_name="big"), timeout=10)) is grpc.StatusCode.NOT_FOUND
    # Just below the limit, the same command runs.
    fits = "true " + "x" * (MAX_ARG_STRLEN - 10)
    cells.Start(pb.CellServiceStartRequest(cell_name="web", executable=pb.Executable(
        name="big", command=fits)), timeout=10)
    cells.Stop(pb.CellServiceStopRequest(cell_name="web", executable_name="big"), timeout=10)


def test_exec_and_enable_too_long_are_invalid_argument(aurae: aurae_harness.Daemon) -> None:
    before = node_footprint(aurae.layer)
    huge = "x" * (MAX_ARG_STRLEN + 1)
    exec_stub = legacy_rgrpc.RuntimeStub(aurae.channel)
    details = aurae_harness.details_of(lambda: exec_stub.Exec(
        legacy_rpb.Executable(command=huge), timeout=10))
    assert "MAX_ARG_STRLEN" in details
    enable = spb_grpc.ScheduleExecutableStub(aurae.channel).Enable
    request = legacy_rpb.Executable(command=huge)
    request.meta.name = "big"
    assert aurae_harness.code_of(lambda: enable(request, timeout=10)
                                 ) is grpc.StatusCode.INVALID_ARGUMENT
    assert node_footprint(aurae.layer) == before


def test_a_first_start_that_fails_leaves_nothing(node: node_harness.Daemon) -> None:
    layer = node.layer
    before = node_footprint(layer)
    with pytest.raises(FailedPrecondition, match="cannot start"):
        layer.start_executable(ExecutableSpec("nodir", "sleep 100",
                                              working_dir="/no/such/dir"))
    assert node_footprint(layer) == before
    with pytest.raises(InvalidArgument, match="environment variable 'BIG'"):
        layer.start_executable(ExecutableSpec("bigenv", "true",
                                              env=(("BIG", "y" * MAX_ARG_STRLEN),)))
    assert node_footprint(layer) == before


def header(name: str = "raft", version: str = "v1", runtime: str = "1"
           ) -> rpb.PushDriverRequest:
    return rpb.PushDriverRequest(header=rpb.PluginHeader(
        driver=rpb.DriverInfo(name=name, version=version),
        runtime=rpb.RuntimeInfo(version=runtime)))


def chunk(data: bytes) -> rpb.PushDriverRequest:
    return rpb.PushDriverRequest(chunk=rpb.PluginChunk(data=data))


def trailer(data: bytes) -> rpb.PushDriverRequest:
    return rpb.PushDriverRequest(trailer=rpb.PluginTrailer(
        checksum=hashlib.sha256(data).hexdigest()))


def test_a_refused_push_stores_nothing_not_even_a_folder(node: node_harness.Daemon) -> None:
    stub = rgrpc.RegistryStub(node.channel)  # type: ignore[no-untyped-call]
    refused = [
        [header(), chunk(b"abc")],  # no trailer
        [header(), chunk(b"abc"), trailer(b"other")],  # wrong checksum
        [header(), chunk(b"\0" * (64 * 1024 + 1)), trailer(b"")],  # too large
        [header(), header()],  # out of order
        [header(), chunk(b"a"), trailer(b"a"), chunk(b"b")],  # after the trailer
    ]
    drivers = Path(node.layer.config.state_dir) / "drivers"
    for messages in refused:
        node_harness.rpc_error(lambda m=messages: stub.PushDriver(  # type: ignore[misc]
            iter(m), timeout=10))
        assert not drivers.exists(), files_under(str(drivers))
    stub.PushDriver(iter([header("kept"), chunk(b"k"), trailer(b"k")]), timeout=10)
    for messages in refused:
        node_harness.rpc_error(lambda m=messages: stub.PushDriver(  # type: ignore[misc]
            iter(m), timeout=10))
    assert files_under(str(drivers)) == ["kept", "kept/v1", "kept/v1/1"]


def test_get_logs_of_a_path_names_the_real_problem(node: node_harness.Daemon) -> None:
    stub = ngrpc.NodeServiceStub(node.channel)  # type: ignore[no-untyped-call]
    cases = {"../run": "contains '/'", "a.b.c": "exactly one '.'", "": "empty",
             "x" * 64: "at most 63", "web\n": "is not a DNS label"}
    for name, why in cases.items():
        error = node_harness.rpc_error(lambda n=name: list(stub.GetLogs(  # type: ignore[misc]
            npb.GetLogsRequest(executable=n), timeout=10)))
        assert node_harness.code_of(error) is grpc.StatusCode.INVALID_ARGUMENT
        assert why in node_harness.details_of(error)
        assert "pod name ''" not in node_harness.details_of(error)


@pytest.mark.parametrize("check", [check_dns_label, check_cell_path, check_artifact_name])
def test_a_trailing_newline_is_not_part_of_a_valid_name(check: object) -> None:
    with pytest.raises(UnsafeName):
        check("web\n")  # type: ignore[operator]


def test_listen_events_with_times_beyond_64_bit_nanoseconds(node: node_harness.Daemon) -> None:
    """Found by the fuzzer: a far-future since_time was INTERNAL (SQLite overflow)."""
    stub = rkt_grpc.PublicAPIStub(node.channel)  # type: ignore[no-untyped-call]
    request = rkt.ListenEventsRequest(filter=rkt.EventFilter(since_time=2**62, until_time=2))
    assert [r.events for r in stub.ListenEvents(request, timeout=10)] == []
