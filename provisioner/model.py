"""The declarative model: frozen dataclasses with value equality.

Protobuf types never enter the model; ``provisioner.serde`` converts at the edge.
Every mapping is stored as a sorted tuple of pairs so that specs are hashable and
compare by value (the plan compiler diffs them field by field).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

API_VERSION = "provisioner/v1"


class Kind(enum.StrEnum):
    """The kinds of resource a manifest can declare (the ``kind:`` of a document)."""

    CELL = "Cell"
    EXECUTABLE = "Executable"
    POD = "Pod"
    DRIVER = "Driver"
    PERSISTENT_EXECUTABLE = "PersistentExecutable"


class RestartPolicy(enum.StrEnum):
    """What the supervisor does when a process exits by itself."""

    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


Pairs = tuple[tuple[str, str], ...]

DEFAULT_STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Ref:
    """A reference to another resource, written ``Kind/name`` in manifests."""

    kind: Kind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.value}/{self.name}"


@dataclass(frozen=True)
class Source:
    """Where a resource was declared: file and 1-based line / column."""

    file: str = ""
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}" if self.file else "<unknown>"


@dataclass(frozen=True)
class CellLimits:
    """The limits of a cell that can change in place."""

    cpu_weight: int | None = None  # cgroup v2 cpu.weight, 1..10000
    cpu_max_us: int | None = None  # CPU time per 1,000,000 us period; None = unlimited
    cpuset_cpus: str | None = None  # kernel list syntax, e.g. "0-3,8"
    cpuset_mems: str | None = None


@dataclass(frozen=True)
class CellSpec:
    """A cell: a cgroup with limits, optionally with its own pid/mount/ipc/uts
    (``isolate_process``) and network (``isolate_network``) namespaces.
    """

    name: str  # cell path, e.g. "web" or "web/cache"
    limits: CellLimits = CellLimits()
    isolate_process: bool = False
    isolate_network: bool = False
    labels: Pairs = ()
    depends_on: tuple[Ref, ...] = ()
    source: Source = field(default=Source(), compare=False)

    kind = Kind.CELL


@dataclass(frozen=True)
class ExecutableSpec:
    """A command supervised in a cell (``cell`` "" is the provisioner's root cell)."""

    name: str
    command: str
    cell: str = ""  # "" = the provisioner's root cell
    description: str = ""
    env: Pairs = ()
    working_dir: str = "/"
    uid: int | None = None
    gid: int | None = None
    restart_policy: RestartPolicy = RestartPolicy.NEVER
    stop_grace_s: float = DEFAULT_STOP_GRACE_S
    labels: Pairs = ()
    depends_on: tuple[Ref, ...] = ()
    source: Source = field(default=Source(), compare=False)

    kind = Kind.EXECUTABLE


@dataclass(frozen=True)
class ContainerSpec:
    """One OCI container of a pod: an image reference and what to run in it."""

    name: str
    image: str
    registry: str = ""
    command: tuple[str, ...] = ()
    env: Pairs = ()
    working_dir: str = ""


@dataclass(frozen=True)
class PodSpec:
    """A named group of OCI containers run with runc, in a cell, sharing a network
    namespace (their own, or the host's with ``host_network``).
    """

    name: str
    containers: tuple[ContainerSpec, ...]
    cell: str = ""
    restart_policy: RestartPolicy = RestartPolicy.NEVER
    stop_grace_s: float = DEFAULT_STOP_GRACE_S
    labels: Pairs = ()
    depends_on: tuple[Ref, ...] = ()
    source: Source = field(default=Source(), compare=False)
    host_network: bool = False  # the host's network namespace, not the pod's own

    kind = Kind.POD


@dataclass(frozen=True)
class DriverSpec:
    """An Atomix driver file pushed to the node's driver registry."""

    name: str
    version: str
    runtime_version: str
    source_path: str  # absolute path of the file to push
    sha256: str = ""
    labels: Pairs = ()
    depends_on: tuple[Ref, ...] = ()
    source: Source = field(default=Source(), compare=False)

    kind = Kind.DRIVER


@dataclass(frozen=True)
class PersistentExecutableSpec:
    """An executable the daemon keeps running across its own restarts
    (first-generation Aurae API), enabled or not.
    """

    name: str
    command: str
    comment: str = ""
    enabled: bool = True
    labels: Pairs = ()
    depends_on: tuple[Ref, ...] = ()
    source: Source = field(default=Source(), compare=False)

    kind = Kind.PERSISTENT_EXECUTABLE


ResourceSpec = CellSpec | ExecutableSpec | PodSpec | DriverSpec | PersistentExecutableSpec


def ref_of(spec: ResourceSpec) -> Ref:
    """The ``Kind/name`` reference of a resource."""
    return Ref(spec.kind, spec.name)


@dataclass(frozen=True)
class DesiredState:
    """Every resource of one manifest set, in declaration order."""

    resources: tuple[ResourceSpec, ...]
    manifest_set: str = "default"

    def by_ref(self) -> dict[Ref, ResourceSpec]:
        """The resources keyed by their reference."""
        return {ref_of(r): r for r in self.resources}
