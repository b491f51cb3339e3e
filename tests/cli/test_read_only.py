"""plan, status and check mode only look: on a node never used they create nothing (no
state directory, no state.db, no cgroup root) and report an empty node. Before, all
three were created by merely looking."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.errors import FailedPrecondition
from provisioner.executors.choose import open_executor
from provisioner.executors.local import LocalExecutor
from provisioner.node.runtime.layer import NodeConfig, NodeLayer
from tests.ansible.harness import Play
from tests.conftest import make_config, tear_down

pytestmark = pytest.mark.kernel
EXAMPLES = Path(__file__).parents[2] / "examples" / "node"


class FreshNode:
    def __init__(self, tmp: Path) -> None:
        config = make_config(tmp / "state")
        self.state_dir, self.root = config.state_dir, config.cgroup_root
        self.manifests = tmp / "manifests"
        shutil.copytree(EXAMPLES, self.manifests)

    def args(self) -> list[str]:
        return ["--state-dir", self.state_dir, "--cgroup-root", self.root]

    def touched(self) -> list[str]:
        """What exists of this node: its state directory, its cgroup root anywhere."""
        roots = [*Path("/sys/fs/cgroup").glob(f"*/{self.root}"),
                 Path(f"/sys/fs/cgroup/{self.root}")]
        return [str(p) for p in [Path(self.state_dir), *roots] if p.exists()]


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[FreshNode]:
    if os.geteuid() != 0:
        pytest.skip("needs root, cgroups and namespaces")
    node = FreshNode(tmp_path)
    try:
        yield node
    finally:
        if node.touched():  # only when the test failed: leave no cgroups behind
            tear_down(NodeLayer(NodeConfig(state_dir=node.state_dir, cgroup_root=node.root)))


def test_plan_and_status_on_a_fresh_node_create_nothing(
        fresh: FreshNode, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--json", str(fresh.manifests), *fresh.args()]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["generation"] == 0 and plan["steps"]  # everything to create
    assert main(["plan", "--detailed-exitcode", str(fresh.manifests), *fresh.args()]) == 2
    assert main(["status", "--json", *fresh.args()]) == 0
    status = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert status["resources"] == [] and status["generation"] == 0
    assert fresh.touched() == []


def test_a_read_only_executor_refuses_to_change_the_node(fresh: FreshNode) -> None:
    with open_executor(None, fresh.state_dir, fresh.root, read_only=True) as ex:
        assert isinstance(ex, LocalExecutor)
        assert ex.observe().resources == () and ex.node_id == ""
        with pytest.raises(FailedPrecondition, match="looking only"), ex.locked():
            pass
    assert fresh.touched() == []


def test_plan_and_status_on_a_used_node_see_it_and_change_nothing(
        fresh: FreshNode, capsys: pytest.CaptureFixture[str]) -> None:
    layer = NodeLayer(NodeConfig(state_dir=fresh.state_dir, cgroup_root=fresh.root))
    try:
        assert main(["apply", str(fresh.manifests), *fresh.args()]) == 0
        capsys.readouterr()
        generation = layer.store.generation()
        files = sorted(os.listdir(fresh.state_dir))
        assert main(["status", "--json", *fresh.args()]) == 0
        status = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert status["generation"] == generation and status["resources"]
        assert main(["plan", "--detailed-exitcode", str(fresh.manifests),
                     *fresh.args()]) == 0
        assert layer.store.generation() == generation
        assert sorted(os.listdir(fresh.state_dir)) == files
    finally:
        tear_down(layer)


def test_ansible_check_mode_on_a_fresh_node_creates_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, cgroups and namespaces")
    play = Play(tmp_path)
    node = FreshNode(tmp_path / "fresh")
    play.node = {"state_dir": node.state_dir, "cgroup_root": node.root}
    try:
        checked = play.converge("--check", "--diff")
        assert (checked.code, checked.changed, checked.failed) == (0, 1, 0), checked.out
        assert node.touched() == []
    finally:
        if node.touched():
            tear_down(NodeLayer(NodeConfig(state_dir=node.state_dir, cgroup_root=node.root)))
