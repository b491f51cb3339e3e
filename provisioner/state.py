"""What a node runs, as the plan compiler sees it: the observed side of a plan.

Built by an executor's ``observe()`` (locally from the store, cgroupfs and /proc; or
remotely from ``NodeService.GetState``). Pure data, no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from provisioner.model import Ref, ResourceSpec, ref_of


class ProcessPhase(enum.StrEnum):
    """The life-cycle phase of a supervised process, as observed."""

    PENDING = "pending"
    RUNNING = "running"
    EXITED = "exited"
    BACKOFF = "backoff"
    STOPPED = "stopped"
    FAILED = "failed"  # could not be started (a container's command does not exist)


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class ImageRecord:
    """An image of the node's image cache (``provisioner images list``): unpacked under
    its manifest digest, with what still names it and which pods use it."""

    digest: str  # "sha256:<hex>" of the image manifest
    #: What names it now: the registry references whose last pull gave this digest, or
    #: the local layout that still resolves to it. Empty: dangling.
    references: tuple[str, ...] = ()
    #: The reference it was first pulled (or unpacked) as ("" when unknown).
    pulled_as: str = ""
    size: int = 0  # apparent size of the unpacked root filesystem, bytes
    #: Bytes of its blobs (manifest, config, layers) in the shared blob cache; a blob
    #: two images share counts for both.
    blob_bytes: int = 0
    #: The pods recorded on the node whose containers use it (in use: never removed).
    pods: tuple[str, ...] = ()
    imported_at_ns: int = 0

    @property
    def in_use(self) -> bool:
        """Whether a pod the node has (allocated, running or stopped) uses it."""
        return bool(self.pods)

    @property
    def dangling(self) -> bool:
        """Whether nothing names it any more (a moved tag, a changed or gone layout)."""
        return not self.references


@dataclass(frozen=True)
class ImageList:
    """The node's image cache: its images and the blob cache's size."""

    images: tuple[ImageRecord, ...] = ()
    blob_bytes: int = 0  # every blob in the shared blob cache, bytes
    #: Blobs no image needs (left by removed images or by failed pulls), bytes.
    unused_blob_bytes: int = 0


@dataclass(frozen=True)
class KeptImage:
    """An image a prune left, and why (in use, or still named with prune's default)."""

    digest: str
    reason: str


@dataclass(frozen=True)
class ImagePrune:
    """What ``provisioner images prune`` removed (or, with ``dry_run``, would remove)."""

    removed: tuple[ImageRecord, ...] = ()
    kept: tuple[KeptImage, ...] = ()
    removed_blobs: int = 0
    #: Bytes freed: the removed images' directories and the removed blobs.
    bytes_freed: int = 0
    dry_run: bool = False
