"""A container whose command does not exist ends as ``failed`` with runc's reason,
not as ``exited``; one whose command runs and fails stays ``exited``. Real runc."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.cli.test_node_cli import Node, node  # noqa: F401 - the fixture
from tests.oci_fixture import build_busybox_layout

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc")]

POD = """\
apiVersion: provisioner/v1
kind: Pod
metadata: {name: NAME}
spec:
  stopGracePeriod: 1s
  containers:
    - name: c
      image: oci:IMAGE
      command: COMMAND
"""


def settled(target: Node, capsys: pytest.CaptureFixture[str], name: str
            ) -> dict[str, object]:
    deadline = time.monotonic() + 15
    while True:
        row = target.status(capsys)[f"Pod/{name}"]
        if row["state"] != "running":
            return row
        assert time.monotonic() < deadline, row
        time.sleep(0.05)


def test_a_missing_command_fails_with_runcs_reason(
        node: Node, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    image = build_busybox_layout(node.tmp / "busybox")
    path = node.tmp / "pods.yaml"
    path.write_text(POD.replace("NAME", "gone").replace("IMAGE", image).replace(
        "COMMAND", '["/no/such/program", "x"]') + "---\n" + POD.replace(
        "NAME", "fails").replace("IMAGE", image).replace("COMMAND", '[sh, -c, "exit 3"]'))
    code, out, err = node.run(capsys, "apply", str(path))
    assert code == 0, out + err
    gone = settled(node, capsys, "gone")
    assert gone["state"] == "failed", gone
    drift = " ".join(map(str, gone["drift"]))  # type: ignore[call-overload]
    assert "container c: runc: " in drift and "/no/such/program" in drift, gone
    assert "no such file or directory" in drift, gone
    fails = settled(node, capsys, "fails")
    assert fails["state"] == "exited (exited with status 3)", fails
    assert not fails["drift"], fails
    # The plan says why it starts it again.
    code, out, _ = node.run(capsys, "plan", str(path))
    assert "Pod/gone" in out and "failed to start" in out, out
    code, out, _ = node.run(capsys, "status")
    assert "failed" in out and "runc: " in out, out
    code, out, err = node.run(capsys, "destroy", str(path))
    assert code == 0 and node.status(capsys) == {}, out + err
