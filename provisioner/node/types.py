"""Small value types shared by the node layer's modules (cgroups, namespaces, shim,
registry options). Here rather than beside their users so that importing one (the
node layer's configuration, say) loads nothing else."""

from __future__ import annotations

from provisioner.records import record

#: Under the state directory: one record per pod attached to the pod network
#: (:class:`provisioner.node.oci.cni_pods.PodNetworks`); none there, no pod network to
#: sweep (so that reconciling a node without pods never loads the pod modules).
POD_NETWORK_RECORDS = ("cni", "pods")


@record
class LeafCgroup:
    """The cgroup directories, one per hierarchy, that one executable's processes live in.

    ``dirs`` are absolute paths, each with a ``cgroup.procs`` file. On cgroup v2 there is
    one directory (``v2`` is true and it has ``cgroup.kill``). On v1 / hybrid there is one
    per hierarchy used (cpu, cpuset, pids, freezer...), and ``freezer_dir`` names the
    freezer one so that a whole tree can be frozen before it is killed.
    """

    dirs: tuple[str, ...]
    v2: bool
    freezer_dir: str | None = None


@record
class NamespaceTarget:
    """Namespaces an executable joins: those of the cell's holder process.

    ``holder_pid`` plus ``holder_start_time`` (field 22 of /proc/PID/stat) identify the
    holder. ``namespaces`` are nsenter's long option names without dashes, for example
    ``("pid", "mount", "ipc", "uts", "net")``.
    """

    holder_pid: int
    holder_start_time: int
    namespaces: tuple[str, ...]


@record
class RegistryOptions:
    """How this node reaches registries (NodeConfig, CLI/daemon flags); the pulls that
    use them are :mod:`provisioner.node.oci.pull`'s."""

    #: A PEM file of CA certificates trusted besides the system roots ("": none).
    ca_file: str = ""
    #: Registries (HOST or HOST:PORT) that may be reached without verified TLS.
    insecure: tuple[str, ...] = ()
    #: The auth.json to use; "": ``$REGISTRY_AUTH_FILE`` or podman's default paths.
    auth_file: str = ""
