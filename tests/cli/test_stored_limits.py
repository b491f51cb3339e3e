"""The user's path out of a grace period an older version accepted (99999999h): plan,
apply of a sane value and destroy all work, and the process is gone. Real kernel."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provisioner.model import Kind
from provisioner.node.runtime.layer import NodeConfig, NodeLayer
from tests.cli.test_node_cli import Node, node  # noqa: F401 - the fixture

pytestmark = pytest.mark.kernel
HUGE_S = 99999999 * 3600.0
MANIFEST = """apiVersion: provisioner/v1
kind: Executable
metadata: {{name: sleeper}}
spec: {{command: "sleep 1000", stopGracePeriod: {grace}}}
"""


def test_a_stored_huge_grace_can_be_changed_and_destroyed(
        node: Node, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    path = node.tmp / "m.yaml"
    path.write_text(MANIFEST.format(grace="10s"))
    code, out, _ = node.run(capsys, "apply", str(path))
    assert code == 0, out
    pid = node.status(capsys)["Executable/sleeper"]["pid"]
    # What a version without the limit stored for `stopGracePeriod: 99999999h`.
    layer = NodeLayer(NodeConfig(state_dir=node.state_dir, cgroup_root=node.root))
    try:
        record = layer.store.get_resource(Kind.EXECUTABLE, "sleeper")
        assert record is not None
        data = json.loads(record.spec_json)
        data["stop_grace_s"] = HUGE_S
        with layer.store.transaction() as store:
            store.put_resource(Kind.EXECUTABLE, "sleeper", json.dumps(data), record.manifest_set)
        status_file = Path(layer.status_file("sleeper"))
        status = json.loads(status_file.read_text())
        status["stop_grace_s"] = HUGE_S
        status_file.write_text(json.dumps(status))
    finally:
        layer.close()
    path.write_text(MANIFEST.format(grace="5s"))
    code, out, err = node.run(capsys, "plan", str(path))
    assert code == 0 and "stopGracePeriod" in out, out + err
    code, out, err = node.run(capsys, "apply", str(path))
    assert code == 0, out + err
    code, out, err = node.run(capsys, "destroy", str(path))
    assert code == 0 and "1 deleted" in out, out + err
    assert not os.path.exists(f"/proc/{pid}")
