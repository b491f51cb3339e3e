"""``provisioner.node.resource`` through real ``ansible-playbook`` runs of playbooks
written per test: real cgroups, real processes, a private state directory and cgroup
root per test (set once for the group provisioner.node.node through module_defaults;
or a private daemon's target), so the machine's daemon and default state are never
touched (see :mod:`tests.ansible.harness`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner.node.cgroups.layout import detect_layout, make_driver
from tests.ansible.harness import Play, gone, play
from tests.daemon.node_harness import running_daemon

__all__ = ["play"]
pytestmark = pytest.mark.kernel
RESOURCE = "provisioner.node.resource"


def cell(name: str, weight: int, **more: Any) -> dict[str, Any]:
    return {"name": f"cell {name}", RESOURCE: {
        "kind": "Cell", "name": name, "spec": {"cpu": {"weight": weight}}, **more}}


def executable(name: str, cell: str, **more: Any) -> dict[str, Any]:
    return {"name": f"executable {name}", RESOURCE: {
        "kind": "Executable", "name": name, "labels": {"team": "shop"},
        "spec": {"cell": cell, "command": "sleep 1000", "restartPolicy": "on-failure",
                 "stopGracePeriod": "1s"}, **more}}


def absent(kind: str, name: str, **task: Any) -> dict[str, Any]:
    return {"name": f"remove {kind}/{name}",
            RESOURCE: {"kind": kind, "name": name, "state": "absent"}, **task}


def sets(play: Play) -> dict[str, str]:
    return {key: resource["manifest_set"] for key, resource in play.status().items()}


def test_declare_check_diff_update_and_remove_one_resource_per_task(play: Play) -> None:
    web = [cell("web", 200), executable("api", "web")]
    first = play.tasks(web)
    assert (first.code, first.changed, first.failed) == (0, 2, 0), first.out
    assert '"manifest_set": "cell.web"' in first.out
    assert '"manifest_set": "executable.api"' in first.out
    assert sets(play) == {"Cell/web": "cell.web", "Executable/api": "executable.api"}
    pid = play.pids()["Executable/api"]
    assert pid in cell_pids(play, "web")
    shares, before = play.cpu_weight_file("web"), play.status()
    second = play.tasks(web)
    assert (second.code, second.changed, second.failed) == (0, 0, 0), second.out
    assert play.pids() == {"Executable/api": pid}
    heavier = [cell("web", 300), executable("api", "web")]
    checked = play.tasks(heavier, "--check", "--diff")
    assert (checked.code, checked.changed, checked.failed) == (0, 1, 0), checked.out
    assert "--- before" in checked.out and "+++ after" in checked.out
    assert "-  cpu.weight: 200\n+  cpu.weight: 300" in checked.out
    assert play.cpu_weight_file("web") == shares  # check mode: no limit written,
    assert play.status() == before  # nothing recorded, nothing restarted
    updated = play.tasks(heavier)
    assert (updated.code, updated.changed) == (0, 1), updated.out
    web_result = updated.results[0]
    assert web_result["actions_text"] == [
        "update Cell/web: spec changed: cpu.weight 200 -> 300 (in place)"]
    assert web_result["actions"][0]["action"] == "update"
    assert web_result["actions"][0]["result"] == "succeeded"
    assert play.cpu_weight_file("web") != shares
    assert play.pids() == {"Executable/api": pid}  # updated in place: not restarted
    removed = play.tasks([absent("Executable", "api")])
    assert (removed.code, removed.changed) == (0, 1), removed.out
    assert set(play.status()) == {"Cell/web"} and gone(pid)  # exactly the executable
    removed = play.tasks([absent("Cell", "web")])
    assert (removed.code, removed.changed) == (0, 1), removed.out
    assert play.status() == {} and play.cell_dirs() == []


def cell_pids(play: Play, name: str) -> set[int]:
    """Every pid in the cell's cgroups, as the node layer reads them."""
    return make_driver(detect_layout(), play.root).pids(name)


def test_invalid_specs_missing_cells_and_other_sets_are_refused_changing_nothing(
        play: Play) -> None:
    shared = play.tmp / "shared.yaml"
    shared.write_text("apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: shared}\n"
                      "spec: {cpu: {weight: 100}}\n")
    ignore = {"ignore_errors": True}
    run = play.tasks([
        {"name": "a manifest set", "provisioner.node.manifest": {"path": [str(shared)]}},
        cell("web", 200),
        executable("api", "web"),
        {**cell("web", 0), **ignore},
        {**executable("lost", "missing"), **ignore},
        {**cell("shared", 300), **ignore},
        {**absent("Cell", "web"), **ignore},
        absent("Cell", "shared"),
    ])
    assert (run.code, run.changed, run.failed, run.ignored) == (0, 3, 0, 4), run.out
    assert ("invalid Cell/web (1 error(s)), nothing was changed:\\nspec.cpu.weight: 0 is "
            "less than the minimum of 1") in run.out
    assert ("invalid Executable/lost (1 error(s)), nothing was changed:\\nspec.cell: cell "
            "'missing' is not declared by any document and does not exist on the node"
            ) in run.out
    assert "Cell/shared belongs to manifest set 'shared'" in run.out
    assert ("Cell/web must be removed but Executable/api of manifest set 'executable.api' "
            "runs in it: remove it there first") in run.out
    assert "Cell/shared exists but its manifest set is 'shared', not 'cell.shared'" in run.out
    status = play.status()
    assert sets(play) == {"Cell/shared": "shared", "Cell/web": "cell.web",
                           "Executable/api": "executable.api"}
    assert status["Executable/api"]["state"] == "running"
    assert play.cpu_weight_file("web") in ("200", str(200 * 1024 // 100))
    assert play.cpu_weight_file("shared") in ("100", str(100 * 1024 // 100))


def test_through_a_node_daemon(play: Play, tmp_path: Path) -> None:
    with running_daemon(tmp_path / "daemon") as daemon:
        play.node = {"target": daemon.target}
        web = [cell("web", 200), executable("api", "web")]
        first = play.tasks(web)
        assert (first.code, first.changed, first.failed) == (0, 2, 0), first.out
        assert sets(play) == {"Cell/web": "cell.web", "Executable/api": "executable.api"}
        pid = play.pids()["Executable/api"]
        assert pid in daemon.layer.cgroups.pids("web")
        second = play.tasks(web, "--diff")
        assert (second.code, second.changed) == (0, 0), second.out
        assert play.pids() == {"Executable/api": pid}
        removed = play.tasks([absent("Executable", "api"), absent("Cell", "web")])
        assert (removed.code, removed.changed) == (0, 2), removed.out
        assert play.status() == {} and gone(pid)


def test_check_mode_predicts_what_an_earlier_task_would_create(play: Play) -> None:
    web = [cell("web", 200), executable("api", "web")]
    checked = play.tasks(web, "--check")
    assert (checked.code, checked.changed, checked.failed) == (0, 2, 0), checked.out
    assert "check mode: an earlier task may create it" in checked.out
    assert play.status() == {}  # nothing was made
    for_real = play.tasks([executable("api", "web")])  # without the cell: refused
    assert for_real.failed == 1 and "does not exist on the node" in for_real.out
