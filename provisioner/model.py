"""The declarative model: frozen records (``provisioner.records``) with value equality.

Protobuf types never enter the model; ``provisioner.serde`` converts at the edge.
Every mapping is stored as a sorted tuple of pairs so that specs are hashable and
compare by value (the plan compiler diffs them field by field).
"""

from __future__ import annotations

import enum

from provisioner.records import field, record

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


class PodNetwork(enum.StrEnum):
    """Which network namespace a pod's containers share (see docs/pods.md, Network).

    ``loopback``: the pod's own namespace with only loopback up; ``bridge``: the pod's
    own namespace with an address on the node's pod bridge (CNI), reachable from the
    node and other bridge pods, and its ``hostPort`` mappings; ``host``: the node's.
    """

    LOOPBACK = "loopback"
    BRIDGE = "bridge"
    HOST = "host"


class Protocol(enum.StrEnum):
    """The transport of a container port (Kubernetes spells them in capitals)."""

    TCP = "TCP"
    UDP = "UDP"


Pairs = tuple[tuple[str, str], ...]

class PullPolicy(enum.StrEnum):
    """When a container's registry image is pulled (Kubernetes' ``imagePullPolicy``).

    ``IfNotPresent``: only when this node has no image for the reference yet;
    ``Always``: at every allocate (a moved tag is followed; unchanged layers are not
    fetched again); ``Never``: never - the image must be on the node already. Local
    OCI layouts are read where they are, whatever the policy.
    """

    IF_NOT_PRESENT = "IfNotPresent"
    ALWAYS = "Always"
    NEVER = "Never"


DEFAULT_STOP_GRACE_S = 10.0


@record
class Ref:
    """A reference to another resource, written ``Kind/name`` in manifests."""

    kind: Kind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.value}/{self.name}"


@record
class Source:
    """Where a resource was declared: file and 1-based line / column."""

    file: str = ""
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}" if self.file else "<unknown>"


@record
class CellLimits:
    """The limits of a cell that can change in place."""

    cpu_weight: int | None = None  # cgroup v2 cpu.weight, 1..10000
    cpu_max_us: int | None = None  # CPU time per 1,000,000 us period; None = unlimited
    cpuset_cpus: str | None = None  # kernel list syntax, e.g. "0-3,8"
    cpuset_mems: str | None = None


@record
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


@record
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


@record
class ContainerPort:
    """A port a container listens on (Kubernetes' ``ports`` entry). ``host_port`` 0:
    not published on the node; otherwise the node forwards ``host_port`` (on
    127.0.0.1 and its own addresses) to ``container_port`` of the pod's address."""

    container_port: int
    host_port: int = 0
    protocol: Protocol = Protocol.TCP


@record
class ContainerSpec:
    """One OCI container of a pod: an image reference and what to run in it."""

    name: str
    image: str
    registry: str = ""
    command: tuple[str, ...] = ()
    env: Pairs = ()
    working_dir: str = ""
    ports: tuple[ContainerPort, ...] = ()
    pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT


@record
class PodSpec:
    """A named group of OCI containers run with runc, in a cell, sharing a network
    namespace (see :class:`PodNetwork`).

    ``network`` None (not given) resolves on construction: ``host`` with
    ``host_network``, else ``bridge`` when a container publishes a ``host_port``, else
    ``loopback`` (what pods had before bridges existed, so older manifests and records
    mean what they meant). ``network: host`` sets ``host_network``; the one
    contradiction left (``host_network`` with ``network`` loopback or bridge) is
    refused by validation and by the node layer.
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
    network: PodNetwork | None = None  # resolved in __post_init__, never None after

    kind = Kind.POD

    def __post_init__(self) -> None:
        network = self.network
        if network is None:
            network = (PodNetwork.HOST if self.host_network else
                       PodNetwork.BRIDGE if self.host_ports() else PodNetwork.LOOPBACK)
            object.__setattr__(self, "network", network)
        if network is PodNetwork.HOST and not self.host_network:
            object.__setattr__(self, "host_network", True)

    def host_ports(self) -> list[tuple[int, Protocol, str]]:
        """``(host port, protocol, container name)`` of every published port (on the
        host's network, a port is the host's even without ``host_port``)."""
        host = self.network is PodNetwork.HOST
        return [(port.host_port or port.container_port, port.protocol, container.name)
                for container in self.containers for port in container.ports
                if port.host_port or host]


@record
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


@record
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


@record
class DesiredState:
    """Every resource of one manifest set, in declaration order."""

    resources: tuple[ResourceSpec, ...]
    manifest_set: str = "default"

    def by_ref(self) -> dict[Ref, ResourceSpec]:
        """The resources keyed by their reference."""
        return {ref_of(r): r for r in self.resources}
