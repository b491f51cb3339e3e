"""Pods on the bridge through `provisioner apply` subprocesses: a hostPort served on
127.0.0.1, a host port another manifest set holds refused by plan, and applies SIGKILLed
during network set-up converged by the next apply with nothing leaked."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.daemon.rkt_pods import ProvisionerPods
from provisioner.node.runtime.layer import NodeConfig, NodeLayer
from provisioner.node.runtime.pods import Pods
from tests.cli.test_crash_leftovers import processes_of, started_applying
from tests.cli.test_node_cli import Node
from tests.conftest import tear_down
from tests.daemon.node_harness import running_daemon
from tests.node.test_pod_network import fetch, free_port, host_network_state, random_subnet
from tests.oci_fixture import build_busybox_layout

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
              pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"),
                                 reason="needs containernetworking-plugins")]

POD = """\
apiVersion: provisioner/v1
kind: Pod
metadata: {name: NAME}
spec:
  stopGracePeriod: 1s
  containers:
    - name: web
      image: oci:IMAGE
      command: ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) > /www/index.html
                             && exec httpd -f -p 8080 -h /www"]
      ports: [{containerPort: 8080, hostPort: PORT, protocol: TCP}]
"""


class NetNode(Node):
    """A private node with a pod subnet of its own."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.subnet = random_subnet()

    def args(self) -> list[str]:
        return [*super().args(), "--pod-subnet", self.subnet]

    def cli(self, *argv: str, manifest_set: str = "net") -> subprocess.Popen[bytes]:
        """``provisioner ARGV`` in a subprocess (killable), on this node."""
        return subprocess.Popen(
            [sys.executable, "-m", "provisioner", *argv, *self.args(),
             "--manifest-set", manifest_set],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run_ok(self, *argv: str, manifest_set: str = "net") -> str:
        done = self.cli(*argv, manifest_set=manifest_set)
        out, err = done.communicate(timeout=120)
        assert done.returncode == 0, err.decode()
        return out.decode()


@pytest.fixture
def net_node(tmp_path: Path) -> Iterator[NetNode]:
    if os.geteuid() != 0:
        pytest.skip("needs root, cgroups and namespaces")
    made = NetNode(tmp_path)
    try:
        yield made
    finally:
        tear_down(NodeLayer(NodeConfig(state_dir=made.state_dir, cgroup_root=made.root,
                                       pod_subnet=made.subnet)))


def pods(node: NetNode, image: str, ports: dict[str, int]) -> Path:
    path = node.tmp / "pods.yaml"
    path.write_text("---\n".join(POD.replace("NAME", name).replace("PORT", str(port))
                                 .replace("IMAGE", image) for name, port in ports.items()))
    return path


def serves(port: int, name: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fetch(f"http://127.0.0.1:{port}/") == f"hello from {name}\n".encode():
            return True
        time.sleep(0.2)
    return False


def test_apply_serves_a_host_port_and_plan_refuses_one_taken(net_node: NetNode) -> None:
    before = host_network_state()
    image = build_busybox_layout(net_node.tmp / "busybox")
    port = free_port()
    manifest = pods(net_node, image, {"web": port})
    net_node.run_ok("apply", str(manifest))
    assert serves(port, "web")
    # Another manifest set asking for the same host port: plan fails, nothing changes.
    other = net_node.tmp / "other"
    other.mkdir()
    (other / "pods.yaml").write_text(POD.replace("NAME", "thief").replace(
        "PORT", str(port)).replace("IMAGE", image))
    for command in ("plan", "apply"):
        refused = net_node.cli(command, str(other / "pods.yaml"), manifest_set="other")
        _, err = refused.communicate(timeout=60)
        assert refused.returncode == 1, err.decode()
        assert (f"host port {port}/TCP of Pod/thief is published by Pod/web "
                "(manifest set 'net'), which stays") in err.decode()
    assert serves(port, "web")
    net_node.run_ok("destroy", str(manifest))
    assert fetch(f"http://127.0.0.1:{port}/") is None
    assert host_network_state() == before
    assert processes_of(net_node) == []


def test_applies_killed_during_network_set_up_converge_without_leaks(
        net_node: NetNode) -> None:
    before = host_network_state()
    image = build_busybox_layout(net_node.tmp / "busybox")
    ports = {f"p{i}": free_port() for i in range(3)}
    manifest = pods(net_node, image, ports)
    rng = random.Random(os.environ.get("CRASH_SEED", "15"))
    # One apply and destroy to completion: how long the steps take after the plan.
    run = net_node.cli("apply", str(manifest), "--json")
    began = started_applying(run)
    assert run.wait(120) == 0
    span = time.monotonic() - began
    net_node.run_ok("destroy", str(manifest))
    left: list[list[str]] = []  # the pod networks each kill left (for the report)
    for _ in range(6):
        run = net_node.cli("apply", str(manifest), "--json")
        started_applying(run)
        time.sleep(rng.uniform(0, span))
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        left.append(sorted(p.stem for p in Path(net_node.state_dir, "cni", "pods")
                           .glob("*.json")))
        if rng.random() < 0.5:
            net_node.run_ok("destroy", str(manifest))  # start the next one from scratch
    print(f"steps took {span:.2f}s; networks left by the kills: {left}")
    net_node.run_ok("apply", str(manifest))
    for name, port in ports.items():
        assert serves(port, name), name
    records = sorted(p.stem for p in Path(net_node.state_dir, "cni", "pods").glob("*.json"))
    assert records == sorted(ports)
    net_node.run_ok("destroy", str(manifest))
    assert host_network_state() == before
    assert processes_of(net_node) == []
    assert leases(net_node) == []


def leases(node: NetNode) -> list[Path]:
    """The host-local IPAM leases of the node (one file per address)."""
    return [p for p in Path(node.state_dir, "cni", "ipam").rglob("*")
            if p.is_file() and p.name != "lock" and not p.name.startswith("last_")]


def test_an_apply_killed_inside_the_bridge_plugin_converges_on_the_next_apply(
        net_node: NetNode) -> None:
    """Deterministic: the bridge plugin (a wrapper around the real one) has done its
    ADD and hangs before answering; the apply is SIGKILLed there, so the record says
    ADD without a result. The next apply, with the real plugins, converges."""
    before = host_network_state()
    image = build_busybox_layout(net_node.tmp / "busybox")
    port = free_port()
    manifest = pods(net_node, image, {"slow": port})
    plugins = net_node.tmp / "cni"
    plugins.mkdir()
    marker = net_node.tmp / "in-add"
    for name in ("host-local", "portmap", "loopback"):
        (plugins / name).symlink_to(f"/usr/lib/cni/{name}")
    (plugins / "bridge").write_text(
        "#!/bin/sh\nout=$(/usr/lib/cni/bridge); rc=$?\n"
        f'if [ "$CNI_COMMAND" = ADD ]; then echo $$ > {marker}; exec sleep 60; fi\n'
        'echo "$out"; exit $rc\n')
    (plugins / "bridge").chmod(0o755)
    os.environ["PROVISIONER_CNI_PATH"] = str(plugins)
    try:
        run = net_node.cli("apply", str(manifest))
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text().strip():
            assert time.monotonic() < deadline and run.poll() is None, "no ADD seen"
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        run.wait(10)
    finally:
        del os.environ["PROVISIONER_CNI_PATH"]
        os.kill(int(marker.read_text()), signal.SIGKILL)  # the hanging "plugin"
    record = Path(net_node.state_dir, "cni", "pods", "slow.json").read_text()
    assert '"result": null' in record  # ADDed, never answered
    assert any(line.startswith("prov-") for line in host_network_state()["links"])
    net_node.run_ok("apply", str(manifest))
    assert serves(port, "slow")
    assert len(leases(net_node)) == 1  # the interrupted ADD's lease was given back
    net_node.run_ok("destroy", str(manifest))
    assert host_network_state() == before
    assert processes_of(net_node) == []
    assert leases(net_node) == []


def test_a_bridge_pod_through_a_daemon(tmp_path: Path) -> None:
    """CLI -> NodeService -> pods: ports and network travel in the request."""
    image = build_busybox_layout(tmp_path / "busybox")
    port = free_port()
    manifest = tmp_path / "pods.yaml"
    manifest.write_text(POD.replace("NAME", "web").replace("PORT", str(port))
                        .replace("IMAGE", image))
    before = host_network_state()
    with running_daemon(tmp_path / "daemon", pod_subnet=random_subnet()) as daemon:
        where = ["--target", daemon.target]
        assert main(["apply", str(manifest), *where]) == 0
        assert serves(port, "web")
        record = Pods(daemon.layer).networks.address("web")
        assert record is not None and record.address.startswith(
            daemon.layer.config.pod_subnet.rsplit(".", 1)[0])
        [shown] = ProvisionerPods(daemon.layer).pods()  # the rkt API's (its id: a UUID)
        assert [(n.name, n.ipv4) for n in shown.networks] == [
            (f"provisioner-{daemon.layer.cgroups.root_name}", record.address)]
        assert main(["destroy", str(manifest), *where]) == 0
    assert host_network_state() == before
