"""What the node really runs: the store compared with cgroupfs, /proc and shim status.

``observe`` only reads: it never waits for the writer lock and changes nothing.
``reconcile`` writes what it finds (under the writer lock, at apply, destroy and daemon
start): processes that died are recorded as exited with their status; owned cgroups
left by a crash are adopted (recorded with manifest set "", so that a later apply can
claim them) rather than blocking their names forever; the empty staging cgroups of
creations a crash interrupted (``.provisioner-new.*``) are removed.
"""

from __future__ import annotations

import os

from provisioner.errors import ProvisionerError
from provisioner.model import CellLimits, CellSpec, DriverSpec, ExecutableSpec, Kind, PodSpec
from provisioner.model_json import dumps, loads
from provisioner.names import container_process_name
from provisioner.node.cgroups.layout import same_limits
from provisioner.node.process.namespaces import holder_alive
from provisioner.node.process.shimspec import ShimStatus
from provisioner.node.process.supervise import shim_alive
from provisioner.node.runtime.layer import NodeLayer, phase_of, process_record
from provisioner.node.state.store import ProcessState
from provisioner.node.types import POD_NETWORK_RECORDS, NamespaceTarget
from provisioner.records import replace
from provisioner.state import NodeState, ObservedResource, ProcessPhase, ProcessStatus


def process_status(status: ShimStatus | None) -> tuple[ProcessStatus, list[str]]:
    """The observed process of an executable, and drift notes about it."""
    if status is None:
        return ProcessStatus(ProcessPhase.PENDING), []
    phase = phase_of(status)
    drift: list[str] = []
    if phase in (ProcessPhase.RUNNING, ProcessPhase.BACKOFF) and not shim_alive(status):
        phase = ProcessPhase.EXITED  # its supervisor died: nothing restarts or logs it
        drift.append("supervisor process is gone")
    if status.state == "failed" and status.last_error:
        drift.append(status.last_error)
    return ProcessStatus(
        phase, pid=status.child_pid, pid_start_time=status.child_start_time,
        exit_code=status.exit_code, exit_signal=status.exit_signal,
        started_at_ns=status.started_at_ns or 0, exited_at_ns=status.exited_at_ns or 0,
        restart_count=status.restart_count), drift


#: Which container's phase speaks for its pod: the least healthy one.
_POD_PHASE_ORDER = (ProcessPhase.FAILED, ProcessPhase.PENDING, ProcessPhase.STOPPED,
                    ProcessPhase.EXITED, ProcessPhase.BACKOFF, ProcessPhase.RUNNING)


def pod_status(layer: NodeLayer, spec: PodSpec) -> tuple[ProcessStatus, list[str]]:
    """A pod's observed process: its least healthy container's (restarts summed), with
    every container's drift notes."""
    # Imported here, as below: observing a node without pods (or drivers) loads neither
    # the container nor the driver modules.
    from provisioner.node.oci.containers import bundle_dir, runc_failure

    seen: list[ProcessStatus] = []
    drift: list[str] = []
    for container in spec.containers:
        status = layer.read_shim_status(container_process_name(spec.name, container.name))
        process, notes = process_status(status)
        if process.phase in (ProcessPhase.EXITED, ProcessPhase.BACKOFF) and \
                process.exit_code not in (None, 0):
            # runc could not start it (not: its command ran and failed): say so, with
            # runc's reason, rather than "exited".
            reason = runc_failure(bundle_dir(layer.config.state_dir, spec.name,
                                             container.name))
            if reason:
                if process.phase is ProcessPhase.EXITED:
                    process = replace(process, phase=ProcessPhase.FAILED)
                notes = [*notes, f"runc: {reason}"]
        seen.append(process)
        drift += [f"container {container.name}: {note}" for note in notes]
    worst = min(seen, key=lambda p: _POD_PHASE_ORDER.index(p.phase))
    return replace(worst, restart_count=sum(p.restart_count for p in seen)), drift


def _observe_cell(layer: NodeLayer, spec: CellSpec) -> tuple[bool, list[str]]:
    if not layer.cgroups.exists(spec.name):
        return False, ["cgroup is missing"]
    drift: list[str] = []
    try:
        kernel = layer.cgroups.read_limits(spec.name)
    except ProvisionerError as exc:
        # Half made or half removed (a run killed between two hierarchies): missing, so
        # that the plan allocates it again (which re-makes what is missing) or frees it.
        return False, [f"cgroup is incomplete ({exc})"]
    if not same_limits(kernel, spec.limits):
        drift.append(f"limits are {_limits_text(kernel)}, applied {_limits_text(spec.limits)}")
    if spec.isolate_process or spec.isolate_network:
        held = layer.store.get_holder(spec.name)
        alive = held is not None and holder_alive(
            NamespaceTarget(held.pid, held.start_time, held.namespaces))
        if not alive:
            return False, [*drift, "namespace holder process is gone"]
    return True, drift


def _limits_text(limits: CellLimits) -> str:
    return (f"weight={limits.cpu_weight} max={limits.cpu_max_us} cpus={limits.cpuset_cpus} "
            f"mems={limits.cpuset_mems}")


def observe(layer: NodeLayer) -> NodeState:
    """The node as it is: every recorded resource with its live status and drift."""
    with layer.store.snapshot() as store:
        generation = store.generation()
        records = store.list_resources()
    observed = []
    for record in records:
        spec = loads(record.spec_json)
        present, process, drift = True, None, list[str]()
        if isinstance(spec, CellSpec):
            present, drift = _observe_cell(layer, spec)
        elif isinstance(spec, ExecutableSpec):
            process, drift = process_status(layer.read_shim_status(spec.name))
        elif isinstance(spec, PodSpec):
            process, drift = pod_status(layer, spec)
        elif isinstance(spec, DriverSpec):
            from provisioner.node.state.drivers import DriverStore, driver_key

            present = DriverStore(layer.config.state_dir).exists(driver_key(spec))
            drift = [] if present else ["stored driver file is missing"]
        observed.append(ObservedResource(spec, record.manifest_set, present, process,
                                         tuple(drift)))
    return NodeState(generation=generation, cgroup_v2=layer.cgroup_v2,
                     node_name=os.uname().nodename, resources=tuple(observed))


def reconcile(layer: NodeLayer) -> list[str]:
    """Record what changed behind the provisioner's back; return what was found."""
    found: list[str] = []
    store = layer.store
    for record in store.list_processes():
        status = layer.read_shim_status(record.name)
        if status is None:
            continue
        fresh = process_record(record.name, record.cell, status)
        seen, _ = process_status(status)
        if seen.phase is ProcessPhase.EXITED and fresh.state is not ProcessState.EXITED:
            fresh = replace(fresh, state=ProcessState.EXITED)  # its supervisor died
        if fresh != record:
            with store.transaction(observation=True) as tx:
                tx.put_process(fresh)
                if fresh.state != record.state:
                    message = f"{record.state.value} -> {fresh.state.value}"
                    tx.record_event("Executable", record.name, fresh.state.value, message)
                    found.append(f"Executable/{record.name}: {message}")
    known = {r.name for r in store.list_resources(Kind.CELL)}
    swept: list[str] = []
    cells = layer.cgroups.list_cells(sweep=swept)  # the staging cgroups of dead runs go
    if swept:
        found.append(f"removed {len(swept)} staging cgroup(s) of interrupted runs")
    for cell in cells:
        if cell in known:
            continue
        try:
            spec = CellSpec(cell, limits=layer.cgroups.read_limits(cell))
        except ProvisionerError:
            # Half made (the run died between two hierarchies): nothing was ever
            # recorded or started in it, so it is removed rather than adopted.
            if not layer.cgroups.pids(cell):
                layer.cgroups.remove(cell)
                found.append(f"Cell/{cell}: removed a half-created cgroup")
            continue
        with store.transaction() as tx:
            tx.put_resource(Kind.CELL, cell, dumps(spec), "")
            tx.record_event("Cell", cell, "adopted", "owned cgroup without a record")
        found.append(f"Cell/{cell}: adopted a cgroup left by an interrupted run")
    # Pod networks (namespace, CNI chain) of pods an interrupted run never recorded.
    if not _has_entries(os.path.join(layer.config.state_dir, *POD_NETWORK_RECORDS)):
        return found  # no pod was ever attached (or all were detached): nothing to sweep
    from provisioner.node.oci.cni_pods import PodNetworks

    networks = PodNetworks(layer.config.state_dir, layer.cgroups.root_name,
                           layer.config.pod_subnet)
    found.extend(networks.sweep({r.name for r in store.list_resources(Kind.POD)}))
    return found




def _has_entries(directory: str) -> bool:
    """Whether ``directory`` exists and holds anything."""
    try:
        with os.scandir(directory) as entries:
            return any(True for _ in entries)
    except (FileNotFoundError, NotADirectoryError):
        return False
