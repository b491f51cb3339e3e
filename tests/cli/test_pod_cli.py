"""A Pod manifest through plan / apply / status / logs / destroy on this machine: a real
OCI image layout, real runc, real cgroups and a real SQLite file."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from provisioner.cli import main
from tests.cli.test_node_cli import Node, node  # noqa: F401 - the fixture
from tests.daemon.node_harness import running_daemon
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


def test_a_pod_manifest_through_a_daemon(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The path a playbook takes to a node: the CLI (or module) -> NodeService -> pods."""
    image = build_busybox_layout(tmp_path / "busybox")
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(POD.replace("IMAGE", image))
    with running_daemon(tmp_path / "daemon") as daemon:
        where = ["--target", daemon.target]
        assert main(["apply", str(manifest), *where]) == 0
        out = capsys.readouterr().out
        assert "Apply complete: 2 created" in out, out
        deadline = time.monotonic() + 10
        while True:  # a started container that has not printed yet has no lines: exit 0
            assert main(["logs", "shop.web", *where]) == 0
            if "serving from shop" in capsys.readouterr().out:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert main(["logs", "shop.worker", *where]) == 0  # sleeps, never prints
        assert capsys.readouterr().out == ""
        assert main(["logs", "shop.nobody", *where]) == 1
        assert "no logs for container 'shop.nobody'" in capsys.readouterr().err
        assert main(["status", "--json", *where]) == 0
        rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["resources"]}
        assert rows["shop"]["state"] == "running"
        assert main(["destroy", str(manifest), *where]) == 0
        assert "2 deleted" in capsys.readouterr().out
        assert daemon.layer.store.list_resources() == []
