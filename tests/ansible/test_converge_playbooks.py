"""The collection's playbooks ``provisioner.node.converge`` and
``provisioner.node.teardown``, run by FQCN from a directory that is not the repository,
with manifests from the controller (``src``): real cgroups, real processes, a private
node per test (see :mod:`tests.ansible.harness`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ansible.harness import REPO, Play, gone, play
from tests.daemon.node_harness import running_daemon

__all__ = ["play"]
pytestmark = pytest.mark.kernel


def test_converge_twice_is_changed_then_ok_and_teardown_removes_everything(play: Play) -> None:
    first = play.converge()
    assert (first.code, first.changed, first.failed) == (0, 1, 0), first.out
    [result] = first.of("plan")
    assert result["summary"]["created"] == 6 and result["manifest_set"] == "node"
    steps = {(s["kind"], s["name"]): s for s in result["plan"]}
    assert steps[("Executable", "web-server")] == {
        "step": 1, "kind": "Executable", "name": "web-server", "action": "start",
        "change": "create", "reason": "created", "requires": [0]}
    assert {a["result"] for a in result["actions"]} == {"succeeded"}
    assert "start Executable/web-server: created" in result["actions_text"]
    assert result["plan_text"][0].startswith("Plan: 6 to create, 0 unchanged")
    running = play.pids()
    assert len(running) == 3 and all(Path(f"/proc/{pid}").exists() for pid in running.values())
    second = play.converge()
    assert (second.code, second.changed, second.failed) == (0, 0, 0), second.out
    [again] = second.of("plan")
    assert again["plan"] == [] and again["actions"] == []
    assert "No changes: 6 resources" in again["plan_text"][0]
    assert play.pids() == running  # nothing was restarted
    removed = play.teardown()
    assert (removed.code, removed.changed) == (0, 1), removed.out
    assert removed.of("summary")[0]["summary"]["deleted"] == 6
    assert play.status() == {}
    assert play.cell_dirs() == []
    assert all(gone(pid) for pid in running.values())
    again_removed = play.teardown(provisioner_manifest_sets="node")
    assert (again_removed.code, again_removed.changed) == (0, 0), again_removed.out


def test_check_and_diff_change_nothing_and_invalid_manifests_fail(play: Play) -> None:
    assert play.converge().changed == 1
    running, generation = play.pids(), play.status()
    shares = play.cpu_weight_file("web")
    play.edit("cells.yaml", "weight: 200 ", "weight: 300 ")
    play.edit("apps.yaml", '"sleep infinity"', '"sleep 99999"')
    checked = play.converge("--check", "--diff")
    assert (checked.code, checked.changed, checked.failed) == (0, 1, 0), checked.out
    assert "--- before" in checked.out and "+++ after" in checked.out
    assert "-  cpu.weight: 200\n+  cpu.weight: 300" in checked.out
    assert '-  command: "sleep infinity"\n+  command: "sleep 99999"' in checked.out
    [result] = checked.of("plan")
    assert {a["result"] for a in result["actions"]} == {"planned"}
    assert "update Cell/web: spec changed: cpu.weight 200 -> 300 (in place)" in (
        result["actions_text"])
    assert play.pids() == running  # check mode: no process replaced,
    assert play.cpu_weight_file("web") == shares  # no limit written,
    assert play.status() == generation  # nothing recorded
    cells = play.edit("cells.yaml", "weight: 300 ", "weight: 0 ")
    invalid = play.converge()
    assert (invalid.code, invalid.failed) == (2, 1), invalid.out
    # The error names the controller's file and line.
    assert re.search(rf"{re.escape(str(cells))}:\d+:\d+: spec\.cpu\.weight: 0 is less than "
                     "the minimum of 1", invalid.out), invalid.out
    assert re.search(r"invalid manifests \(\d+ error\(s\)\), nothing was changed", invalid.out)
    assert play.pids() == running and play.cpu_weight_file("web") == shares
    assert play.status() == generation


def test_prune_only_when_asked_and_a_warning_until_then(play: Play) -> None:
    assert play.converge().changed == 1
    sandboxed = play.pids()["Executable/sandboxed"]
    play.drop_documents("apps.yaml", "name: sandboxed")
    play.drop_documents("cells.yaml", "name: sandbox\n")
    kept = play.converge()
    assert (kept.code, kept.changed) == (0, 0), kept.out
    [result] = kept.of("plan")
    assert result["would_prune"] == ["Cell/sandbox", "Executable/sandboxed"]
    assert ("2 resource(s) of manifest set 'node' are no longer declared but stay, since "
            "prune is false: Cell/sandbox, Executable/sandboxed") in kept.out
    assert {"Cell/sandbox", "Executable/sandboxed"} <= set(play.status())
    pruned = play.converge(provisioner_prune=True)
    assert (pruned.code, pruned.changed) == (0, 1), pruned.out
    assert "free Cell/sandbox: pruned: no longer declared" in pruned.of("plan")[0][
        "actions_text"]
    assert "no longer declared but stay" not in pruned.out
    assert set(play.status()) == {"Cell/web", "Cell/web/cache", "Executable/web-server",
                                  "Executable/cache"}
    assert gone(sandboxed)


def test_a_failed_step_fails_the_task_naming_it(play: Play) -> None:
    play.edit("apps.yaml", "working_dir: /tmp", "working_dir: /no/such/dir")
    failed = play.converge()
    assert (failed.code, failed.failed) == (2, 1), failed.out
    assert re.search(r"step #\d+ \(start Executable/sandboxed: created\) failed: .*"
                     r"/no/such/dir", failed.out), failed.out
    [result] = failed.of("plan")
    assert result["changed"] is True  # the other steps were done
    by_name = {a["name"]: a for a in result["actions"]}
    assert by_name["sandboxed"]["result"] == "failed" and "/no/such/dir" in (
        by_name["sandboxed"]["message"])
    status = play.status()
    assert status["Executable/web-server"]["state"] == "running"
    assert status.get("Executable/sandboxed", {}).get("state") != "running", status
    play.edit("apps.yaml", "working_dir: /no/such/dir", "working_dir: /tmp")
    fixed = play.converge()
    assert (fixed.code, fixed.changed) == (0, 1), fixed.out
    assert play.status()["Executable/sandboxed"]["state"] == "running"


def test_a_node_without_the_provisioner_is_told_what_is_missing(play: Play) -> None:
    system = Path("/usr/bin/python3")
    if not system.exists() or subprocess.run(
            [str(system), "-c", "import provisioner"], cwd="/", capture_output=True,
            check=False).returncode == 0:
        pytest.skip("needs a python without the provisioner package")
    result = play.converge(ansible_python_interpreter=str(system))
    assert result.failed == 1, result.out
    assert "Failed to import the required Python library (provisioner)" in result.out
    assert "ansible_python_interpreter" in result.out
    assert play.cell_dirs() == []


def test_play_variables_and_manifest_vars_reach_the_templates(play: Play) -> None:
    templated = play.tmp / "batch.yaml"
    shutil.copy(REPO / "examples" / "extras" / "templated.yaml", templated)
    checked = play.converge("--check", provisioner_manifests=str(templated), workers=3,
                            provisioner_manifest_vars={"batch_weight": 500})
    assert (checked.code, checked.changed) == (0, 1), checked.out
    [result] = checked.of("plan")
    assert result["plan_text"][0].startswith("Plan: 3 to create, 0 unchanged")
    assert result["manifest_set"] == "batch"
    assert "Cell/batch-2" in {f"{s['kind']}/{s['name']}" for s in result["plan"]}
    assert play.status() == {} and play.cell_dirs() == []  # check mode
    strict = play.tmp / "strict.yaml"
    strict.write_text("apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: strict}\n"
                      "spec:\n  cpu: {weight: {{ strict_weight }}}\n")
    undefined = play.converge("--check", provisioner_manifests=str(strict))
    assert undefined.failed == 1, undefined.out
    assert f"{strict}:5: template error: variable 'strict_weight' is undefined" in (
        undefined.out)
    assert "on the controller, nothing was changed" in undefined.out
    assert play.status() == {} and play.cell_dirs() == []


def test_through_a_node_daemon(play: Play, tmp_path: Path) -> None:
    with running_daemon(tmp_path / "daemon") as daemon:
        play.node = {"target": daemon.target}
        first = play.converge()
        assert (first.code, first.changed, first.failed) == (0, 1, 0), first.out
        running = play.pids()
        assert len(running) == 3
        second = play.converge()
        assert (second.code, second.changed) == (0, 0), second.out
        assert play.pids() == running
        play.edit("cells.yaml", "weight: 200 ", "weight: 300 ")
        checked = play.converge("--check", "--diff")
        assert (checked.code, checked.changed) == (0, 1), checked.out
        assert "-  cpu.weight: 200\n+  cpu.weight: 300" in checked.out
        root = daemon.layer.config.cgroup_root
        shares = Path(f"/sys/fs/cgroup/cpu/{root}/web/cpu.shares")
        if shares.exists():
            assert shares.read_text().strip() == str(200 * 1024 // 100)
        removed = play.teardown()
        assert (removed.code, removed.changed) == (0, 1), removed.out
        assert play.status() == {}
        assert all(gone(pid) for pid in running.values())
