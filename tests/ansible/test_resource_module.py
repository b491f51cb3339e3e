"""The ``provisioner_resource`` module through real ``ansible-playbook`` runs of playbooks
written per test: real cgroups, real processes, a private state directory and cgroup
root per test (passed to every task as module options; or a private daemon's target),
so the machine's daemon and default state are never touched."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.node.cgroups import detect_layout, make_driver
from provisioner.node.layer import NodeConfig, NodeLayer
from tests.ansible.test_module import REPO, VENV_BIN, Play, Run, gone
from tests.conftest import tear_down
from tests.daemon.node_harness import running_daemon

pytestmark = pytest.mark.kernel
RECAP_RE = re.compile(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                      r"failed=(\d+)\s+skipped=\d+\s+rescued=\d+\s+ignored=(\d+)")


class Tasks(Play):
    """Runs a playbook of the given tasks against a private node."""

    runs = 0

    def play(self, tasks: list[dict[str, Any]], *flags: str) -> Run:
        """One play on this machine; every provisioner_* task gets ``self.node``."""
        for task in tasks:
            for module in ("provisioner_resource", "provisioner_manifest"):
                if module in task:
                    task[module] = {**task[module], **self.node}
        self.runs += 1
        path = self.tmp / f"play-{self.runs}.yml"
        path.write_text(yaml.safe_dump([{
            "hosts": "nodes", "gather_facts": False, "tasks": tasks,
            # Over the inventory's path relative to the repository's playbooks.
            "vars": {"ansible_python_interpreter": str(VENV_BIN / "python")}}]))
        done = subprocess.run([str(VENV_BIN / "ansible-playbook"), str(path), *flags],
                              cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=60, check=False)
        out = done.stdout + done.stderr
        recap = RECAP_RE.search(out)
        assert recap, out
        ok, changed, _, failed, ignored = (int(n) for n in recap.groups())
        self.ignored = ignored
        return Run(done.returncode, out, ok, changed, failed)


def cell(name: str, weight: int, **more: Any) -> dict[str, Any]:
    return {"name": f"cell {name}", "provisioner_resource": {
        "kind": "Cell", "name": name, "spec": {"cpu": {"weight": weight}}, **more}}


def executable(name: str, cell: str, **more: Any) -> dict[str, Any]:
    return {"name": f"executable {name}", "provisioner_resource": {
        "kind": "Executable", "name": name, "labels": {"team": "shop"},
        "spec": {"cell": cell, "command": "sleep 1000", "restartPolicy": "on-failure",
                 "stopGracePeriod": "1s"}, **more}}


def absent(kind: str, name: str, **task: Any) -> dict[str, Any]:
    return {"name": f"remove {kind}/{name}",
            "provisioner_resource": {"kind": kind, "name": name, "state": "absent"}, **task}


@pytest.fixture
def tasks(tmp_path: Path) -> Iterator[Tasks]:
    if os.geteuid() != 0:
        pytest.skip("needs root, cgroups and namespaces")
    created = Tasks(tmp_path)
    try:
        yield created
    finally:
        tear_down(NodeLayer(NodeConfig(state_dir=created.state_dir,
                                       cgroup_root=created.root)))


def sets(play: Play) -> dict[str, str]:
    return {key: resource["manifest_set"] for key, resource in play.status().items()}


def test_declare_check_diff_update_and_remove_one_resource_per_task(tasks: Tasks) -> None:
    web = [cell("web", 200), executable("api", "web")]
    first = tasks.play(web, "-v")
    assert (first.code, first.changed, first.failed) == (0, 2, 0), first.out
    assert '"manifest_set": "cell.web"' in first.out
    assert '"manifest_set": "executable.api"' in first.out
    assert sets(tasks) == {"Cell/web": "cell.web", "Executable/api": "executable.api"}
    pid = tasks.pids()["Executable/api"]
    assert pid in cell_pids(tasks, "web")
    shares, before = tasks.cpu_weight_file("web"), tasks.status()
    second = tasks.play(web)
    assert (second.code, second.changed, second.failed) == (0, 0, 0), second.out
    assert tasks.pids() == {"Executable/api": pid}
    heavier = [cell("web", 300), executable("api", "web")]
    checked = tasks.play(heavier, "--check", "--diff")
    assert (checked.code, checked.changed, checked.failed) == (0, 1, 0), checked.out
    assert "--- before" in checked.out and "+++ after" in checked.out
    assert "-  cpu.weight: 200\n+  cpu.weight: 300" in checked.out
    assert tasks.cpu_weight_file("web") == shares  # check mode: no limit written,
    assert tasks.status() == before  # nothing recorded, nothing restarted
    updated = tasks.play(heavier, "-v")
    assert (updated.code, updated.changed) == (0, 1), updated.out
    assert "update Cell/web: spec changed: cpu.weight 200 -> 300 (in place)" in updated.out
    assert tasks.cpu_weight_file("web") != shares
    assert tasks.pids() == {"Executable/api": pid}  # updated in place: not restarted
    removed = tasks.play([absent("Executable", "api")])
    assert (removed.code, removed.changed) == (0, 1), removed.out
    assert set(tasks.status()) == {"Cell/web"} and gone(pid)  # exactly the executable
    removed = tasks.play([absent("Cell", "web")])
    assert (removed.code, removed.changed) == (0, 1), removed.out
    assert tasks.status() == {} and tasks.cell_dirs() == []


def cell_pids(play: Play, name: str) -> set[int]:
    """Every pid in the cell's cgroups, as the node layer reads them."""
    return make_driver(detect_layout(), play.root).pids(name)


def test_invalid_specs_missing_cells_and_other_sets_are_refused_changing_nothing(
        tasks: Tasks) -> None:
    shared = tasks.tmp / "shared.yaml"
    shared.write_text("apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: shared}\n"
                      "spec: {cpu: {weight: 100}}\n")
    ignore = {"ignore_errors": True}
    run = tasks.play([
        {"name": "a manifest set", "provisioner_manifest": {"path": [str(shared)]}},
        cell("web", 200),
        executable("api", "web"),
        {**cell("web", 0), **ignore},
        {**executable("lost", "missing"), **ignore},
        {**cell("shared", 300), **ignore},
        {**absent("Cell", "web"), **ignore},
        absent("Cell", "shared"),
    ])
    assert (run.code, run.changed, run.failed, tasks.ignored) == (0, 3, 0, 4), run.out
    assert ("invalid Cell/web (1 error(s)), nothing was changed:\\nspec.cpu.weight: 0 is "
            "less than the minimum of 1") in run.out
    assert ("invalid Executable/lost (1 error(s)), nothing was changed:\\nspec.cell: cell "
            "'missing' is not declared by any document and does not exist on the node"
            ) in run.out
    assert "Cell/shared belongs to manifest set 'shared'" in run.out
    assert ("Cell/web must be removed but Executable/api of manifest set 'executable.api' "
            "runs in it: remove it there first") in run.out
    assert "Cell/shared exists but its manifest set is 'shared', not 'cell.shared'" in run.out
    status = tasks.status()
    assert sets(tasks) == {"Cell/shared": "shared", "Cell/web": "cell.web",
                           "Executable/api": "executable.api"}
    assert status["Executable/api"]["state"] == "running"
    assert tasks.cpu_weight_file("web") in ("200", str(200 * 1024 // 100))
    assert tasks.cpu_weight_file("shared") in ("100", str(100 * 1024 // 100))


def test_through_a_node_daemon(tasks: Tasks, tmp_path: Path) -> None:
    with running_daemon(tmp_path / "daemon") as daemon:
        tasks.node = {"target": daemon.target}
        web = [cell("web", 200), executable("api", "web")]
        first = tasks.play(web)
        assert (first.code, first.changed, first.failed) == (0, 2, 0), first.out
        assert sets(tasks) == {"Cell/web": "cell.web", "Executable/api": "executable.api"}
        pid = tasks.pids()["Executable/api"]
        assert pid in daemon.layer.cgroups.pids("web")
        second = tasks.play(web, "--diff")
        assert (second.code, second.changed) == (0, 0), second.out
        assert tasks.pids() == {"Executable/api": pid}
        removed = tasks.play([absent("Executable", "api"), absent("Cell", "web")])
        assert (removed.code, removed.changed) == (0, 2), removed.out
        assert tasks.status() == {} and gone(pid)


def test_check_mode_predicts_what_an_earlier_task_would_create(tasks: Tasks) -> None:
    web = [cell("web", 200), executable("api", "web")]
    checked = tasks.play(web, "--check")
    assert (checked.code, checked.changed, checked.failed) == (0, 2, 0), checked.out
    assert "check mode: an earlier task may create it" in checked.out
    assert tasks.status() == {}  # nothing was made
    for_real = tasks.play([executable("api", "web")])  # without the cell: refused
    assert for_real.failed == 1 and "does not exist on the node" in for_real.out
