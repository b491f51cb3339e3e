"""A Pod manifest through plan / apply / status / logs / destroy on this machine: a real
OCI image layout, real runc, real cgroups and a real SQLite file."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.cli.test_node_cli import Node, node  # noqa: F401 - the fixture
from tests.oci_fixture import build_busybox_layout

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc")]

POD = """\
apiVersion: provisioner/v1
kind: Cell
metadata: {name: apps}
spec: {cpu: {weight: 300}}
---
apiVersion: provisioner/v1
kind: Pod
metadata: {name: shop}
spec:
  cell: apps
  stopGracePeriod: 1s
  containers:
    - name: web
      image: oci:IMAGE
      command: ["sh", "-c", "echo serving from $(hostname); exec sleep 1000"]
    - name: worker
      image: oci:IMAGE
      command: ["sleep", "1000"]
"""


def write_pod(target: Node, image: str, text: str = POD) -> Path:
    path = target.tmp / "pod.yaml"
    path.write_text(text.replace("IMAGE", image))
    return path


def test_a_pod_manifest_applies_converges_and_is_destroyed(
        node: Node, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    image = build_busybox_layout(node.tmp / "busybox")
    manifest = write_pod(node, image)
    code, out, _ = node.run(capsys, "plan", str(manifest))
    assert code == 0 and "Pod/shop" in out and "allocate" in out and "start" in out
    code, out, _ = node.run(capsys, "apply", str(manifest))
    assert code == 0, out
    assert "Apply complete: 2 created" in out
    status = node.status(capsys)
    assert status["Pod/shop"]["state"] == "running"
    deadline = time.monotonic() + 10
    while True:
        code, out, _ = node.run(capsys, "logs", "shop.web")
        if "serving from shop" in out:
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.05)
    code, out, _ = node.run(capsys, "apply", str(manifest))
    assert code == 0 and "No changes: 2 resources" in out
    # A changed command replaces the pod.
    write_pod(node, image, POD.replace('"sleep", "1000"', '"sleep", "2000"'))
    code, out, _ = node.run(capsys, "apply", str(manifest))
    assert code == 0 and "1 replaced" in out, out
    assert node.status(capsys)["Pod/shop"]["state"] == "running"
    code, out, _ = node.run(capsys, "destroy", str(manifest))
    assert code == 0 and "2 deleted" in out, out
    assert node.status(capsys) == {}
    assert node.cgroup_dirs() == []
    assert not os.path.exists(os.path.join(node.state_dir, "pods", "shop"))


def test_a_pod_with_a_missing_image_fails_cleanly(
        node: Node, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    manifest = write_pod(node, str(node.tmp / "no-such-layout"))
    code, out, err = node.run(capsys, "apply", str(manifest))
    assert code == 1
    assert "no-such-layout" in out + err
    assert "Pod/shop" not in node.status(capsys)  # the cell may be there; the pod is not
