"""The local executor: the :class:`~provisioner.executors.base.Executor` interface
in-process, through the node layer.

Used by the CLI and the Ansible modules when no daemon is reachable (a one-shot
bootstrap) and by the daemon itself, whose handlers are thin calls of it. It compiles
plans here against the node as observed (image pre-flight included), holds the writer
lock for the whole apply, reconciles first, refuses a plan made against another node
generation, then runs the steps with ``run_plan``. Logs are read from the state
directory's log files.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Generator, Iterator

from provisioner import records
from provisioner.defaults import DEFAULT_LOCK_TIMEOUT_S
from provisioner.errors import (
    FailedPrecondition,
    InvalidArgument,
    LockBusy,
    NotFound,
    StalePlan,
)
from provisioner.events import ApplyEvent
from provisioner.executors.base import Executor, LockState
from provisioner.executors.scheduler import run_plan
from provisioner.model import (
    CellSpec,
    DesiredState,
    DriverSpec,
    ExecutableSpec,
    Kind,
    PersistentExecutableSpec,
    PodSpec,
)
from provisioner.names import check_process_name, process_kind
from provisioner.node import (
    LogReader,
    NodeLayer,
    WriterLock,
    check_plan,
    observe,
    read_holder,
    reconcile,
)
from provisioner.plan.compiler import compile_plan
from provisioner.plan.steps import Action, Change, Plan, Step
from provisioner.state import NodeState

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:  # named in signatures only
    from typing import Any

    from provisioner.image_state import ImageList, ImagePrune
    from provisioner.logline import LogLine

__all__ = ["DEFAULT_LOCK_TIMEOUT_S", "NODE_ID_KEY", "LocalExecutor"]

NODE_ID_KEY = "node_id"


class LocalExecutor:
    """The node this process runs on, through ``layer`` (see the module doc)."""

    def __init__(self, layer: NodeLayer, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
                 purpose: str = "") -> None:
        """``lock_timeout_s``: how long to wait for the writer lock; ``purpose``: what
        the lock tells other processes while held (default: this command line)."""
        self.layer = layer
        self.lock = WriterLock(layer.config.state_dir)
        self.lock_timeout_s = lock_timeout_s
        self.purpose = purpose or " ".join(["provisioner", *sys.argv[1:]])[:200]
        self.found: list[str] = []  # what the last reconcile found
        self._gate = threading.Lock()  # one holder among this process's threads
        self._owner: int | None = None  # the thread holding the writer lock
        self._holding = ""
        self.node_id = self._node_id()

    def _node_id(self) -> str:
        """This node's identity, made once: saved plans carry it, so that a plan made
        for one node is never applied to another."""
        store = self.layer.store
        node_id = store.get_meta(NODE_ID_KEY)
        if node_id is None and self.layer.read_only:
            return ""  # a node never applied to has none yet; looking makes none
        if node_id is None:
            with store.transaction(observation=True):
                if store.get_meta(NODE_ID_KEY) is None:
                    store.set_meta(NODE_ID_KEY, os.urandom(16).hex())
            node_id = store.get_meta(NODE_ID_KEY)
        return node_id or ""

    def close(self) -> None:
        """Close the node layer's store (running processes are not affected)."""
        self.layer.close()

    def __enter__(self) -> LocalExecutor:
        """This executor; closed on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the executor."""
        self.close()

    def ping(self, timeout_s: float) -> bool:
        """Always True: the node is this process's own machine."""
        return True

    def describe(self) -> dict[str, Any]:
        """``mode`` local, the state directory, cgroup root and the cgroup driver used."""
        layer = self.layer
        return {"mode": "local", "state_dir": layer.config.state_dir,
                "cgroup_root": layer.config.cgroup_root,
                "cgroup_driver": type(layer.cgroups).__name__,
                "cgroup_hybrid": not layer.layout.cgroup_v2
                and layer.layout.v2_mount is not None}

    def lock_state(self) -> LockState:
        """Read from the lock file, without taking the lock."""
        holder = read_holder(self.layer.config.state_dir)
        if holder is None:
            return LockState("free")
        return LockState("held", holder.describe())

    @contextlib.contextmanager
    def locked(self, reconcile_first: bool = True) -> Iterator[LocalExecutor]:
        """Hold the writer lock (and reconcile): observe, compile and apply inside it.

        Re-entrant for the thread that holds it; another thread of this process (a
        daemon serving two calls) waits up to the lock timeout, like another process.
        """
        if self.layer.read_only:
            raise FailedPrecondition("the node was opened for looking only (plan, status, "
                                     "check mode): it cannot be changed through it")
        me = threading.get_ident()
        if self._owner == me:
            yield self
            return
        if not self._gate.acquire(timeout=self.lock_timeout_s):
            raise LockBusy(f"state is locked by another operation of this process "
                           f"({self._holding}); waited {self.lock_timeout_s:g}s")
        try:
            with self.lock.acquire(self.lock_timeout_s, self.purpose):
                self._owner, self._holding = me, threading.current_thread().name
                try:
                    if reconcile_first:
                        self.found = reconcile(self.layer)
                    yield self
                finally:
                    self._owner, self._holding = None, ""
        finally:
            self._gate.release()

    def observe(self) -> NodeState:
        """The node as it runs now, with its generation and node id."""
        return records.replace(observe(self.layer), node_id=self.node_id)

    def plan(self, desired: DesiredState, prune: bool = False, destroy: bool = False, *,
             observed: NodeState | None = None) -> Plan:
        """Compiled here against ``observed`` (or the node observed now), then checked
        for images this node cannot use (FailedPrecondition)."""
        node = observed if observed is not None else self.observe()
        return check_plan(compile_plan(desired, node, prune=prune, destroy=destroy),
                          self.layer.config.state_dir)

    def logs(self, name: str, follow: bool = False, since_ns: int | None = None,
             tail: int | None = None, channel: str | None = None, *,
             stop: threading.Event | None = None) -> Iterator[LogLine]:
        """Read from the log files of ``name`` in the state directory (see
        :meth:`Executor.logs <provisioner.executors.base.Executor.logs>`)."""
        name = check_process_name(name)
        from provisioner.logline import CHANNELS

        if channel is not None and channel not in CHANNELS:
            raise InvalidArgument(f"channel must be stdout, stderr or empty, not {channel!r}")
        if tail is not None and tail < 0:
            raise InvalidArgument(f"tail must be 0 or more, not {tail}")
        directory = self.layer.log_dir(name)
        # Known but silent so far (logs start with the first line): nothing yet, no error.
        if not os.path.isdir(directory) and not os.path.isfile(self.layer.status_file(name)):
            raise NotFound(f"no logs for {process_kind(name)} {name!r}")
        reader = LogReader(directory)
        if follow:
            return reader.follow(since_ns=since_ns, channel=channel, tail=tail, stop=stop)
        return iter(reader.read(since_ns=since_ns, tail=tail, channel=channel))

    def list_images(self) -> ImageList:
        """The image cache of the state directory, with the pods using each image."""
        from provisioner.node import list_node_images

        return list_node_images(self.layer)

    def prune_images(self, all_unused: bool = False, dry_run: bool = False) -> ImagePrune:
        """Under the writer lock (reconciled first, so pods an interrupted apply left
        half-made are settled): remove what no pod uses (see :meth:`Executor.prune_images
        <provisioner.executors.base.Executor.prune_images>`)."""
        from provisioner.node import prune_node_images

        with self.locked():
            result = prune_node_images(self.layer, all_unused, dry_run)
            if result.removed and not dry_run:
                # Recorded, not a change of any resource: plans made before stay valid.
                with self.layer.store.transaction(observation=True) as store:
                    store.record_event("Image", "", "pruned", ", ".join(
                        image.digest for image in result.removed))
            return result

    def apply(self, plan: Plan, parallelism: int = 0) -> Generator[ApplyEvent, None, None]:
        """Under the writer lock (reconciled first): refuse a stale plan, then run it."""
        with self.locked():
            self._refuse_stale(plan)
            yield from run_plan(plan, lambda step: self.perform(step, plan.manifest_set),
                                parallelism, generation=self.layer.store.generation)

    def _refuse_stale(self, plan: Plan) -> None:
        current = self.layer.store.generation()
        if plan.generation == current:
            return
        changes = [e for e in self.layer.store.events(limit=100_000)
                   if e.generation > plan.generation][-5:]
        what = "; ".join(f"{e.kind}/{e.name} {e.action}" for e in changes) or "unknown"
        raise StalePlan(f"the plan was made at node generation {plan.generation}, but the "
                        f"node is at {current} (changed since: {what}); plan again")

    def perform(self, step: Step, manifest_set: str) -> None:
        """Carry out one step on this node."""
        layer, spec = self.layer, step.spec
        if step.ref.kind is Kind.CELL:
            if step.action is Action.ALLOCATE and isinstance(spec, CellSpec):
                layer.allocate_cell(spec, manifest_set)
            elif step.action is Action.UPDATE and isinstance(spec, CellSpec):
                layer.update_cell(spec, manifest_set)
            elif step.action is Action.FREE:
                from provisioner.node import Pods  # pods, images: loaded when needed

                Pods(layer).free_cell(step.ref.name)
            else:
                raise FailedPrecondition(f"cannot {step.action.value} a cell")
            return
        if step.ref.kind is Kind.EXECUTABLE:
            if step.action is Action.START and isinstance(spec, ExecutableSpec):
                layer.start_executable(spec, manifest_set)
            elif step.action is Action.STOP:
                layer.stop_executable(step.ref.name, forget=step.change is Change.DELETE)
            elif step.action is Action.UPDATE and spec is not None:
                layer.record(spec, manifest_set)
            else:
                raise FailedPrecondition(f"cannot {step.action.value} an executable")
            return
        if step.ref.kind is Kind.DRIVER:
            self._perform_driver(step, manifest_set)
            return
        if step.ref.kind is Kind.PERSISTENT_EXECUTABLE:
            from provisioner.node import persistent

            if step.action in (Action.ENABLE, Action.DISABLE) and isinstance(
                    spec, PersistentExecutableSpec):
                persistent.declare(layer, spec, manifest_set)  # spec.enabled decides
            elif step.action is Action.DELETE:
                persistent.destroy(layer, step.ref.name)
            else:
                raise FailedPrecondition(f"cannot {step.action.value} a persistent executable")
            return
        if step.ref.kind is Kind.POD:
            self._perform_pod(step, manifest_set)
            return
        raise FailedPrecondition(f"{step.ref}: cannot {step.action.value} this kind")

    def _perform_pod(self, step: Step, manifest_set: str) -> None:
        from provisioner.node import Pods

        pods, spec = Pods(self.layer), step.spec
        if step.action is Action.ALLOCATE and isinstance(spec, PodSpec):
            pods.allocate(spec, manifest_set)
        elif step.action is Action.START and isinstance(spec, PodSpec):
            pods.start(spec, manifest_set)
        elif step.action is Action.STOP:
            pods.stop(step.ref.name)
        elif step.action is Action.FREE:
            pods.free(step.ref.name)
        elif step.action is Action.UPDATE and spec is not None:
            self.layer.record(spec, manifest_set)
        else:
            raise FailedPrecondition(f"cannot {step.action.value} a pod")

    def _perform_driver(self, step: Step, manifest_set: str) -> None:
        """PUSH: store the file (checked against its SHA-256), dropping the version it
        replaces; DELETE: remove the stored file. Both recorded in the store."""
        from provisioner.node import DriverStore, driver_key

        layer, spec = self.layer, step.spec
        store = DriverStore(layer.config.state_dir)
        applied = layer.applied_spec(Kind.DRIVER, step.ref.name)
        if step.action is Action.PUSH and isinstance(spec, DriverSpec):
            key = driver_key(spec)
            if not store.holds(key, spec.sha256):  # pushed already (by a remote client)?
                if not os.path.isfile(spec.source_path) and spec.sha256:
                    raise NotFound(
                        f"{key}: {spec.source_path} is not on this node and the registry "
                        f"does not hold it with SHA-256 {spec.sha256}: a client applying "
                        "through the daemon pushes the file first")
                store.store_file(key, spec.source_path, spec.sha256)
            if isinstance(applied, DriverSpec) and driver_key(applied) != key:
                store.delete(driver_key(applied))
            layer.record(spec, manifest_set, "pushed", str(key))
        elif step.action is Action.DELETE:
            gone = applied if isinstance(applied, DriverSpec) else spec
            if isinstance(gone, DriverSpec):
                store.delete(driver_key(gone))
            with layer.store.transaction() as tx:
                tx.delete_resource(Kind.DRIVER, step.ref.name)
                tx.record_event(Kind.DRIVER.value, step.ref.name, "deleted")
        else:
            raise FailedPrecondition(f"cannot {step.action.value} a driver")


if TYPE_CHECKING:  # mypy checks that this class is an Executor
    _conforms: type[Executor] = LocalExecutor
