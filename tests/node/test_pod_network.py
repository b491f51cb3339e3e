"""Pod networking with the CNI plugins: bridge addresses, host ports, /etc files, and
nothing left behind. Real plugins, real iptables, real runc; traffic only to
127.0.0.1 and to addresses on the bridge the test's node makes."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from provisioner.errors import FailedPrecondition, InvalidArgument
from provisioner.model import ContainerPort, ContainerSpec, PodNetwork, PodSpec, Protocol
from provisioner.names import container_process_name
from provisioner.node.oci import cni
from provisioner.node.oci.cni_pods import bridge_name
from provisioner.node.process.logs import LogReader
from provisioner.node.runtime.layer import NodeConfig, NodeLayer
from provisioner.node.runtime.observe import reconcile
from provisioner.node.runtime.pods import Pods
from tests.conftest import make_config, tear_down
from tests.oci_fixture import build_busybox_layout

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
              pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"),
                                 reason="needs containernetworking-plugins"),
              pytest.mark.skipif(shutil.which("iptables-save") is None,
                                 reason="needs iptables")]


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> str:
    return "oci:" + str(build_busybox_layout(tmp_path_factory.mktemp("busybox")))


def random_subnet() -> str:
    """A /24 in 10.200-249.x.0 no interface of this host has (tests run side by side)."""
    shown = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True,
                           check=True).stdout
    while True:
        subnet = f"10.{random.randint(200, 249)}.{random.randint(0, 255)}"
        if f" {subnet}." not in shown:
            return f"{subnet}.0/24"


@pytest.fixture
def bnode(tmp_path: Path) -> Iterator[NodeLayer]:
    """A node layer with a pod subnet of its own."""
    if os.geteuid() != 0:
        pytest.skip("the node layer needs root")
    base = make_config(tmp_path / "state")
    layer = NodeLayer(NodeConfig(**{**base.__dict__, "pod_subnet": random_subnet()}))
    try:
        yield layer
    finally:
        tear_down(layer)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def lines(node: NodeLayer, pod: str, container: str) -> list[str]:
    return [x.text for x in LogReader(node.log_dir(container_process_name(pod, container))
                                      ).read()]


def fetch(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bytes(response.read())
    except OSError:
        return None


def host_network_state() -> dict[str, list[str]]:
    """Interfaces, addresses, iptables rules and user chains, named netns: what a pod
    may add and must take away again. (Tables and base chains that iptables-nft makes
    on first use stay, empty, as they would for any iptables user.)"""
    def run(*argv: str) -> list[str]:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        return sorted(out.splitlines())
    rules = [line for line in run("iptables-save")
             if line.startswith("-A ") or (line.startswith(":") and " - " in line)]
    return {"links": [line.split(":")[1].strip().split("@")[0] for line in run("ip", "-o", "link")],
            "addrs": [" ".join(line.split()[1:4]) for line in run("ip", "-o", "addr")],
            "rules": rules,
            "netns": run("ip", "netns", "list")}


def ipam_leases(node: NodeLayer) -> list[str]:
    root = Path(node.config.state_dir, "cni", "ipam")
    return sorted(p.name for p in root.rglob("*")
                  if p.is_file() and p.name not in ("lock",)
                  and not p.name.startswith("last_reserved_ip"))


def web_pod(name: str, image: str, host_port: int = 0, **kw: object) -> PodSpec:
    serve = ("cat /etc/hosts /etc/resolv.conf; mkdir -p /www && echo hello from $(hostname) "
             "> /www/index.html && exec httpd -f -p 8080 -h /www")
    ports = (ContainerPort(8080, host_port),) if host_port else ()
    return PodSpec(name=name, stop_grace_s=0.5, containers=(
        ContainerSpec("web", image, command=("sh", "-c", serve), ports=ports),), **kw)  # type: ignore[arg-type]


def test_a_pod_with_a_host_port_serves_on_127_0_0_1_and_leaves_nothing(
        bnode: NodeLayer, busybox: str) -> None:
    before = host_network_state()
    port = free_port()
    spec = web_pod("shop", busybox, port)
    assert spec.network is PodNetwork.BRIDGE  # ports choose the bridge
    pods = Pods(bnode)
    pods.start(spec, "s")
    wait_for(lambda: fetch(f"http://127.0.0.1:{port}/") == b"hello from shop\n")
    address = pods.networks.address("shop")
    assert address is not None and address.gateway
    # The pod's own address, on the bridge, from the node.
    assert fetch(f"http://{address.address}:8080/") == b"hello from shop\n"
    # Its /etc/hosts names the pod on that address; resolv.conf has no loopback server.
    logged = lines(bnode, "shop", "web")
    assert f"{address.address}\tshop" in logged
    assert "127.0.0.1\tlocalhost" in logged
    assert not any(line.startswith("nameserver 127.") for line in logged)
    during = host_network_state()
    assert bridge_name(bnode.cgroups.root_name) in during["links"]
    assert any(f"--dport {port}" in rule for rule in during["rules"])
    assert ipam_leases(bnode) == [address.address]
    pods.free("shop")
    assert fetch(f"http://127.0.0.1:{port}/") is None
    assert host_network_state() == before
    assert ipam_leases(bnode) == []
    assert pods.networks.attached() == []


def test_two_bridge_pods_reach_each_other_by_address(bnode: NodeLayer, busybox: str) -> None:
    pods = Pods(bnode)
    port = free_port()
    pods.start(web_pod("server", busybox, port), "s")
    server = pods.networks.address("server")
    assert server is not None
    # By address, and through the published port on the node's bridge address (hairpin).
    get = ("until wget -qO- http://{0}/; do sleep 0.2; done; echo via {0}")
    client = PodSpec(name="client", network=PodNetwork.BRIDGE, stop_grace_s=0.5, containers=(
        ContainerSpec("get", busybox, command=(
            "sh", "-c", get.format(f"{server.address}:8080") + "; "
            + get.format(f"{server.gateway}:{port}") + "; exec sleep 1000")),))
    pods.start(client, "s")
    wait_for(lambda: f"via {server.gateway}:{port}" in lines(bnode, "client", "get"))
    assert lines(bnode, "client", "get")[:4] == [
        "hello from server", f"via {server.address}:8080",
        "hello from server", f"via {server.gateway}:{port}"]
    other = pods.networks.address("client")
    assert other is not None and other.address != server.address
    pods.free("client")
    pods.free("server")
    assert not os.path.exists(os.path.join("/sys/class/net",
                                           bridge_name(bnode.cgroups.root_name)))


def test_stopping_a_pod_removes_its_network_and_starting_it_brings_it_back(
        bnode: NodeLayer, busybox: str) -> None:
    before = host_network_state()
    port = free_port()
    spec = web_pod("cycle", busybox, port)
    pods = Pods(bnode)
    pods.start(spec, "s")
    wait_for(lambda: fetch(f"http://127.0.0.1:{port}/") == b"hello from cycle\n")
    pods.stop("cycle")
    assert host_network_state() == before
    assert ipam_leases(bnode) == [] and pods.networks.attached() == []
    pods.start(spec, "s")
    wait_for(lambda: fetch(f"http://127.0.0.1:{port}/") == b"hello from cycle\n")
    pods.free("cycle")
    assert host_network_state() == before


def test_a_loopback_pod_gets_hosts_files_and_no_bridge(bnode: NodeLayer, busybox: str) -> None:
    pods = Pods(bnode)
    spec = web_pod("quiet", busybox)
    assert spec.network is PodNetwork.LOOPBACK  # no ports, no network: as before
    pods.start(spec, "s")
    wait_for(lambda: "127.0.1.1\tquiet" in lines(bnode, "quiet", "web"))
    assert pods.networks.address("quiet") is None
    assert not os.path.exists(os.path.join("/sys/class/net",
                                           bridge_name(bnode.cgroups.root_name)))
    pods.free("quiet")
    assert pods.networks.attached() == []


def test_a_host_port_two_pods_ask_for_is_refused_and_changes_nothing(
        bnode: NodeLayer, busybox: str) -> None:
    port = free_port()
    pods = Pods(bnode)
    pods.allocate(web_pod("first", busybox, port), "s")
    with pytest.raises(FailedPrecondition, match=f"host port {port}/tcp is published by "
                                                 "pod 'first'"):
        pods.allocate(web_pod("second", busybox, port), "s")
    assert pods.networks.attached() == ["first"]
    assert bnode.applied_spec(PodSpec.kind, "second") is None


def test_contradictory_networks_are_refused(bnode: NodeLayer, busybox: str) -> None:
    pods = Pods(bnode)
    with pytest.raises(InvalidArgument, match="loopback pod cannot"):
        pods.allocate(web_pod("lo", busybox, 18080, network=PodNetwork.LOOPBACK), "s")
    with pytest.raises(InvalidArgument, match="contradicts"):
        pods.allocate(web_pod("both", busybox, host_network=True,
                              network=PodNetwork.BRIDGE), "s")
    twice = PodSpec(name="twice", containers=(
        ContainerSpec("a", busybox, ports=(ContainerPort(80, 18080),)),
        ContainerSpec("b", busybox, ports=(ContainerPort(81, 18080, Protocol.TCP),))))
    with pytest.raises(InvalidArgument, match="published twice"):
        pods.allocate(twice, "s")
    assert pods.networks.attached() == []


def test_an_interrupted_set_up_is_undone_by_reconcile(bnode: NodeLayer, busybox: str) -> None:
    before = host_network_state()
    pods = Pods(bnode)
    port = free_port()
    # A run that died after the ADD, before the pod was recorded ...
    pods.networks.setup(web_pod("lost", busybox, port))
    # ... and one that died during the ADD (the record has no result yet).
    pods.networks.setup(web_pod("half", busybox, free_port()))
    record = pods.networks.read_record("half")
    assert record is not None
    pods.networks._write_record("half", {**record, "result": None})
    assert len(pods.networks.attached()) == 2
    found = reconcile(bnode)
    assert sorted(f for f in found if "network" in f) == [
        "Pod/half: removed the network of an interrupted run",
        "Pod/lost: removed the network of an interrupted run"]
    assert pods.networks.attached() == []
    assert ipam_leases(bnode) == []
    assert host_network_state() == before


def test_an_allocate_repeated_after_a_crash_reuses_or_redoes_the_chain(
        bnode: NodeLayer, busybox: str) -> None:
    pods = Pods(bnode)
    spec = web_pod("again", busybox, free_port())
    pods.allocate(spec, "s")
    first = pods.networks.address("again")
    pods.allocate(spec, "s")  # recorded and attached: nothing redone
    assert pods.networks.address("again") == first
    record = pods.networks.read_record("again")
    assert record is not None
    pods.networks._write_record("again", {**record, "result": None})  # died mid-ADD
    pods.start(spec, "s")
    assert pods.networks.address("again") is not None
    assert len(ipam_leases(bnode)) == 1  # the half-done ADD's lease was given back
    pods.free("again")
    assert ipam_leases(bnode) == []


def test_plugin_errors_carry_the_plugins_message() -> None:
    with pytest.raises(Exception, match="bridge"):
        cni.invoke("ADD", {"cniVersion": cni.CNI_VERSION, "name": "x", "type": "bridge",
                           "ipam": {"type": "host-local", "ranges": [[{"subnet": "nope"}]]}},
                   container_id="t.x", netns="/run/netns/does-not-exist")
