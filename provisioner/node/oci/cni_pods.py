"""Pods on the node's bridge: what is ADDed for each, recorded so it can be DELeted.

Every provisioner instance (state directory + cgroup root) has one CNI network,
``provisioner-<cgroup root>``: a Linux bridge (:func:`bridge_name`) holding the gateway
address of the configured subnet, ``host-local`` IPAM leases under
``<state>/cni/ipam``, masquerading of the pods' outgoing traffic (the bridge plugin's
``ipMasq``), and, for a pod that publishes ports, the ``portmap`` plugin's DNAT rules
(iptables; on Debian 12 that is iptables-nft). ``portmap`` with ``snat`` (its default)
also sets ``route_localnet`` on the bridge and masquerades 127.0.0.1, which is what
makes ``127.0.0.1:<hostPort>`` reach the pod.

Crash safety: the record ``<state>/cni/pods/<pod>.json`` names the pod's namespace
(written before the namespace is made, for loopback pods too) and, for a bridge pod, the
chain's configurations and container id (written *before* the ADD; the result added
after it). Whatever a crash interrupts is therefore known: the next
:meth:`PodNetworks.attach` of that pod DELetes a record without a result (or one made
for a namespace that no longer exists) before ADDing again, and
:meth:`PodNetworks.sweep` (the node's reconcile) DELetes the chains and deletes the
namespaces of the records of pods the store does not have. A record goes last, after
the DEL and the namespace; DEL is idempotent, so an interrupted undo is repeated.
When the last attachment goes, :meth:`PodNetworks.release_shared` removes the bridge
and, when no rule is left in them, the portmap plugin's shared chains.

One host-wide lock (``/run/lock/provisioner-cni.lock``) serialises these operations
between provisioner instances, which share the portmap chains.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator

from provisioner.defaults import DEFAULT_POD_SUBNET
from provisioner.errors import FailedPrecondition, InvalidArgument, NodeError, ProvisionerError
from provisioner.model import ContainerPort, PodNetwork, PodSpec
from provisioner.names import check_dns_label
from provisioner.node.oci import cni
from provisioner.node.oci.cni_etc import remove_etc_files, write_etc_files
from provisioner.node.oci.containers import pod_dir
from provisioner.node.oci.network import (
    check_pod_network,
    ensure_netns,
    netns_name,
    netns_path,
    remove_netns,
)
from provisioner.node.types import POD_NETWORK_RECORDS
from provisioner.records import record

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    import ipaddress
    from typing import Any

LOCK_FILE = "/run/lock/provisioner-cni.lock"
IFNAME = "eth0"
#: The portmap plugin's shared nat chains and the rules that jump to them.
_PORTMAP_JUMPS = (
    ("PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"]),
    ("OUTPUT", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"]),
    ("POSTROUTING", ["-m", "comment", "--comment", "CNI portfwd requiring masquerade",
                     "-j", "CNI-HOSTPORT-MASQ"]),
)
_PORTMAP_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK")


def bridge_name(root_name: str) -> str:
    """The bridge of a cgroup root: ``provisioner0`` for the default root,
    ``prov-<root>`` for a root of at most 10 characters, else ``prov-`` and 10 hex
    digits of its SHA-256 (interface names have at most 15 characters)."""
    root = check_dns_label(root_name, "cgroup root name")
    if root == "provisioner":
        return "provisioner0"
    if len(root) <= 10:
        return f"prov-{root}"
    from provisioner.digests import sha256_hex  # (without loading OpenSSL, ~5 ms)

    return "prov-" + sha256_hex(root.encode())[:10]


def check_subnet(text: str) -> ipaddress.IPv4Network:
    """An IPv4 subnet with room for a gateway and pods (prefix /8 to /29)."""
    import ipaddress  # (~1.5 ms: loaded when a subnet is used, not for loopback pods)

    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise InvalidArgument(f"pod subnet {text!r} is not an IPv4 network such as "
                              f"{DEFAULT_POD_SUBNET}: {exc}") from None
    if not 8 <= net.prefixlen <= 29:
        raise InvalidArgument(f"pod subnet {text!r}: the prefix must be /8 to /29")
    return net


@record
class PodAddress:
    """A bridge pod's address (``10.89.0.2``), its prefix length and its gateway."""

    address: str
    prefix: int
    gateway: str


@record
class PortMapping:
    """One published port as the portmap plugin takes it."""

    host_port: int
    container_port: int
    protocol: str  # "tcp" | "udp"

    @classmethod
    def of(cls, port: ContainerPort) -> PortMapping:
        """The mapping of a container's port (which must have a host port)."""
        return cls(port.host_port, port.container_port, port.protocol.value.lower())


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """The host-wide CNI lock (blocking)."""
    os.makedirs(os.path.dirname(LOCK_FILE), exist_ok=True)
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class PodNetworks:
    """The bridge network of one provisioner instance and its pods' attachments."""

    def __init__(self, state_dir: str, root_name: str, subnet: str = DEFAULT_POD_SUBNET):
        self.state_dir = state_dir
        self.root_name = check_dns_label(root_name, "cgroup root name")
        # A subnet given is checked now; the default (valid: a test pins it) is parsed
        # when a bridge pod first needs it, so loopback pods never import ipaddress.
        self._subnet_text = subnet
        self._subnet = None if subnet == DEFAULT_POD_SUBNET else check_subnet(subnet)
        self.name = f"provisioner-{self.root_name}"
        self.bridge = bridge_name(self.root_name)
        self.records_dir = os.path.join(state_dir, *POD_NETWORK_RECORDS)

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        """The pods' subnet (:func:`check_subnet`)."""
        if self._subnet is None:
            self._subnet = check_subnet(self._subnet_text)
        return self._subnet

    # -- configuration ---------------------------------------------------------------
    def plugins(self, ports: list[PortMapping]) -> list[dict[str, Any]]:
        """The chain for a pod: bridge (+ host-local IPAM), then portmap with its
        runtime port mappings when there are any."""
        base = {"cniVersion": cni.CNI_VERSION, "name": self.name}
        chain: list[dict[str, Any]] = [{
            **base, "type": "bridge", "bridge": self.bridge, "isGateway": True,
            "ipMasq": True, "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": str(self.subnet)}]],
                     "routes": [{"dst": "0.0.0.0/0"}],
                     "dataDir": os.path.join(self.state_dir, "cni", "ipam")},
        }]
        if ports:
            chain.append({**base, "type": "portmap", "snat": True,
                          "capabilities": {"portMappings": True},
                          "runtimeConfig": {"portMappings": [
                              {"hostPort": p.host_port, "containerPort": p.container_port,
                               "protocol": p.protocol} for p in ports]}})
        return chain

    def container_id(self, pod: str) -> str:
        """The CNI container id of a pod: stable, so a DEL after a crash finds what
        the ADD made (iptables comments and chain names derive from it)."""
        return f"{self.root_name}.{check_dns_label(pod, 'pod name')}"

    # -- records ---------------------------------------------------------------------
    def _record_path(self, pod: str) -> str:
        return os.path.join(self.records_dir, f"{check_dns_label(pod, 'pod name')}.json")

    def read_record(self, pod: str) -> dict[str, Any] | None:
        """The attachment record of a pod (None when there is none or it is unreadable,
        which :meth:`detach` treats as nothing to undo)."""
        try:
            with open(self._record_path(pod), encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _write_record(self, pod: str, record: dict[str, Any]) -> None:
        os.makedirs(self.records_dir, mode=0o700, exist_ok=True)
        path = self._record_path(pod)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def address(self, pod: str) -> PodAddress | None:
        """The pod's bridge address (None when it has none)."""
        record = self.read_record(pod)
        if record is None or not record.get("result"):
            return None
        try:
            return _address(record["result"])
        except (NodeError, ValueError, AttributeError):
            return None

    def attached(self) -> list[str]:
        """The pods that have an attachment record."""
        try:
            names = os.listdir(self.records_dir)
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json"))

    def published_ports(self, exclude: str = "") -> dict[tuple[int, str], str]:
        """``(host port, protocol)`` -> pod, for every recorded pod but ``exclude``."""
        used: dict[tuple[int, str], str] = {}
        for pod in self.attached():
            record = self.read_record(pod)
            if pod == exclude or record is None:
                continue
            for port in record.get("ports") or ():
                used[(int(port["host_port"]), str(port["protocol"]))] = pod
        return used

    # -- pods ------------------------------------------------------------------------
    def setup(self, spec: PodSpec) -> list[dict[str, Any]]:
        """Make the pod's network where missing (its namespace; a bridge address and
        port mappings for a bridge pod) and its /etc files; the OCI mounts of those
        files."""
        check_pod_network(spec)
        address = None
        if spec.network is not PodNetwork.HOST:
            ports = [PortMapping.of(port) for container in spec.containers
                     for port in container.ports if port.host_port]
            self._check_ports(spec.name, ports)  # before anything is made
            name = netns_name(self.root_name, spec.name)
            fresh = self.read_record(spec.name) is None
            if fresh:
                self._write_record(spec.name, {"netns": netns_path(name), "plugins": []})
            try:
                path = ensure_netns(name)
                if spec.network is PodNetwork.BRIDGE:
                    address = self.attach(spec.name, path, ports).address
            except ProvisionerError:
                if fresh:  # a pod that had no network is left without one
                    with contextlib.suppress(ProvisionerError):
                        self.teardown(spec.name)
                raise
        return write_etc_files(pod_dir(self.state_dir, spec.name), spec.name, address,
                               spec.network is PodNetwork.HOST)

    def teardown(self, pod: str) -> None:
        """Undo :meth:`setup`: DEL the pod's chain if it has one, delete its namespace,
        its /etc files and its record."""
        self.detach(pod)
        remove_etc_files(pod_dir(self.state_dir, pod))

    # -- operations ------------------------------------------------------------------
    def _check_ports(self, pod: str, ports: list[PortMapping]) -> None:
        """FailedPrecondition when another pod of this node publishes one of the
        host ports."""
        used = self.published_ports(exclude=pod)
        for port in ports:
            other = used.get((port.host_port, port.protocol))
            if other is not None:
                raise FailedPrecondition(
                    f"pod {pod!r}: host port {port.host_port}/{port.protocol} is "
                    f"published by pod {other!r} already")

    def attach(self, pod: str, netns: str, ports: list[PortMapping]) -> PodAddress:
        """Give the pod (whose namespace is at ``netns``) its address and port
        mappings, unless its record says that was done for this very namespace
        with these ports; its address. See the module docstring for crashes."""
        plugins = self.plugins(ports)
        ino = _inode(netns)
        with host_lock():
            record = self.read_record(pod)
            if (record is not None and record.get("result") and record.get("netns") == netns
                    and record.get("netns_ino") == ino and record.get("plugins") == plugins):
                return _address(record["result"])
            self._check_ports(pod, ports)
            if record is not None:
                self._undo(pod, record)
            self._check_bridge_subnet(exclude=pod)
            container_id = self.container_id(pod)
            fresh = {"container_id": container_id, "netns": netns, "netns_ino": ino,
                     "ifname": IFNAME, "plugins": plugins, "result": None,
                     "ports": [p.__dict__ for p in ports]}
            self._write_record(pod, fresh)  # before the ADD: a crash leaves a trace
            result = cni.add_chain(plugins, container_id=container_id, netns=netns,
                                   ifname=IFNAME)
            self._write_record(pod, {**fresh, "result": result})
            return _address(result)

    def detach(self, pod: str) -> None:
        """DEL the pod's chain, delete its namespace, drop its record; then, if it
        was the last one, release the shared objects."""
        with host_lock():
            record = self.read_record(pod) or {}
            self._undo(pod, record)
            remove_netns(netns_name(self.root_name, pod))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._record_path(pod))
            if (record.get("plugins") or _link_exists(self.bridge)) and not self.attached():
                self.release_shared()

    def _undo(self, pod: str, record: dict[str, Any]) -> None:
        """DEL the chain a record names (nothing for a loopback record); the record
        stays."""
        plugins = record.get("plugins")
        if isinstance(plugins, list) and plugins:
            cni.del_chain(plugins, record.get("result") or None,
                          container_id=str(record.get("container_id")
                                           or self.container_id(pod)),
                          netns=str(record.get("netns") or ""),
                          ifname=str(record.get("ifname") or IFNAME))

    def sweep(self, known_pods: set[str]) -> list[str]:
        """Detach the recorded pods that are not in ``known_pods`` (an interrupted
        allocate, say), and delete their /etc files; what was done, in words."""
        found = []
        for pod in self.attached():
            if pod not in known_pods:
                self.teardown(pod)
                found.append(f"Pod/{pod}: removed the network of an interrupted run")
        return found

    def release_shared(self) -> None:
        """Remove the bridge and the portmap plugin's shared chains when nothing uses
        them (called with the host lock held, when this instance has no attachment)."""
        if _link_exists(self.bridge):
            _run(["ip", "link", "delete", self.bridge], f"deleting bridge {self.bridge}")
        _remove_idle_portmap_chains()

    def _check_bridge_subnet(self, exclude: str) -> None:
        """A bridge left with another subnet (the configuration changed while no pod
        was attached, or a crash) is removed; with pods on it, FailedPrecondition."""
        if not _link_exists(self.bridge):
            return
        gateway = f"{next(self.subnet.hosts())}/{self.subnet.prefixlen}"
        shown = _run(["ip", "-4", "-o", "addr", "show", "dev", self.bridge],
                     f"reading bridge {self.bridge}")
        if gateway in shown.split() or "inet" not in shown:
            return
        users = [pod for pod in self.attached() if pod != exclude
                 and (self.read_record(pod) or {}).get("plugins")]
        if users:
            raise FailedPrecondition(
                f"bridge {self.bridge} has another subnet than {self.subnet} and pods "
                f"({', '.join(users)}) use it: free them before changing the pod subnet")
        _run(["ip", "link", "delete", self.bridge], f"deleting bridge {self.bridge}")


def _address(result: dict[str, Any]) -> PodAddress:
    address, gateway = cni.result_ipv4(result)
    ip, _, prefix = address.partition("/")
    return PodAddress(ip, int(prefix or 32), gateway)


def _inode(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except OSError as exc:
        raise NodeError(f"network namespace {path}: {exc.strerror}") from None


def _run(argv: list[str], what: str) -> str:
    import subprocess  # (a loopback pod runs no program: ~1.5 ms with selectors)

    done = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                          timeout=60, check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise NodeError(f"{what} failed (exit {done.returncode}): "
                        f"{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _link_exists(name: str) -> bool:
    return os.path.exists(os.path.join("/sys/class/net", name))


def _remove_idle_portmap_chains() -> None:
    """Remove portmap's shared chains and their jumps if the DNAT chain is empty
    (another CNI user of this host may still use them otherwise). Best effort: the
    chains are harmless when left."""
    try:
        listing = _run(["iptables", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT"],
                       "listing CNI-HOSTPORT-DNAT")
    except (NodeError, OSError):
        return  # no such chain (or no iptables): nothing to remove
    if any(line.startswith("-A ") for line in listing.splitlines()):
        return
    for chain, rule in _PORTMAP_JUMPS:
        with contextlib.suppress(NodeError):
            _run(["iptables", "-t", "nat", "-D", chain, *rule], f"unhooking {chain}")
    for chain in _PORTMAP_CHAINS:
        with contextlib.suppress(NodeError):
            _run(["iptables", "-t", "nat", "-F", chain], f"flushing {chain}")
            _run(["iptables", "-t", "nat", "-X", chain], f"deleting {chain}")
