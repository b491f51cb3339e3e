"""Issue 15's "done when", end to end through the CLI: busybox pushed with skopeo to
Debian's docker-registry on 127.0.0.1, a Pod whose container image comes from that
registry (not an OCI layout) serving HTTP with busybox httpd on a hostPort, a page
fetched from 127.0.0.1:<hostPort>; destroy leaves no interface, address, iptables rule,
network namespace, IPAM lease or process; the image then goes with ``images prune``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_crash_leftovers import processes_of
from tests.cli.test_pod_network_cli import NetNode, leases, net_node, serves  # noqa: F401
from tests.node.test_pod_network import fetch, free_port, host_network_state
from tests.oci_fixture import busybox_image
from tests.registry_fixture import Registry, local_registry, push

__all__ = ["busybox_image"]
pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
              pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"),
                                 reason="needs containernetworking-plugins")]

POD = """\
apiVersion: provisioner/v1
kind: Pod
metadata: {name: web}
spec:
  stopGracePeriod: 1s
  containers:
    - name: httpd
      image: IMAGE
      command: ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) > /www/index.html
                             && exec httpd -f -p 8080 -h /www"]
      ports: [{containerPort: 8080, hostPort: PORT, protocol: TCP}]
"""


def images_json(node: NetNode, *argv: str) -> dict[str, Any]:
    """``provisioner images ARGV --json`` on ``node``, in a subprocess."""
    done = subprocess.run([sys.executable, "-m", "provisioner", "images", *argv, "--json",
                           *node.args()], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with local_registry(tmp_path / "registry") as running:
        yield running


def test_a_registry_image_serves_on_a_host_port_and_leaves_nothing(
        net_node: NetNode, registry: Registry, busybox_image: str) -> None:  # noqa: F811
    before = host_network_state()
    digest = push(registry, busybox_image, "library/busybox", "1.36")
    image = f"{registry.host}/library/busybox:1.36"
    port = free_port()
    manifest = net_node.tmp / "web.yaml"
    manifest.write_text(POD.replace("IMAGE", image).replace("PORT", str(port)))

    plan = net_node.run_ok("plan", str(manifest))
    assert f"pulls {image}" in " ".join(plan.split()), plan
    net_node.run_ok("apply", str(manifest))
    assert serves(port, "web")  # http://127.0.0.1:<port>/ through portmap's DNAT
    status = json.loads(net_node.run_ok("status", "--json"))
    assert [(r["name"], r["state"]) for r in status["resources"]] == [("web", "running")]
    # The container runs from the registry image (no layout involved), which is in use.
    listing = images_json(net_node, "list")
    assert [(i["digest"], i["references"], i["pods"]) for i in listing["images"]] == [
        (digest, [image], ["web"])]
    pruned = images_json(net_node, "prune", "--all")
    assert pruned["removed"] == [] and pruned["removed_blobs"] == 0
    assert serves(port, "web")

    net_node.run_ok("destroy", str(manifest))
    assert fetch(f"http://127.0.0.1:{port}/") is None
    assert host_network_state() == before
    assert processes_of(net_node) == []
    assert leases(net_node) == []
    # Nothing uses the image now: --all removes it and every blob it had.
    pruned = images_json(net_node, "prune", "--all")
    assert [i["digest"] for i in pruned["removed"]] == [digest]
    assert pruned["removed_blobs"] == 3 and pruned["bytes_freed"] > 1_000_000
    images = Path(net_node.state_dir, "images")
    assert list((images / "blobs" / "sha256").iterdir()) == []
    assert list((images / "refs").iterdir()) == []
