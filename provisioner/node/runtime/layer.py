"""The node layer's one entry point: cells and executables on this machine, recorded.

Every operation changes the kernel and the store together, so that the store always
says what the provisioner created. Kernel objects are made before they are recorded
and recorded before processes are launched; a crash in between leaves something that
``reconcile`` adopts (an owned cgroup without a record, a launched shim whose record
still says pending), never a permanent blocker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

from provisioner.defaults import DEFAULT_POD_SUBNET, DEFAULT_STATE_DIR
from provisioner.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NodeError,
    NotFound,
    NotOwned,
    PermissionDenied,
)
from provisioner.lazylog import LazyLogger
from provisioner.model import CellSpec, ExecutableSpec, Kind, ResourceSpec
from provisioner.model_json import dumps, loads
from provisioner.names import cell_parent, check_cell_path, check_dns_label, check_process_name
from provisioner.node.cgroups.layout import HOLDER_LEAF, detect_layout, executable_leaf, make_driver
from provisioner.node.process import leaf as leafops
from provisioner.node.process.exec_limits import check_exec_size
from provisioner.node.process.logs import LogLimits
from provisioner.node.process.namespaces import holder_alive, start_holder, stop_holder
from provisioner.node.process.procs import kill_pids
from provisioner.node.process.shimspec import TERMINAL_STATES, ShimSpec, ShimStatus
from provisioner.node.process.supervise import (
    ShimLaunch,
    crash_log_of,
    is_running,
    launch,
    read_status,
    request_stop,
    shim_alive,
    sweep_tmp_files,
)
from provisioner.node.state.store import (
    HolderRecord,
    ProcessRecord,
    ProcessState,
    Store,
)
from provisioner.node.types import NamespaceTarget, RegistryOptions
from provisioner.records import field, record

log = LazyLogger(__name__)

#: Shim states as the store records them.
SHIM_STATES = {"starting": ProcessState.RUNNING, "running": ProcessState.RUNNING,
               "backoff": ProcessState.BACKOFF, "exited": ProcessState.EXITED,
               "stopped": ProcessState.STOPPED, "failed": ProcessState.EXITED}


def phase_of(status: ShimStatus) -> ProcessState:
    """The lifecycle phase a shim's status word means."""
    return SHIM_STATES.get(status.state, ProcessState.EXITED)


@record
class NodeConfig:
    """How one provisioner instance runs on this machine: where its state is, its
    cgroup root, log and back-off limits, the subnet of its pod bridge."""

    state_dir: str = DEFAULT_STATE_DIR
    cgroup_root: str = "provisioner"
    log_limits: LogLimits = field(default_factory=LogLimits)
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    pod_subnet: str = DEFAULT_POD_SUBNET  # bridge pods' addresses (docs/pods.md, Network)
    #: CA file, insecure registries and auth file of registry pulls (docs/pods.md).
    registries: RegistryOptions = field(default_factory=RegistryOptions)


#: The state directory's folder of shim status files (flat: ``<name>.json``).
RUNTIME_DIR = "run"


def status_path(state_dir: str, name: str) -> str:
    """The status file of an executable or a pod's container: ``run/<name>.json``."""
    return os.path.join(state_dir, RUNTIME_DIR, f"{check_process_name(name)}.json")


#: Under ``logs/``: the last deleted process of each name's log (see retire_logs).
DELETED_LOGS = "_deleted"


def log_path(state_dir: str, name: str) -> str:
    """The log directory of an executable or a pod's container: ``logs/<name>``."""
    return os.path.join(state_dir, "logs", check_process_name(name))


def stopped_record(name: str, cell: str, final: ShimStatus | None) -> ProcessRecord:
    """The record of a process that a stop ended (``final``: its shim's last status)."""
    return process_record(name, cell, final) if final else ProcessRecord(
        name=name, cell=cell, state=ProcessState.STOPPED)


def process_record(name: str, cell: str, status: ShimStatus) -> ProcessRecord:
    """The store's record of process ``name`` in ``cell`` from its supervisor's status."""
    return ProcessRecord(
        name=name, cell=cell, shim_pid=status.shim_pid, shim_start_time=status.shim_start_time,
        pid=status.child_pid, pid_start_time=status.child_start_time,
        state=phase_of(status), exit_code=status.exit_code,
        exit_signal=status.exit_signal, started_at_ns=status.started_at_ns,
        exited_at_ns=status.exited_at_ns, restart_count=status.restart_count)


@record
class PreparedLaunch:
    """What a ``prepare`` of :meth:`NodeLayer.launch_process` may return instead of a
    bare spec: the spec, and whether its leaf was made by this very preparation (every
    directory new, so it holds no process: the launch need not list it)."""

    spec: ShimSpec
    new_leaf: bool = False


class NodeLayer:
    """Cells (cgroups + namespaces) and supervised executables, with their records."""

    def __init__(self, config: NodeConfig | None = None, *, read_only: bool = False) -> None:
        """``read_only``: for looking only (plan, status, check mode): nothing is created
        (no state directory, database or cgroup root), a node never used looks empty,
        and the store refuses writes."""
        self.config = config or NodeConfig()
        self.read_only = read_only
        if os.geteuid() != 0:
            raise PermissionDenied("the node layer needs root: it creates cgroups and "
                                   "namespaces (run as root, or use --target for a daemon)")
        self.layout = detect_layout()
        self.cgroups = make_driver(self.layout, self.config.cgroup_root)
        # Shim status files: run/<executable>.json (flat: one inode per executable, not
        # two). Shims make their tmp files here, even before they have their spec.
        self.runtime_dir = os.path.join(self.config.state_dir, RUNTIME_DIR)
        if read_only:
            self.store = Store.open_read_only(self.config.state_dir)
            return
        self.cgroups.ensure_root()
        self.store = Store.open(self.config.state_dir)
        os.makedirs(self.runtime_dir, mode=0o750, exist_ok=True)
        sweep_tmp_files(self.runtime_dir)

    @property
    def cgroup_v2(self) -> bool:
        """True when the cells live in the unified (v2) hierarchy."""
        return self.cgroups.cgroup_v2

    def close(self) -> None:
        """Close the store (running executables and their shims are not affected)."""
        self.store.close()

    # -- paths ---------------------------------------------------------------------
    def status_file(self, name: str) -> str:
        """Of an executable or a pod's container (``pod.container``)."""
        return status_path(self.config.state_dir, name)

    def log_dir(self, name: str) -> str:
        """Of an executable or a pod's container (``pod.container``)."""
        return log_path(self.config.state_dir, name)

    def retire_logs(self, name: str) -> None:
        """Move a deleted process's log directory to ``logs/_deleted/<name>`` (replacing
        an older one there), so a later process of that name starts with no output of
        this one's while the last deleted one's stays readable for a post-mortem.
        (``_`` cannot start a process name.) Nothing to do without logs."""
        source = self.log_dir(name)
        graveyard = os.path.join(os.path.dirname(source), DELETED_LOGS)
        target = os.path.join(graveyard, os.path.basename(source))
        if not os.path.isdir(source):
            return
        os.makedirs(graveyard, mode=0o750, exist_ok=True)
        import shutil  # (with bz2 and lzma, ~2 ms: only where logs are retired)

        shutil.rmtree(target, ignore_errors=True)
        os.rename(source, target)

    def remove_status_files(self, name: str) -> None:
        """A deleted process's status file and crash log (its logs stay)."""
        status_file = self.status_file(name)
        for path in (status_file, crash_log_of(status_file)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def read_shim_status(self, name: str) -> ShimStatus | None:
        """The supervisor status of executable or container ``name``; None if it has none."""
        try:
            return read_status(self.status_file(name))
        except NotFound:
            return None

    # -- records -------------------------------------------------------------------
    def applied_spec(self, kind: Kind, name: str) -> ResourceSpec | None:
        """The spec of ``kind``/``name`` as last applied (from the store); None if unknown."""
        record = self.store.get_resource(kind, name)
        return loads(record.spec_json) if record else None

    def record(self, spec: ResourceSpec, manifest_set: str, action: str = "recorded",
               message: str = "") -> None:
        """Remember ``spec`` as applied (a change that needs nothing of the kernel)."""
        self._record(spec, dumps(spec), manifest_set, action, message)

    def _record(self, spec: ResourceSpec, spec_json: str, manifest_set: str, action: str,
                message: str = "") -> None:
        """:meth:`record` with ``spec_json`` (``dumps(spec)``) already made."""
        with self.store.transaction() as store:
            store.put_resource(spec.kind, spec.name, spec_json, manifest_set)
            store.record_event(spec.kind.value, spec.name, action, message)

    # -- cells ---------------------------------------------------------------------
    def allocate_cell(self, spec: CellSpec, manifest_set: str = "") -> bool:
        """Create the cell (cgroups, and namespaces when isolated) and record it.

        An allocation identical to what exists only makes sure the kernel side is whole
        (re-creating a vanished cgroup or a dead namespace holder) and returns False.
        A different definition under the same name is AlreadyExists.
        """
        name = check_cell_path(spec.name)
        parent = cell_parent(name)
        if parent and self.store.get_resource(Kind.CELL, parent) is None:
            raise NotFound(f"parent cell {parent!r} of {name!r} does not exist")
        spec_json = dumps(spec)
        record = self.store.get_resource(Kind.CELL, name)
        # The same JSON is the same definition; other JSON may still be (labels and
        # dependencies do not count), which only parsing tells.
        if record is not None and record.spec_json != spec_json and not _same_cell(
                loads(record.spec_json), spec):
            raise AlreadyExists(f"cell {name!r} exists with a different definition; free it "
                                "first, or change its limits in place")
        # The driver tells a new cgroup from an existing one itself: ours with the same
        # limits is adopted (False), ours with other limits is AlreadyExists, one it did
        # not create is NotOwned.
        created = self.cgroups.create(name, spec.limits)
        try:
            self._ensure_holder(spec)
            self._record(spec, spec_json, manifest_set,
                         "allocated" if record is None else "recorded")
        except BaseException:
            if created and record is None:
                with contextlib.suppress(Exception):
                    self._free_kernel(name)
            raise
        return record is None or created

    def _ensure_holder(self, spec: CellSpec) -> NamespaceTarget | None:
        if not (spec.isolate_process or spec.isolate_network):
            return None
        held = self.store.get_holder(spec.name)
        if held is not None:
            target = NamespaceTarget(held.pid, held.start_time, held.namespaces)
            if holder_alive(target):
                return target
        leaf, fresh = self.cgroups.make_leaf(spec.name, HOLDER_LEAF)
        if not fresh and leafops.pids(leaf):  # the remains of a dead holder
            leafops.kill_all(leaf)
        target = start_holder(spec.name, leaf, spec.isolate_process, spec.isolate_network,
                              self.config.state_dir)
        with self.store.transaction() as store:
            store.put_holder(HolderRecord(spec.name, target.holder_pid,
                                          target.holder_start_time, target.namespaces))
        return target

    def namespace_of(self, cell: str) -> NamespaceTarget | None:
        """The namespaces of ``cell``'s holder to join, None for a cell without any;
        FailedPrecondition when the holder died.
        """
        held = self.store.get_holder(cell) if cell else None
        if held is None:
            return None
        target = NamespaceTarget(held.pid, held.start_time, held.namespaces)
        if not holder_alive(target):
            raise FailedPrecondition(f"the namespaces of cell {cell!r} are gone (its holder "
                                     "process died); allocate the cell again")
        return target

    def update_cell(self, spec: CellSpec, manifest_set: str = "") -> None:
        """Change a live cell's limits in place; its processes keep running untouched."""
        applied = self.applied_spec(Kind.CELL, spec.name)
        if applied is None:
            raise NotFound(f"cell {spec.name!r} does not exist")
        assert isinstance(applied, CellSpec)
        if (applied.isolate_process, applied.isolate_network) != (
                spec.isolate_process, spec.isolate_network):
            raise InvalidArgument(f"cell {spec.name!r}: isolation cannot change in place; "
                                  "free the cell and allocate it again")
        self.cgroups.update(spec.name, spec.limits)
        self.record(spec, manifest_set, "updated")

    def pods_in_cell(self, name: str) -> list[str]:
        """The names of the pods recorded in cell ``name`` or in a cell nested in it."""
        name = check_cell_path(name)
        return [p.name for p in self.store.list_resources(Kind.POD)
                if _in_cell(loads(p.spec_json), name)]

    def free_cell(self, name: str) -> None:
        """Stop every executable in the cell and its nested cells, then remove them,
        deepest first. Refuses a cgroup the provisioner did not create, and a cell that
        still runs pods (pods build on this layer: :meth:`Pods.free_cell` frees both)."""
        name = check_cell_path(name)
        cells = {r.name for r in self.store.list_resources(Kind.CELL, within=name)}
        exists, owned = self.cgroups.ownership(name)
        if name not in cells and not exists:
            raise NotFound(f"cell {name!r} does not exist")
        if exists and not owned:
            raise NotOwned(f"cgroup of cell {name!r} was not created by the provisioner")
        pods = self.pods_in_cell(name)
        if pods:
            raise FailedPrecondition(
                f"cell {name!r} still runs pod(s) {', '.join(sorted(pods))}: free them first "
                "(Pods.free_cell frees a cell with its pods)")
        for process in self.store.list_processes(within=name):
            self.stop_executable(process.name, forget=True)
        # Only now: the containers module (runc, bundles) is for pods, and a node layer
        # that only runs cells and executables never loads it.
        from provisioner.node.oci.containers import remove_runc_cgroups

        for cell in sorted(cells | {name}, key=lambda c: -c.count("/")):
            self._free_kernel(cell)
            # Containers' runc made the cell's path in hierarchies we do not manage too.
            remove_runc_cgroups(self.cgroups.root_name, cell)
            with self.store.transaction() as store:
                store.delete_holder(cell)
                store.delete_resource(Kind.CELL, cell)
                store.record_event("Cell", cell, "freed")

    def _free_kernel(self, cell: str) -> None:
        held = self.store.get_holder(cell)
        if held is not None:
            target = NamespaceTarget(held.pid, held.start_time, held.namespaces)
            leaf = self.cgroups.leaf(cell, HOLDER_LEAF) if self.cgroups.exists(cell) else None
            stop_holder(target, leaf)
        try:
            self.cgroups.remove(cell)  # the usual case: empty (or already gone)
            return
        except FailedPrecondition:
            pass
        # Processes we do not supervise: SIGTERM, a moment, then SIGKILL.
        kill_pids(self.cgroups.pids(cell), signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        while self.cgroups.pids(cell) and time.monotonic() < deadline:
            time.sleep(0.005)
        kill_pids(self.cgroups.pids(cell), signal.SIGKILL)
        self.cgroups.remove(cell)

    # -- executables ---------------------------------------------------------------
    def start_executable(self, spec: ExecutableSpec, manifest_set: str = "") -> ShimStatus:
        """Launch ``sh -c COMMAND`` under its supervisor in the cell; return its status.

        Refuses (AlreadyExists) an executable of that name that is running; one that
        ended, or whose supervisor died, is cleaned up and started again. A command the
        kernel cannot exec (too long) is InvalidArgument before anything is made, and a
        new executable whose start fails leaves nothing behind (no leaf, status file or
        record).
        """
        name = check_dns_label(spec.name, "executable name")
        check_exec_size(f"executable {name!r}", spec.command, dict(spec.env))
        if spec.cell and self.store.get_resource(Kind.CELL, spec.cell) is None:
            raise NotFound(f"cell {spec.cell!r} does not exist")
        owner = self.store.get_process(name)
        new = owner is None and self.store.get_resource(Kind.EXECUTABLE, name) is None

        def record_pending(store: Store) -> None:
            store.put_resource(Kind.EXECUTABLE, name, dumps(spec), manifest_set)

        def record_started(store: Store, status: ShimStatus) -> None:
            store.record_event("Executable", name, "started", f"pid {status.child_pid}")

        try:
            return self.launch_process(name, spec.cell,
                                       lambda: self._prepare_launch(spec, name, owner),
                                       record_pending, record_started)
        except Exception:
            if new:
                self._forget_failed_start(name, spec.cell)
            raise

    def _forget_failed_start(self, name: str, cell: str) -> None:
        """Undo what a failed first start of NAME made, unless its process runs after
        all (a launch that timed out may still have started it)."""
        status = self.read_shim_status(name)
        if status is not None and shim_alive(status) and status.state not in TERMINAL_STATES:
            return
        with contextlib.suppress(Exception):
            self.remove_leaf(cell, name)
        with self.store.transaction() as store:
            store.delete_process(name)
            store.delete_resource(Kind.EXECUTABLE, name)
        self.remove_status_files(name)

    def launch_process(self, name: str, cell: str,
                       prepare: Callable[[], ShimSpec | PreparedLaunch],
                       record_pending: Callable[[Store], None] | None = None,
                       record_started: Callable[[Store, ShimStatus], None] | None = None,
                       ) -> ShimStatus:
        """Start one supervised process (an executable, a pod's container) in CELL.

        The shim is spawned first and waits for its spec: its process start overlaps
        ``prepare`` (checks, clean-up, the leaf, whatever the process needs; it returns
        the spec, or a :class:`PreparedLaunch` saying its leaf was just made). The
        process is recorded as pending - with ``record_pending``'s writes, in one
        transaction - *before* the launch, so a crash never loses it; the launch is
        recorded after, with ``record_started``'s writes. If anything fails before the
        launch, the spawned shim exits having done nothing.
        """
        shim = ShimLaunch(self.runtime_dir)
        try:
            prepared = prepare()
            if isinstance(prepared, PreparedLaunch):
                shim_spec, new_leaf = prepared.spec, prepared.new_leaf
            else:
                shim_spec, new_leaf = prepared, False
            with self.store.transaction() as store:
                if record_pending is not None:
                    record_pending(store)
                store.put_process(ProcessRecord(name=name, cell=cell))
        except BaseException:
            shim.abandon()
            raise
        status = launch(shim_spec, shim=shim, new_leaf=new_leaf)
        with self.store.transaction() as store:
            store.put_process(process_record(name, cell, status))
            if record_started is not None:
                record_started(store, status)
        return status

    def _prepare_launch(self, spec: ExecutableSpec, name: str,
                        owner: ProcessRecord | None) -> PreparedLaunch:
        """Clean up what an earlier run left, make the leaf; the shim's spec. ``owner``:
        the process record of NAME as read just before (the store's writers are
        serialized by the caller, as for every operation on one name)."""
        old = self.read_shim_status(name)
        if old is not None:
            if shim_alive(old) and old.state not in TERMINAL_STATES:
                raise AlreadyExists(f"executable {name!r} is already running (pid "
                                    f"{old.child_pid}); stop it first")
            request_stop(old)  # kills whatever a dead supervisor left behind
        if owner is not None and owner.cell != spec.cell:
            self.remove_leaf(owner.cell, name)
        leaf, new_leaf = self.cgroups.make_leaf(spec.cell, executable_leaf(name))
        return PreparedLaunch(new_leaf=new_leaf, spec=ShimSpec(
            name=name, command=spec.command, leaf=leaf, log_dir=self.log_dir(name),
            status_file=self.status_file(name), env=dict(spec.env),
            working_dir=spec.working_dir, uid=spec.uid, gid=spec.gid,
            restart_policy=spec.restart_policy.value, stop_grace_s=spec.stop_grace_s,
            namespace=self.namespace_of(spec.cell), log_limits=self.config.log_limits,
            backoff_base_s=self.config.backoff_base_s,
            backoff_cap_s=self.config.backoff_cap_s))

    def stop_executable(self, name: str, forget: bool = False) -> ShimStatus | None:
        """SIGTERM, the grace period, then SIGKILL of everything left in its leaf.

        With ``forget`` the executable's records, leaf and status file (and crash log)
        are removed too (delete, not stop), and its logs retired (:meth:`retire_logs`):
        a later executable of that name starts a log of its own.
        """
        name = check_dns_label(name, "executable name")
        record = self.store.get_process(name)
        if record is None and self.store.get_resource(Kind.EXECUTABLE, name) is None:
            raise NotFound(f"executable {name!r} does not exist")
        cell = record.cell if record else ""
        try:
            status = self.read_shim_status(name)
        except NodeError as exc:
            # Unreadable (damaged; or written by another version): the last resort, the
            # SIGKILL of everything in its leaf, still stops it.
            log.warning("stopping %s: %s; killing its leaf cgroup", name, exc)
            status = None
            self.kill_leaf(cell, name)
        final = request_stop(status) if status is not None else None
        if forget:
            self.remove_leaf(cell, name)
        with self.store.transaction() as store:
            if forget:
                store.delete_process(name)
                store.delete_resource(Kind.EXECUTABLE, name)
                store.record_event("Executable", name, "deleted")
            else:
                store.put_process(stopped_record(name, cell, final))
                store.record_event("Executable", name, "stopped")
        if forget:
            self.remove_status_files(name)
            self.retire_logs(name)
        return final

    def kill_leaf(self, cell: str, name: str) -> None:
        """SIGKILL everything in the leaf cgroup of process NAME (none: nothing to do)."""
        with contextlib.suppress(NotFound):
            leafops.kill_all(self.cgroups.leaf(cell, executable_leaf(name)))

    def remove_leaf(self, cell: str, name: str) -> None:
        """Remove the leaf cgroup of process NAME (an executable or ``pod.container``)."""
        with contextlib.suppress(NotFound):  # a missing leaf (or cell) is nothing to do
            self.cgroups.remove_leaf(cell, executable_leaf(name))

    def is_running(self, name: str) -> bool:
        """True while executable or container ``name`` runs (its supervisor says so)."""
        status = self.read_shim_status(name)
        return status is not None and is_running(status)


def _in_cell(spec: ResourceSpec, cell: str) -> bool:
    """SPEC (a pod, say) lives in CELL or in a cell nested in it."""
    home = getattr(spec, "cell", "")
    return bool(home) and (home == cell or home.startswith(cell + "/"))


def _same_cell(a: ResourceSpec, b: CellSpec) -> bool:
    """Same kernel-side definition (labels and dependencies do not count)."""
    return isinstance(a, CellSpec) and (a.limits, a.isolate_process, a.isolate_network) == (
        b.limits, b.isolate_process, b.isolate_network)
