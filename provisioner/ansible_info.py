"""What ``provisioner.node.info`` returns: what the node runs and the node's facts, as
data. Reads only: no lock is taken and nothing is applied, in check mode or not.

- ``resources``: every resource the provisioner manages, grouped by kind (``cells``,
  ``executables``, ``pods``, ``drivers``, ``persistent_executables``), each with its
  manifest set and live status (state, pid, restarts, exit, drift), optionally of one
  manifest set only;
- ``node``: node id, name, generation, cgroup version and driver, whether a daemon or
  this machine directly was asked (``mode``), and the writer lock's state.
"""

from __future__ import annotations

from typing import Any

from provisioner.ansible_support import ModuleFailure, NodeOptions
from provisioner.errors import ProvisionerError
from provisioner.executors.base import Executor
from provisioner.executors.choose import open_executor
from provisioner.model import Kind
from provisioner.records import record
from provisioner.state import NodeState, ObservedResource, ProcessPhase

#: The keys of ``resources``, one per kind.
GROUPS = {Kind.CELL: "cells", Kind.EXECUTABLE: "executables", Kind.POD: "pods",
          Kind.DRIVER: "drivers", Kind.PERSISTENT_EXECUTABLE: "persistent_executables"}


@record
class InfoOptions(NodeOptions):
    """The parameters of ``provisioner.node.info``."""

    manifest_set: str | None = None


def state_word(resource: ObservedResource) -> str:
    """running, exited, backoff, stopped, pending, failed for processes; present or
    missing."""
    process = resource.process
    if process is None:
        return "present" if resource.present else "missing"
    return process.phase.value


def resource_status(resource: ObservedResource) -> dict[str, Any]:
    """One resource and its live status."""
    process = resource.process
    status: dict[str, Any] = {
        "kind": resource.spec.kind.value, "name": resource.spec.name,
        "manifest_set": resource.manifest_set, "present": resource.present,
        "state": state_word(resource), "drift": list(resource.drift),
        "labels": dict(resource.spec.labels),
    }
    if process is not None:
        status.update(pid=process.pid, restarts=process.restart_count,
                      exit_code=process.exit_code, exit_signal=process.exit_signal)
        ended = (ProcessPhase.EXITED, ProcessPhase.BACKOFF, ProcessPhase.STOPPED,
                 ProcessPhase.FAILED)
        if process.phase in ended and (process.exit_code is not None or process.exit_signal):
            status["exit"] = process.describe_exit()
    return status


def grouped(state: NodeState, manifest_set: str | None) -> dict[str, list[dict[str, Any]]]:
    """Every resource's status (of ``manifest_set`` only, when given), by kind."""
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name in GROUPS.values()}
    for resource in state.resources:
        if manifest_set is None or resource.manifest_set == manifest_set:
            groups[GROUPS[resource.spec.kind]].append(resource_status(resource))
    return groups


def node_facts(state: NodeState, ex: Executor) -> dict[str, Any]:
    """The node's facts: identity, generation, cgroups, how it was reached (the
    executor's :meth:`~provisioner.executors.base.Executor.describe`) and the writer
    lock's state (``unknown`` through a daemon, which locks for each apply itself)."""
    facts: dict[str, Any] = {
        "node_id": state.node_id, "node_name": state.node_name,
        "generation": state.generation, "cgroup_version": 2 if state.cgroup_v2 else 1,
        "resources": len(state.resources),
    }
    facts.update(ex.describe())
    # A daemon does not name its cgroup driver: the one of its cgroup version.
    facts.setdefault("cgroup_driver", "CgroupV2Driver" if state.cgroup_v2 else "CgroupV1Driver")
    facts["lock"] = ex.lock_state().as_dict()
    return facts


def node_info(options: InfoOptions) -> dict[str, Any]:
    """``{"changed": False, "node": ..., "resources": ...}``; ModuleFailure on errors."""
    o = options
    try:
        with open_executor(o.target, o.state_dir, o.cgroup_root, o.lock_timeout,
                           tls_ca=o.tls_ca, tls_cert=o.tls_cert, tls_key=o.tls_key,
                           purpose="ansible provisioner.node.info", read_only=True) as ex:
            state = ex.observe()
            facts = node_facts(state, ex)
    except ProvisionerError as exc:
        raise ModuleFailure(str(exc), changed=False) from None
    return {"changed": False, "node": facts, "resources": grouped(state, o.manifest_set)}


class InfoReader:
    """The module's manager: :func:`node_info` behind the ``run()`` every module calls."""

    def __init__(self, options: InfoOptions) -> None:
        """The module's parsed parameters."""
        self.options = options

    def run(self) -> dict[str, Any]:
        """:func:`node_info` of the options."""
        return node_info(self.options)
