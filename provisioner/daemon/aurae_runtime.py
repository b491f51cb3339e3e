"""``aurae.runtime.v0``: cells and executables (``CellService``), and the empty services.

The raw API acts on the node layer directly and records what it creates with manifest
set ``""`` (no manifest owns it; a later apply may claim it). Behaviour and codes follow
``reference/APIS.md`` §1-§2; the decisions taken here are written down in
``docs/apis.md``:

* Allocate identical to what exists (same limits and isolation, cpusets compared as
  sets) changes nothing and succeeds, also for a cell a manifest created, whose record
  (labels, manifest set) is kept as it is. A different definition is ALREADY_EXISTS.
* Start/Stop without ``cell_name`` mean the daemon's root cell ``""``; Stop names the
  cell the executable runs in (NOT_FOUND otherwise). Start refuses a name that a
  persistent executable holds and one that a manifest set declares differently.
* Pods (``aurae.runtime.v0.PodService`` and ``aurae.runtime.pod.v0``) are in
  ``aurae_pods.py``.
"""

from __future__ import annotations

import grpc

from provisioner._proto.aurae.runtime.v0 import runtime_pb2 as pb
from provisioner._proto.aurae.runtime.v0 import runtime_pb2_grpc as pb_grpc
from provisioner.daemon.context import DaemonContext
from provisioner.daemon.status import handles_errors
from provisioner.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from provisioner.model import CellLimits, CellSpec, ExecutableSpec, Kind
from provisioner.model_json import loads
from provisioner.names import check_cell_path, check_dns_label
from provisioner.node import NodeLayer, Pods, check_exec_size, check_not_persistent, same_limits

__all__ = ["CellService", "InstanceService", "SpawnService", "cell_from_proto",
           "executable_from_proto"]

# -- protobuf -> model ---------------------------------------------------------------

def cell_from_proto(cell: pb.Cell) -> CellSpec:
    """A checked CellSpec (InvalidArgument for a bad name; limits are checked by the node
    layer before anything touches the kernel)."""
    name = check_cell_path(cell.name)
    has_cpu, has_cpuset = cell.HasField("cpu"), cell.HasField("cpuset")
    limits = CellLimits(
        cpu_weight=cell.cpu.weight if has_cpu and cell.cpu.HasField("weight") else None,
        cpu_max_us=cell.cpu.max if has_cpu and cell.cpu.HasField("max") else None,
        cpuset_cpus=cell.cpuset.cpus if has_cpuset and cell.cpuset.HasField("cpus") else None,
        cpuset_mems=cell.cpuset.mems if has_cpuset and cell.cpuset.HasField("mems") else None)
    return CellSpec(name, limits, isolate_process=cell.isolate_process,
                    isolate_network=cell.isolate_network)


def executable_from_proto(executable: pb.Executable, cell: str) -> ExecutableSpec:
    """The node layer's spec of an Aurae ``Executable`` in ``cell`` (fields checked)."""
    name = check_dns_label(executable.name, "executable name")
    if not executable.command.strip():
        raise InvalidArgument(f"executable {name!r}: command is empty")
    if "\0" in executable.command:
        raise InvalidArgument(f"executable {name!r}: command contains a NUL byte")
    check_exec_size(f"executable {name!r}", executable.command)
    return ExecutableSpec(name, executable.command, cell=cell,
                          description=executable.description)


def _cell_name(request: pb.CellServiceStartRequest | pb.CellServiceStopRequest) -> str:
    """``cell_name`` if given and not empty (checked), else the root cell ``""``."""
    if not request.HasField("cell_name") or request.cell_name == "":
        return ""
    return check_cell_path(request.cell_name)


# -- the raw operations ----------------------------------------------------------------

def allocate(layer: NodeLayer, spec: CellSpec) -> None:
    """Allocate, keeping an identical existing cell's record (labels, manifest set)."""
    record = layer.store.get_resource(Kind.CELL, spec.name)
    applied = loads(record.spec_json) if record else None
    if record is not None and isinstance(applied, CellSpec) and same_limits(
            applied.limits, spec.limits) and (applied.isolate_process, applied.isolate_network
                                               ) == (spec.isolate_process, spec.isolate_network):
        layer.allocate_cell(applied, record.manifest_set)  # re-makes what vanished, if any
        return
    layer.allocate_cell(spec, "")


def start(layer: NodeLayer, spec: ExecutableSpec) -> int:
    """Start ``spec``; its pid. A name a manifest declares otherwise is AlreadyExists."""
    check_not_persistent(layer, spec.name)
    record = layer.store.get_resource(Kind.EXECUTABLE, spec.name)
    manifest_set = ""
    if record is not None and record.manifest_set:
        if loads(record.spec_json) != spec:
            raise AlreadyExists(
                f"executable {spec.name!r} is declared differently by manifest set "
                f"{record.manifest_set!r}; change it there, or choose another name")
        manifest_set = record.manifest_set
    status = layer.start_executable(spec, manifest_set)
    return status.child_pid or 0


def stop(layer: NodeLayer, cell: str, name: str) -> None:
    """SIGTERM, grace, SIGKILL of the executable ``name`` running in ``cell``."""
    if layer.store.get_resource(Kind.PERSISTENT_EXECUTABLE, name) is not None:
        raise FailedPrecondition(f"{name!r} is a persistent executable: disable it with "
                                 "schedule.ScheduleExecutable.Disable")
    process = layer.store.get_process(name)
    if process is not None and process.cell != cell:
        where = f"cell {process.cell!r}" if process.cell else "the root cell"
        asked = f"cell {cell!r}" if cell else "the root cell (no cell_name given)"
        raise NotFound(f"executable {name!r} is not in {asked}; it runs in {where}")
    layer.stop_executable(name)


# -- servicers -------------------------------------------------------------------------

class CellService(pb_grpc.CellServiceServicer):
    """``aurae.runtime.v0.CellService``: cells and their executables, under the node lock."""
    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx

    @handles_errors
    def Allocate(self, request: pb.CellServiceAllocateRequest,
                 context: grpc.ServicerContext) -> pb.CellServiceAllocateResponse:
        """Allocate the request's cell (its cgroup and namespaces)."""
        if not request.HasField("cell"):
            raise InvalidArgument("cell is required")
        spec = cell_from_proto(request.cell)
        with self.ctx.executor.locked(reconcile_first=False):
            allocate(self.ctx.layer, spec)
        return pb.CellServiceAllocateResponse(cell_name=spec.name,
                                              cgroup_v2=self.ctx.layer.cgroup_v2)

    @handles_errors
    def Free(self, request: pb.CellServiceFreeRequest,
             context: grpc.ServicerContext) -> pb.CellServiceFreeResponse:
        """Free a cell with everything in it (executables, pods, nested cells)."""
        name = check_cell_path(request.cell_name)
        with self.ctx.executor.locked(reconcile_first=False):
            Pods(self.ctx.layer).free_cell(name)
        return pb.CellServiceFreeResponse()

    @handles_errors
    def Start(self, request: pb.CellServiceStartRequest,
              context: grpc.ServicerContext) -> pb.CellServiceStartResponse:
        """Start an executable in the cell (the root cell when none is named); its pid."""
        if not request.HasField("executable"):
            raise InvalidArgument("executable is required")
        spec = executable_from_proto(request.executable, _cell_name(request))
        with self.ctx.executor.locked(reconcile_first=False):
            return pb.CellServiceStartResponse(pid=start(self.ctx.layer, spec))

    @handles_errors
    def Stop(self, request: pb.CellServiceStopRequest,
             context: grpc.ServicerContext) -> pb.CellServiceStopResponse:
        """Stop an executable: SIGTERM, its grace period, then SIGKILL."""
        name = check_dns_label(request.executable_name, "executable name")
        with self.ctx.executor.locked(reconcile_first=False):
            stop(self.ctx.layer, _cell_name(request), name)
        return pb.CellServiceStopResponse()


class InstanceService(pb_grpc.InstanceServiceServicer):
    """No methods upstream; registered so that reflection and clients find it."""


class SpawnService(pb_grpc.SpawnServiceServicer):
    """No methods upstream; registered so that reflection and clients find it."""
