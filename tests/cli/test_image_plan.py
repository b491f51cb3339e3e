"""An image the node cannot use is refused at plan (not first at apply), naming the pod,
its container and what is wrong; locally and through a daemon. Real OCI layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.cli import main
from tests.cli.test_node_cli import Node, node  # noqa: F401 - the fixture
from tests.daemon.node_harness import running_daemon
from tests.oci_fixture import build_busybox_layout

pytestmark = pytest.mark.kernel

POD = """\
apiVersion: provisioner/v1
kind: Cell
metadata: {name: apps}
---
apiVersion: provisioner/v1
kind: Pod
metadata: {name: shop}
spec:
  cell: apps
  containers:
    - name: web
      image: 'IMAGE'
"""


def plan(target: Node, capsys: pytest.CaptureFixture[str], image: str,
         command: str = "plan") -> tuple[int, str]:
    path = target.tmp / "pod.yaml"
    path.write_text(POD.replace("IMAGE", image))
    code, out, err = target.run(capsys, command, str(path))
    return code, out + err


def test_a_usable_layout_plans(node: Node, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    image = build_busybox_layout(node.tmp / "busybox")
    code, text = plan(node, capsys, f"oci:{image}:latest")
    assert code == 0, text
    assert "allocate Pod/shop" in " ".join(text.split()), text


@pytest.mark.parametrize(("image", "expected"), [
    ("oci:{tmp}/no-such-layout", "no-such-layout: no such directory"),
    ("oci:{busybox}:v9", "'v9'"),
])
def test_an_unusable_image_is_refused_at_plan_naming_the_pod(
        node: Node, capsys: pytest.CaptureFixture[str], image: str,  # noqa: F811
        expected: str) -> None:
    busybox = build_busybox_layout(node.tmp / "busybox")
    image = image.format(tmp=node.tmp, busybox=busybox)
    for command in ("plan", "apply"):
        code, text = plan(node, capsys, image, command)
        assert code == 1, text
        assert "pod.yaml:5:1: Pod/shop: container 'web': " in text, text
        assert expected in text, text
    assert node.status(capsys) == {}  # not even the cell: the apply never started


def test_a_registry_reference_plans_its_pull_without_contacting_the_registry(
        node: Node, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    # Port 1 on loopback: nothing listens; the plan does not need the registry.
    code, text = plan(node, capsys, "127.0.0.1:1/team/app@sha256:" + "a" * 64)
    assert code == 0, text
    assert "pulls 127.0.0.1:1/team/app@sha256:" in text, text
    code, text = plan(node, capsys, "busybox")
    assert code == 0 and "pulls docker.io/library/busybox:latest" in text, text


def test_a_daemon_refuses_the_plan_naming_the_pod(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(POD.replace("IMAGE", f"oci:{tmp_path}/missing:latest"))
    with running_daemon(tmp_path / "daemon") as daemon:
        assert main(["plan", str(path), "--target", daemon.target]) == 1
        assert daemon.layer.store.list_resources() == []
    err = capsys.readouterr().err
    assert "FAILED_PRECONDITION" in err or "cannot use the image" in err, err
    assert "Pod/shop: container 'web': " in err and "missing: no such directory" in err, err
