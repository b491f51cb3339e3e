"""The ``provisioner_manifest`` module through real ``ansible-playbook`` runs of
``playbooks/apply.yml`` and ``playbooks/teardown.yml`` from the repository root: real
cgroups, real processes, a private state directory and cgroup root per test (passed as
playbook variables), so the machine's daemon and default state are never touched."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner.node.layer import NodeConfig, NodeLayer
from tests.conftest import make_config, tear_down
from tests.daemon.node_harness import running_daemon

pytestmark = pytest.mark.kernel
REPO = Path(__file__).parents[2]
VENV_BIN = REPO / ".venv" / "bin"
EXAMPLES = REPO / "examples" / "node"
RECAP_RE = re.compile(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                      r"failed=(\d+)")


@dataclass
class Run:
    code: int
    out: str
    ok: int
    changed: int
    failed: int


class Play:
    """Runs the repository's playbooks against a private node."""

    def __init__(self, tmp: Path) -> None:
        config = make_config(tmp / "state")
        self.state_dir, self.root, self.tmp = config.state_dir, config.cgroup_root, tmp
        #: Where the module acts: this state and cgroup root, or {"target": a daemon}.
        self.node: dict[str, str] = {"state_dir": self.state_dir, "cgroup_root": self.root}
        self.src = tmp / "node"
        shutil.copytree(EXAMPLES, self.src)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("ANSIBLE_", "PROVISIONER_"))}
        self.env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                        ANSIBLE_FORCE_COLOR="0", ANSIBLE_DEPRECATION_WARNINGS="0",
                        ANSIBLE_HOME=str(tmp / "ansible-home"),
                        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-local"),
                        ANSIBLE_REMOTE_TEMP=str(tmp / "ansible-remote"))

    def run(self, playbook: str, *flags: str, **variables: Any) -> Run:
        extra = {**self.node, "manifests": str(self.src), **variables}
        done = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), f"playbooks/{playbook}", "-e",
             json.dumps(extra), *flags],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=60, check=False)
        out = done.stdout + done.stderr
        recap = RECAP_RE.search(out)
        assert recap, out
        ok, changed, _, failed = (int(n) for n in recap.groups())
        return Run(done.returncode, out, ok, changed, failed)

    def status(self) -> dict[str, dict[str, Any]]:
        where = (["--target", self.node["target"]] if "target" in self.node else
                 ["--state-dir", self.state_dir, "--cgroup-root", self.root])
        done = subprocess.run([str(VENV_BIN / "provisioner"), "status", "--json", *where],
                              env=self.env, capture_output=True, text=True, timeout=30,
                              check=True)
        return {f"{r['kind']}/{r['name']}": r for r in json.loads(done.stdout)["resources"]}

    def pids(self) -> dict[str, int]:
        return {k: r["pid"] for k, r in self.status().items() if k.startswith("Executable/")}

    def cell_dirs(self) -> list[Path]:
        """Cgroups of cells below the root, in every hierarchy (v1 controllers, v2)."""
        roots = [*Path("/sys/fs/cgroup").glob(f"*/{self.root}"),
                 Path(f"/sys/fs/cgroup/{self.root}")]
        return [p for root in roots if root.is_dir() for p in root.iterdir() if p.is_dir()]

    def cpu_weight_file(self, cell: str) -> str:
        """The kernel's CPU weight of ``cell``: v1 cpu.shares, else v2 cpu.weight."""
        v1 = Path(f"/sys/fs/cgroup/cpu/{self.root}/{cell}/cpu.shares")
        v2 = Path(f"/sys/fs/cgroup/{self.root}/{cell}/cpu.weight")
        return (v1 if v1.exists() else v2).read_text().strip()

    def edit(self, name: str, old: str, new: str) -> Path:
        path = self.src / name
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))
        return path

    def drop_documents(self, name: str, needle: str) -> None:
        path = self.src / name
        documents = path.read_text().split("\n---\n")
        path.write_text("\n---\n".join(d for d in documents if needle not in d))


@pytest.fixture
def play(tmp_path: Path) -> Iterator[Play]:
    if os.geteuid() != 0:
        pytest.skip("needs root, cgroups and namespaces")
    created = Play(tmp_path)
    try:
        yield created
    finally:
        tear_down(NodeLayer(NodeConfig(state_dir=created.state_dir,
                                       cgroup_root=created.root)))


def gone(pid: int, within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_apply_twice_is_changed_then_ok_and_teardown_removes_everything(play: Play) -> None:
    first = play.run("apply.yml")
    assert (first.code, first.changed, first.failed) == (0, 1, 0), first.out
    assert '"created": 6' in first.out and "start Executable/web-server: created" in first.out
    running = play.pids()
    assert len(running) == 3 and all(Path(f"/proc/{pid}").exists() for pid in running.values())
    second = play.run("apply.yml")
    assert (second.code, second.changed, second.failed) == (0, 0, 0), second.out
    assert "No changes: 6 resources" in second.out
    assert play.pids() == running  # nothing was restarted
    removed = play.run("teardown.yml")
    assert (removed.code, removed.changed) == (0, 1), removed.out
    assert '"deleted": 6' in removed.out
    assert play.status() == {}
    assert play.cell_dirs() == []
    assert all(gone(pid) for pid in running.values())
    again = play.run("teardown.yml")
    assert (again.code, again.changed) == (0, 0), again.out


def test_check_and_diff_change_nothing_and_invalid_manifests_fail(play: Play) -> None:
    assert play.run("apply.yml").changed == 1
    running, generation = play.pids(), play.status()
    shares = play.cpu_weight_file("web")
    play.edit("cells.yaml", "weight: 200 ", "weight: 300 ")
    play.edit("apps.yaml", '"sleep infinity"', '"sleep 99999"')
    checked = play.run("apply.yml", "--check", "--diff")
    assert (checked.code, checked.changed, checked.failed) == (0, 1, 0), checked.out
    assert "--- before" in checked.out and "+++ after" in checked.out
    assert "-  cpu.weight: 200\n+  cpu.weight: 300" in checked.out
    assert '-  command: "sleep infinity"\n+  command: "sleep 99999"' in checked.out
    assert "update Cell/web: spec changed: cpu.weight 200 -> 300 (in place)" in checked.out
    assert play.pids() == running  # check mode: no process replaced,
    assert play.cpu_weight_file("web") == shares  # no limit written,
    assert play.status() == generation  # nothing recorded
    cells = play.edit("cells.yaml", "weight: 300 ", "weight: 0 ")
    invalid = play.run("apply.yml")
    assert (invalid.code, invalid.failed) == (2, 1), invalid.out
    assert re.search(rf"{re.escape(str(cells))}:\d+:\d+: spec\.cpu\.weight: 0 is less than "
                     "the minimum of 1", invalid.out), invalid.out
    assert re.search(r"invalid manifests \(\d+ error\(s\)\), nothing was changed", invalid.out)
    assert play.pids() == running and play.cpu_weight_file("web") == shares
    assert play.status() == generation


def test_prune_only_when_asked(play: Play) -> None:
    assert play.run("apply.yml").changed == 1
    sandboxed = play.pids()["Executable/sandboxed"]
    play.drop_documents("apps.yaml", "name: sandboxed")
    play.drop_documents("cells.yaml", "name: sandbox\n")
    kept = play.run("apply.yml")
    assert (kept.code, kept.changed) == (0, 0), kept.out
    assert re.search(r'"would_prune": \[\s*"Cell/sandbox",\s*"Executable/sandboxed"', kept.out)
    assert {"Cell/sandbox", "Executable/sandboxed"} <= set(play.status())
    pruned = play.run("apply.yml", prune=True)
    assert (pruned.code, pruned.changed) == (0, 1), pruned.out
    assert "free Cell/sandbox: pruned: no longer declared" in pruned.out
    assert set(play.status()) == {"Cell/web", "Cell/web/cache", "Executable/web-server",
                                  "Executable/cache"}
    assert gone(sandboxed)


def test_a_failed_step_fails_the_task_naming_it(play: Play) -> None:
    play.edit("apps.yaml", "working_dir: /tmp", "working_dir: /no/such/dir")
    failed = play.run("apply.yml")
    assert (failed.code, failed.failed) == (2, 1), failed.out
    assert re.search(r"step #\d+ \(start Executable/sandboxed: created\) failed: .*"
                     r"/no/such/dir", failed.out), failed.out
    assert '"changed": true' in failed.out  # the other steps were done
    status = play.status()
    assert status["Executable/web-server"]["state"] == "running"
    assert status.get("Executable/sandboxed", {}).get("state") != "running", status
    play.edit("apps.yaml", "working_dir: /no/such/dir", "working_dir: /tmp")
    fixed = play.run("apply.yml")
    assert (fixed.code, fixed.changed) == (0, 1), fixed.out
    assert play.status()["Executable/sandboxed"]["state"] == "running"


def test_a_target_without_the_provisioner_is_told_what_is_missing(play: Play) -> None:
    system = Path("/usr/bin/python3")
    if not system.exists() or subprocess.run(
            [str(system), "-c", "import provisioner"], cwd="/", capture_output=True,
            check=False).returncode == 0:
        pytest.skip("needs a python without the provisioner package")
    result = play.run("apply.yml", ansible_python_interpreter=str(system))
    assert result.failed == 1, result.out
    assert "Failed to import the required Python library (provisioner)" in result.out
    assert "ansible_python_interpreter" in result.out
    assert play.cell_dirs() == []


def test_manifest_vars_reach_the_templates(play: Play) -> None:
    templated = play.tmp / "batch.yaml"
    shutil.copy(REPO / "examples" / "extras" / "templated.yaml", templated)
    checked = play.run("apply.yml", "--check", manifests=str(templated),
                       manifest_vars={"workers": 3, "batch_weight": 500})
    assert (checked.code, checked.changed) == (0, 1), checked.out
    assert "Plan: 3 to create, 0 unchanged" in checked.out
    assert "manifest set 'batch'" in checked.out and "allocate Cell/batch-2" in checked.out
    assert play.status() == {} and play.cell_dirs() == []  # check mode


def test_through_a_node_daemon(play: Play, tmp_path: Path) -> None:
    with running_daemon(tmp_path / "daemon") as daemon:
        play.node = {"target": daemon.target}
        first = play.run("apply.yml")
        assert (first.code, first.changed, first.failed) == (0, 1, 0), first.out
        running = play.pids()
        assert len(running) == 3
        second = play.run("apply.yml")
        assert (second.code, second.changed) == (0, 0), second.out
        assert play.pids() == running
        play.edit("cells.yaml", "weight: 200 ", "weight: 300 ")
        checked = play.run("apply.yml", "--check", "--diff")
        assert (checked.code, checked.changed) == (0, 1), checked.out
        assert "-  cpu.weight: 200\n+  cpu.weight: 300" in checked.out
        root = daemon.layer.config.cgroup_root
        shares = Path(f"/sys/fs/cgroup/cpu/{root}/web/cpu.shares")
        if shares.exists():
            assert shares.read_text().strip() == str(200 * 1024 // 100)
        removed = play.run("teardown.yml")
        assert (removed.code, removed.changed) == (0, 1), removed.out
        assert play.status() == {}
        assert all(gone(pid) for pid in running.values())
