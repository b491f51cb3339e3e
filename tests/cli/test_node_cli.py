"""plan / apply / destroy / status / logs end to end on this machine: real cgroups, real
processes, a real SQLite file. Each test has its own state directory and cgroup root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.model import Kind
from provisioner.node.process.procs import is_same_process
from provisioner.node.runtime.layer import NodeLayer
from tests.conftest import make_config, tear_down

pytestmark = pytest.mark.kernel
EXAMPLES = Path(__file__).parents[2] / "examples" / "node"


class Node:
    """A private node: CLI arguments pointing at its own state and cgroup root."""

    def __init__(self, tmp: Path) -> None:
        config = make_config(tmp / "state")
        self.state_dir, self.root = config.state_dir, config.cgroup_root
        self.tmp = tmp

    def args(self) -> list[str]:
        return ["--state-dir", self.state_dir, "--cgroup-root", self.root]

    def run(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        command, rest = argv[0], list(argv[1:])
        code = main([command, *rest, *(self.args() if command != "logs" else
                                        ["--state-dir", self.state_dir])])
        out, err = capsys.readouterr()
        return code, out, err

    def status(self, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
        code, out, _ = self.run(capsys, "status", "--json")
        assert code == 0
        return {f"{r['kind']}/{r['name']}": r for r in json.loads(out)["resources"]}

    def cgroup_dirs(self) -> list[Path]:
        return [p for c in ("cpu", "cpuset", "pids", "freezer")
                for p in Path(f"/sys/fs/cgroup/{c}/{self.root}").glob("*") if p.is_dir()]

    def manifests(self, name: str = "m") -> Path:
        target = self.tmp / name
        shutil.copytree(EXAMPLES, target)
        return target


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    if os.geteuid() != 0:
        pytest.skip("needs root, cgroups and namespaces")
    created = Node(tmp_path)
    try:
        yield created
    finally:
        tear_down(NodeLayer(make_config(tmp_path / "state").__class__(
            state_dir=created.state_dir, cgroup_root=created.root)))


def pids(status: dict[str, dict[str, object]]) -> dict[str, object]:
    return {k: v["pid"] for k, v in status.items() if k.startswith("Executable/")}


def test_apply_twice_then_edit_limit_then_command(node: Node,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = node.manifests()
    code, out, _ = node.run(capsys, "apply", str(src))
    assert code == 0, out
    assert "Apply complete: 6 created" in out
    first = node.status(capsys)
    assert all(r["state"] == "running" for k, r in first.items() if k.startswith("Exec"))
    for pid in pids(first).values():
        assert isinstance(pid, int) and Path(f"/proc/{pid}").exists()
    # Again: nothing to do, nothing touched.
    code, out, _ = node.run(capsys, "apply", str(src))
    assert code == 0 and "No changes: 6 resources" in out
    assert pids(node.status(capsys)) == pids(first)
    # An edited limit is applied in place: same processes.
    cells = src / "cells.yaml"
    cells.write_text(cells.read_text().replace("weight: 200 ", "weight: 900 "))
    code, out, _ = node.run(capsys, "apply", str(src))
    assert code == 0 and "cpu.weight 200 -> 900 (in place)" in out
    assert pids(node.status(capsys)) == pids(first)
    shares = Path(f"/sys/fs/cgroup/cpu/{node.root}/web/cpu.shares").read_text()
    assert shares.strip() == str(900 * 1024 // 100)
    # An edited command replaces only that executable.
    apps = src / "apps.yaml"
    apps.write_text(apps.read_text().replace('"sleep infinity"', '"sleep 12345"'))
    code, out, _ = node.run(capsys, "apply", str(src))
    assert code == 0 and "1 replaced" in out
    after = pids(node.status(capsys))
    assert after["Executable/cache"] != pids(first)["Executable/cache"]
    assert {k: v for k, v in after.items() if k != "Executable/cache"} == {
        k: v for k, v in pids(first).items() if k != "Executable/cache"}


def test_prune_removes_exactly_the_undeclared(node: Node,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    src = node.manifests()
    assert node.run(capsys, "apply", str(src))[0] == 0
    other = node.tmp / "other.yaml"
    other.write_text("apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: theirs}\n")
    assert node.run(capsys, "apply", str(other))[0] == 0  # another manifest set
    apps = src / "apps.yaml"
    documents = apps.read_text().split("\n---\n")
    apps.write_text("\n---\n".join(d for d in documents if "name: cache" not in d))
    code, out, _ = node.run(capsys, "apply", str(src))
    assert code == 0 and "Would prune" in out and "Executable/cache" in out
    assert "Executable/cache" in node.status(capsys)  # not without --prune
    code, out, _ = node.run(capsys, "apply", "--prune", str(src))
    assert code == 0 and "1 deleted" in out
    status = node.status(capsys)
    assert "Executable/cache" not in status
    assert {"Cell/theirs", "Cell/web", "Executable/web-server"} <= set(status)


def test_destroy_reads_no_manifest_so_a_broken_one_still_goes(
        node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    """destroy only needs the set the files name: a manifest edited into something
    invalid (or one needing template variables) no longer blocks removing its set."""
    src = node.manifests()
    assert node.run(capsys, "apply", str(src))[0] == 0
    for path in src.glob("*.yaml"):
        path.write_text("kind: [this is not a manifest\n")
    code, out, err = node.run(capsys, "destroy", str(src))
    assert code == 0, err
    assert "6 deleted" in out
    assert node.status(capsys) == {}
    assert node.cgroup_dirs() == []


def test_destroy_of_a_path_that_is_not_there_is_refused_and_changes_nothing(
        node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    src = node.manifests()
    assert node.run(capsys, "apply", str(src))[0] == 0
    before = node.status(capsys)
    code, out, err = node.run(capsys, "destroy", str(src / "typo"), str(src))
    assert code == 64
    assert f"no such file or directory: {src / 'typo'}" in err
    assert out == ""
    assert node.status(capsys).keys() == before.keys()
    # "-" (stdin) names the set "default", as it does for apply; nothing is read
    code, out, _ = node.run(capsys, "destroy", "-")
    assert code == 0 and "manifest set 'default'" in out
    assert node.status(capsys).keys() == before.keys()
    assert node.run(capsys, "destroy", str(src))[0] == 0


def test_destroy_leaves_no_cgroup_and_no_process(node: Node,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = node.manifests()
    assert node.run(capsys, "apply", str(src))[0] == 0
    running = node.status(capsys)
    code, out, _ = node.run(capsys, "destroy", str(src))
    assert code == 0 and "6 deleted" in out
    assert node.status(capsys) == {}
    assert node.cgroup_dirs() == []
    for pid in pids(running).values():
        assert isinstance(pid, int)
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text(
        ).split(") ")[1].startswith("Z")


def test_invalid_manifests_never_reach_the_node(node: Node,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    src = node.manifests()
    (src / "bad.yaml").write_text("apiVersion: provisioner/v1\nkind: Cell\n"
                                  "metadata: {name: bad}\nspec: {cpu: {weight: 0}}\n")
    code, _, err = node.run(capsys, "apply", str(src))
    assert code == 2
    assert "bad.yaml:4:22: spec.cpu.weight: 0 is less than the minimum of 1" in err
    assert node.status(capsys) == {}
    assert node.cgroup_dirs() == []


def test_saved_plan_applies_once_and_then_is_stale(node: Node,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    src = node.manifests()
    plan = node.tmp / "plan.json"
    code, out, _ = node.run(capsys, "plan", "--detailed-exitcode", "--out", str(plan), str(src))
    assert code == 2 and "Saved the plan" in out
    data = json.loads(plan.read_text())
    assert data["format_version"] == 1 and data["generation"] == 0
    assert node.status(capsys) == {}  # plan changes nothing
    code, out, _ = node.run(capsys, "apply", str(plan))
    assert code == 0 and "6 created" in out
    code, _, err = node.run(capsys, "apply", str(plan))
    assert code == 1 and "the plan was made at node generation 0" in err
    assert "plan again" in err
    code, _, _ = node.run(capsys, "plan", "--detailed-exitcode", str(src))
    assert code == 0


def test_json_events_are_versioned_lines(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    src = node.manifests()
    code, out, _ = node.run(capsys, "apply", "--json", str(src))
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert all(e["format_version"] == 1 for e in events)
    assert events[0]["type"] == "plan"
    assert events[-1]["type"] == "summary" and events[-1]["summary"]["created"] == 6
    done = [e for e in events if e["type"] == "step_succeeded"]
    assert len(done) == 6 and all("duration_s" in e for e in done)


def test_a_failed_step_stops_its_dependents_and_apply_converges_after_the_fix(
        node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = node.tmp / "app.yaml"
    template = ("apiVersion: provisioner/v1\nkind: Cell\nmetadata: {{name: box}}\n---\n"
                "apiVersion: provisioner/v1\nkind: Executable\nmetadata: {{name: first}}\n"
                "spec: {{command: sleep 1000, cell: box, workingDir: {wd}}}\n---\n"
                "apiVersion: provisioner/v1\nkind: Executable\nmetadata: {{name: second}}\n"
                "spec: {{command: sleep 1000, dependsOn: [Executable/first]}}\n---\n"
                "apiVersion: provisioner/v1\nkind: Executable\nmetadata: {{name: loner}}\n"
                "spec: {{command: sleep 1000}}\n")
    manifest.write_text(template.format(wd="/no/such/dir"))
    code, out, err = node.run(capsys, "apply", str(manifest))
    assert code == 1
    assert "start Executable/first" in err and "/no/such/dir" in err
    assert "skipped" in out
    status = node.status(capsys)
    assert status["Executable/loner"]["state"] == "running"  # independent: it ran
    assert "Executable/second" not in status  # depends on the failure: not run
    manifest.write_text(template.format(wd="/tmp"))
    code, out, _ = node.run(capsys, "apply", str(manifest))
    assert code == 0, out
    assert {k: v["state"] for k, v in node.status(capsys).items()
            if k.startswith("Exec")} == {"Executable/first": "running",
                                         "Executable/second": "running",
                                         "Executable/loner": "running"}


def test_logs_tail_since_and_channels(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = node.tmp / "talk.yaml"
    manifest.write_text("apiVersion: provisioner/v1\nkind: Executable\nmetadata: {name: talk}\n"
                        "spec: {command: 'for i in 1 2 3; do echo out$i; done; echo oops >&2;"
                        " sleep 1000'}\n")
    assert node.run(capsys, "apply", str(manifest))[0] == 0
    deadline = time.monotonic() + 5
    while "oops" not in node.run(capsys, "logs", "talk")[1]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert node.run(capsys, "logs", "talk", "--channel", "stdout")[1] == "out1\nout2\nout3\n"
    assert node.run(capsys, "logs", "talk", "--tail", "1")[1] == "oops\n"
    assert node.run(capsys, "logs", "talk", "--since", "1h")[1].count("\n") == 4
    assert node.run(capsys, "logs", "talk", "--since", "2000-01-01T00:00:00Z")[1].startswith(
        "out1")
    stamped = node.run(capsys, "logs", "talk", "--timestamps", "--tail", "1")[1]
    assert stamped.endswith(" stderr oops\n")
    code, _, err = node.run(capsys, "logs", "nobody")
    assert code == 1 and "no logs for executable 'nobody'" in err
    code, _, err = node.run(capsys, "logs", "talk", "--since", "yesterday")
    assert code == 64 and "--since 'yesterday'" in err
    code, _, err = node.run(capsys, "logs", "../etc")
    assert code == 1 and "not a DNS label" in err


def test_a_second_writer_is_told_who_holds_the_lock(node: Node,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from provisioner.node.state.lock import WriterLock\n"
         f"lock = WriterLock({node.state_dir!r}).acquire(5, 'holding for a test')\n"
         "print('held', flush=True)\ntime.sleep(30)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        src = node.manifests()
        code, _, err = node.run(capsys, "apply", "--lock-timeout", "0.3", str(src))
        assert code == 1
        assert f"locked by pid {holder.pid}" in err and "holding for a test" in err
    finally:
        holder.kill()
        holder.wait()


def test_target_is_refused_clearly_until_the_daemon_exists(
        node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = node.run(capsys, "status", "--target", "unix:///run/x.sock")
    assert code == 64 and "omit --target" in err


def test_killed_apply_of_200_resources_converges(node: Node) -> None:
    """SIGKILL an apply halfway through 100 cells + 100 executables, apply again: it
    converges with no leaked cgroup or process and nothing started twice."""
    docs = []
    for i in range(100):
        docs.append(f"apiVersion: provisioner/v1\nkind: Cell\nmetadata: {{name: c{i}}}\n")
        docs.append(f"apiVersion: provisioner/v1\nkind: Executable\nmetadata: {{name: e{i}}}\n"
                    f"spec: {{command: sleep 1000, cell: c{i}}}\n")
    manifest = node.tmp / "many.yaml"
    manifest.write_text("---\n".join(docs))
    command = [sys.executable, "-m", "provisioner", "apply", str(manifest), *node.args()]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert first.stdout is not None
    for line in first.stdout:  # wait until a good part is done, then kill it
        if line.startswith("[60/200]"):
            break
    first.kill()
    first.wait()
    second = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    layer = NodeLayer(make_config(node.tmp / "state").__class__(
        state_dir=node.state_dir, cgroup_root=node.root))
    try:
        records = layer.store.list_processes()
        assert len(records) == 100
        assert len(layer.store.list_resources(Kind.CELL)) == 100
        for record in records:
            status = layer.read_shim_status(record.name)
            assert status is not None and status.child_pid is not None
            assert is_same_process(status.child_pid, status.child_start_time or 0)
            # one executable per cell: its sh and that sh's sleep, nothing started twice
            family = {status.child_pid} | set(map(int, Path(
                f"/proc/{status.child_pid}/task/{status.child_pid}/children").read_text().split()))
            assert layer.cgroups.pids(record.cell) == family, record.cell
        assert sorted(layer.cgroups.list_cells()) == sorted(f"c{i}" for i in range(100))
    finally:
        layer.close()
    third = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert third.returncode == 0 and "No changes: 200 resources" in third.stdout


def test_persistent_executables_and_drivers_through_apply(
        node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    blob = node.tmp / "raft.bin"
    blob.write_bytes(b"driver bytes\n")
    manifest = node.tmp / "extras.yaml"
    template = ("apiVersion: provisioner/v1\nkind: PersistentExecutable\nmetadata: {{name: beat}}\n"
                "spec: {{command: sleep 1000, enabled: {enabled}}}\n---\n"
                "apiVersion: provisioner/v1\nkind: Driver\nmetadata: {{name: raft}}\n"
                f"spec: {{{{version: v1, source: {blob}}}}}\n")
    manifest.write_text(template.format(enabled="true"))
    code, out, _ = node.run(capsys, "apply", str(manifest))
    assert code == 0 and "2 created" in out
    assert Path(node.state_dir, "drivers", "raft", "v1").exists()
    layer_state = node.status(capsys)
    assert {"PersistentExecutable/beat", "Driver/raft"} <= set(layer_state)
    manifest.write_text(template.format(enabled="false"))
    code, out, _ = node.run(capsys, "apply", str(manifest))
    assert code == 0 and "disable" in out and "1 updated" in out
    code, out, _ = node.run(capsys, "destroy", str(manifest))
    assert code == 0 and "2 deleted" in out
    assert node.status(capsys) == {}
    assert not Path(node.state_dir, "drivers", "raft", "v1").exists()
