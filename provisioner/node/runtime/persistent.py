"""Persistent executables: commands the node keeps running, across crashes and restarts.

A persistent executable (the legacy ``schedule`` API's "enabled executable", and the
``PersistentExecutable`` manifest kind) is recorded as a resource of kind
``PersistentExecutable`` whose spec says whether it is ``enabled``. An enabled one runs
as a supervised executable of the same name in the root cell ``""`` with restart policy
``always`` (the shim restarts it with capped back-off whenever it ends), and
:func:`restart_enabled`, called at every daemon start, starts again what is enabled
but not running (and stops what is disabled but still running).

Records: ``NodeLayer.start_executable`` records what it starts as a resource of kind
``Executable``. Here that record is *removed* right after the start, so that a
persistent executable is exactly one resource (kind ``PersistentExecutable``) plus the
usual process record (its pid, state and exit status, read by ``observe``, ``Stop`` and
the log streams). Keeping both would show one thing twice, and a plan would see the
``Executable`` as undeclared in its manifest set and prune it. The persistent record is
written *before* the start, so a crash between the start and the removal leaves a
shadow ``Executable`` record next to its ``PersistentExecutable``; since the two kinds
can never legitimately share a name, such a shadow is recognised and removed by the
next :func:`enable` or :func:`restart_enabled`.

Names are shared with plain executables (both are supervised under ``run/<name>`` and
``logs/<name>``): enabling a name that a plain executable holds, or starting a plain
executable under a persistent name, is refused with AlreadyExists naming the other kind.

Operations on this node are serialized by one process-wide lock; across processes the
caller holds the writer lock when it needs to (the local executor does).
"""

from __future__ import annotations

import threading

from provisioner.errors import AlreadyExists, InvalidArgument, NotFound
from provisioner.lazylog import LazyLogger
from provisioner.model import ExecutableSpec, Kind, PersistentExecutableSpec, RestartPolicy
from provisioner.model_json import dumps, loads
from provisioner.names import check_dns_label
from provisioner.node.process.exec_limits import check_exec_size
from provisioner.node.process.shimspec import TERMINAL_STATES
from provisioner.node.process.supervise import shim_alive
from provisioner.node.runtime.layer import NodeLayer
from provisioner.node.state.store import ResourceRecord
from provisioner.records import replace

__all__ = [
    "check_not_persistent",
    "declare",
    "destroy",
    "disable",
    "enable",
    "get_persistent",
    "list_persistent",
    "restart_enabled",
]

log = LazyLogger("provisioner.node.runtime.persistent")
_lock = threading.RLock()
KIND = Kind.PERSISTENT_EXECUTABLE


def get_persistent(layer: NodeLayer, name: str) -> tuple[PersistentExecutableSpec,
                                                         ResourceRecord] | None:
    """The recorded spec of persistent executable ``name`` and its record, or None."""
    record = layer.store.get_resource(KIND, name)
    if record is None:
        return None
    spec = loads(record.spec_json)
    assert isinstance(spec, PersistentExecutableSpec)
    return spec, record


def check_not_persistent(layer: NodeLayer, name: str) -> None:
    """Refuse (AlreadyExists) to use ``name`` for a plain executable if it is persistent."""
    if layer.store.get_resource(KIND, name) is not None:
        raise AlreadyExists(
            f"a persistent executable named {name!r} exists (schedule.ScheduleExecutable / "
            "PersistentExecutable); executables and persistent executables share names: "
            "destroy it first or choose another name")


def _check_spec(spec: PersistentExecutableSpec) -> None:
    check_dns_label(spec.name, "persistent executable name")
    if not spec.command.strip():
        raise InvalidArgument(f"persistent executable {spec.name!r}: command is empty")
    if "\0" in spec.command:
        raise InvalidArgument(f"persistent executable {spec.name!r}: command contains NUL")
    check_exec_size(f"persistent executable {spec.name!r}", spec.command)


def _put(layer: NodeLayer, spec: PersistentExecutableSpec, manifest_set: str,
         action: str) -> None:
    with layer.store.transaction() as store:
        if store.put_resource(KIND, spec.name, dumps(spec), manifest_set):
            store.record_event(KIND.value, spec.name, action)


def _drop_shadow(layer: NodeLayer, name: str) -> None:
    """Remove the ``Executable`` record ``start_executable`` wrote for a persistent one."""
    if layer.store.get_resource(Kind.EXECUTABLE, name) is None:
        return
    with layer.store.transaction() as store:
        store.delete_resource(Kind.EXECUTABLE, name)


def _is_up(layer: NodeLayer, name: str) -> bool:
    """True while a supervisor runs ``name`` (its process running or in back-off)."""
    status = layer.read_shim_status(name)
    return status is not None and status.state not in TERMINAL_STATES and shim_alive(status)


def _start(layer: NodeLayer, spec: PersistentExecutableSpec, manifest_set: str) -> None:
    layer.start_executable(ExecutableSpec(spec.name, spec.command, cell="",
                                          description=spec.comment,
                                          restart_policy=RestartPolicy.ALWAYS), manifest_set)
    _drop_shadow(layer, spec.name)


def _stop(layer: NodeLayer, name: str, forget: bool) -> None:
    if layer.store.get_process(name) is not None:
        layer.stop_executable(name, forget=forget)
    _drop_shadow(layer, name)


def enable(layer: NodeLayer, spec: PersistentExecutableSpec, manifest_set: str = "") -> None:
    """Register (or re-enable, or redefine) ``spec`` and make sure it is running.

    Idempotent: one already running the same command is left untouched. A new command
    replaces the running process. ``spec.enabled`` is ignored (this enables). Refuses a
    name held by a plain executable (AlreadyExists).

    Invariant: a process running under a persistent name runs the *recorded* command.
    So a changed command stops the old process before the record changes, and the record
    is written before the new start; a crash anywhere in between is finished by
    :func:`restart_enabled`.
    """
    _check_spec(spec)
    spec = replace(spec, enabled=True)
    with _lock:
        previous = _previous(layer, spec.name)
        up = _is_up(layer, spec.name)
        if up and previous is not None and previous[0].command == spec.command:
            _put(layer, spec, manifest_set, "enabled")  # the comment may have changed
            _drop_shadow(layer, spec.name)
            return
        if up:  # another command under this name: replace the process
            layer.stop_executable(spec.name)
        _put(layer, spec, manifest_set, "enabled")
        try:
            _start(layer, spec, manifest_set)
        except BaseException:
            with layer.store.transaction() as store:  # leave the record as it was
                if previous is None:
                    store.delete_resource(KIND, spec.name)
                else:
                    store.put_resource(KIND, spec.name, previous[1].spec_json,
                                       previous[1].manifest_set)
            raise


def declare(layer: NodeLayer, spec: PersistentExecutableSpec, manifest_set: str = "") -> None:
    """Make the node match ``spec`` as declared (for the plan executor): an enabled spec
    is :func:`enable`; a disabled one is registered (or redefined) disabled, its process
    stopped if it runs, without ever starting it."""
    if spec.enabled:
        enable(layer, spec, manifest_set)
        return
    _check_spec(spec)
    with _lock:
        _previous(layer, spec.name)
        _put(layer, spec, manifest_set, "disabled")
        _stop(layer, spec.name, forget=False)


def _previous(layer: NodeLayer, name: str) -> tuple[PersistentExecutableSpec,
                                                    ResourceRecord] | None:
    """The registered one of that name; AlreadyExists if a plain executable holds it."""
    previous = get_persistent(layer, name)
    if previous is None and layer.store.get_resource(Kind.EXECUTABLE, name):
        raise AlreadyExists(
            f"an executable named {name!r} exists (started with CellService.Start "
            "or declared as an Executable); executables and persistent executables "
            "share names: delete it first or choose another name")
    return previous


def _require(layer: NodeLayer, name: str) -> tuple[PersistentExecutableSpec, ResourceRecord]:
    check_dns_label(name, "persistent executable name")
    found = get_persistent(layer, name)
    if found is None:
        other = " (a plain executable has that name)" if layer.store.get_resource(
            Kind.EXECUTABLE, name) else ""
        raise NotFound(f"persistent executable {name!r} does not exist{other}")
    return found


def disable(layer: NodeLayer, name: str) -> None:
    """Stop it (SIGTERM, grace, SIGKILL) and keep it registered, disabled. Idempotent."""
    with _lock:
        spec, record = _require(layer, name)
        # Recorded first: a crash before the stop leaves it disabled, and the next
        # restart_enabled stops the process.
        _put(layer, replace(spec, enabled=False), record.manifest_set, "disabled")
        _stop(layer, name, forget=False)


def destroy(layer: NodeLayer, name: str) -> None:
    """Stop it and remove every record of it (NotFound if it is not registered)."""
    with _lock:
        spec, record = _require(layer, name)
        if spec.enabled:  # a crash after this point never restarts it
            _put(layer, replace(spec, enabled=False), record.manifest_set, "disabled")
        _stop(layer, name, forget=True)
        layer.retire_logs(name)  # a later one of that name must not show this one's output
        with layer.store.transaction() as store:
            store.delete_resource(KIND, name)
            store.record_event(KIND.value, name, "destroyed")


def list_persistent(layer: NodeLayer) -> list[tuple[PersistentExecutableSpec, bool]]:
    """Every registered persistent executable (by name) and whether its process is
    running right now (False while in back-off between two runs, or when disabled)."""
    out: list[tuple[PersistentExecutableSpec, bool]] = []
    for record in layer.store.list_resources(KIND):
        spec = loads(record.spec_json)
        assert isinstance(spec, PersistentExecutableSpec)
        out.append((spec, layer.is_running(spec.name)))
    return out


def restart_enabled(layer: NodeLayer) -> list[str]:
    """At daemon start: start every enabled one that is not running, stop every disabled
    one that still runs, drop shadow records. Returns what was done, one line each.

    One that cannot be started is logged and skipped, so the others still start."""
    done: list[str] = []
    with _lock:
        for record in layer.store.list_resources(KIND):
            spec = loads(record.spec_json)
            assert isinstance(spec, PersistentExecutableSpec)
            try:
                if spec.enabled:
                    if not _is_up(layer, spec.name):
                        _start(layer, spec, record.manifest_set)
                        done.append(f"{spec.name}: started")
                    _drop_shadow(layer, spec.name)
                elif _is_up(layer, spec.name):
                    _stop(layer, spec.name, forget=False)
                    done.append(f"{spec.name}: stopped (disabled)")
            except Exception as exc:  # one broken entry must not keep the others down
                log.error("persistent executable %s: %s", spec.name, exc)
                done.append(f"{spec.name}: failed: {exc}")
    return done
