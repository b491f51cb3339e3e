"""What a node runs, as the plan compiler sees it: the observed side of a plan.

Built by an executor's ``observe()`` (locally from the store, cgroupfs and /proc; or
remotely from ``NodeService.GetState``). Pure data, no I/O.
"""

from __future__ import annotations

import enum

from provisioner.model import Ref, ResourceSpec, ref_of
from provisioner.records import record


class ProcessPhase(enum.StrEnum):
    """The life-cycle phase of a supervised process, as observed."""

    PENDING = "pending"
    RUNNING = "running"
    EXITED = "exited"
    BACKOFF = "backoff"
    STOPPED = "stopped"
    FAILED = "failed"  # could not be started (a container's command does not exist)


@record
class ProcessStatus:
    """What the supervisor reports of one process: phase, pid (with its start time,
    so a reused pid is never mistaken for it), exit and restarts.
    """

    phase: ProcessPhase
    pid: int | None = None
    pid_start_time: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    started_at_ns: int = 0
    exited_at_ns: int = 0
    restart_count: int = 0

    def describe_exit(self) -> str:
        """How the process ended, in words ("exited with status 3", "killed by signal 9")."""
        if self.exit_signal:
            return f"killed by signal {self.exit_signal}"
        if self.exit_code is not None:
            return f"exited with status {self.exit_code}"
        return "exited"


@record
class ObservedResource:
    """A resource the provisioner created: the spec it was applied with and reality."""

    spec: ResourceSpec
    manifest_set: str = ""
    present: bool = True  # the backing object exists (cgroup, process, stored file)
    process: ProcessStatus | None = None
    drift: tuple[str, ...] = ()

    @property
    def ref(self) -> Ref:
        """The ``Kind/name`` reference of the resource."""
        return ref_of(self.spec)


@record
class NodeState:
    """Everything the provisioner created on a node, with the store's generation
    (a plan compiled against another generation is refused as stale).
    """

    generation: int
    cgroup_v2: bool = False
    node_name: str = ""
    resources: tuple[ObservedResource, ...] = ()
    node_id: str = ""  # stable identity of the node's state directory ("" if unknown)

    def by_ref(self) -> dict[Ref, ObservedResource]:
        """The observed resources keyed by their reference."""
        return {r.ref: r for r in self.resources}
