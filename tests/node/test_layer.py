"""The node layer end to end against the real kernel: cells, executables, records."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioner.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotOwned,
    PermissionDenied,
    UnsafeName,
)
from provisioner.model import CellLimits, CellSpec, ExecutableSpec, Kind
from provisioner.node.cgroups.layout import executable_leaf
from provisioner.node.process import leaf as leafops
from provisioner.node.process import supervise
from provisioner.node.process.logs import LogReader
from provisioner.node.process.procs import is_same_process
from provisioner.node.runtime import layer as layer_module
from provisioner.node.runtime.layer import NodeLayer
from provisioner.node.runtime.observe import observe, reconcile
from provisioner.state import ProcessPhase
from tests.conftest import make_config, tear_down

pytestmark = pytest.mark.kernel


def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def log_text(node: NodeLayer, name: str) -> str:
    return "\n".join(line.text for line in LogReader(node.log_dir(name)).read())


def cgroup_lines(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


def test_cell_limits_reach_the_kernel_files(node: NodeLayer) -> None:
    limits = CellLimits(cpu_weight=300, cpu_max_us=250_000, cpuset_cpus="0", cpuset_mems="0")
    assert node.allocate_cell(CellSpec("web", limits), "s") is True
    cpu = Path(node.layout.v1_mounts["cpu"], node.config.cgroup_root, "web")
    cpuset = Path(node.layout.v1_mounts["cpuset"], node.config.cgroup_root, "web")
    assert (cpu / "cpu.shares").read_text().strip() == str(300 * 1024 // 100)
    assert (cpu / "cpu.cfs_period_us").read_text().strip() == "1000000"
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "250000"
    assert (cpuset / "cpuset.cpus").read_text().strip() == "0"
    # Allocating the same thing again changes nothing; a different one conflicts.
    assert node.allocate_cell(CellSpec("web", limits), "s") is False
    with pytest.raises(AlreadyExists):
        node.allocate_cell(CellSpec("web", CellLimits(cpu_weight=5)), "s")


def test_executable_runs_inside_its_cell_and_its_logs_are_captured(node: NodeLayer) -> None:
    node.allocate_cell(CellSpec("web"), "s")
    node.allocate_cell(CellSpec("web/cache"), "s")
    status = node.start_executable(ExecutableSpec(
        "hello", "echo out; echo err >&2; sleep 1000", cell="web/cache",
        env=(("GREETING", "hi"),)), "s")
    assert status.child_pid is not None
    assert f"/{node.config.cgroup_root}/web/cache/_x.hello" in cgroup_lines(status.child_pid)
    wait_for(lambda: "err" in log_text(node, "hello"))
    lines = LogReader(node.log_dir("hello")).read()
    assert {(line.channel, line.text) for line in lines} >= {("stdout", "out"),
                                                             ("stderr", "err")}
    with pytest.raises(AlreadyExists):
        node.start_executable(ExecutableSpec("hello", "true", cell="web/cache"), "s")


def test_isolated_cell_has_its_own_hostname_and_only_loopback(node: NodeLayer) -> None:
    node.allocate_cell(CellSpec("sandbox", isolate_process=True, isolate_network=True), "s")
    node.start_executable(ExecutableSpec(
        "probe", "hostname; ip -o link; echo pid=$$; sleep 1000", cell="sandbox"), "s")
    wait_for(lambda: "pid=" in log_text(node, "probe"))
    text = log_text(node, "probe")
    assert text.splitlines()[0] == "sandbox"
    links = [line for line in text.splitlines() if ": " in line and "link/" in line]
    assert len(links) == 1 and "lo:" in links[0] and "UP" in links[0]
    assert "pid=1\n" not in text  # pid 1 of the cell is its namespace holder, not us


def test_limits_change_live_and_the_process_keeps_its_pid(node: NodeLayer) -> None:
    node.allocate_cell(CellSpec("web", CellLimits(cpu_weight=100)), "s")
    status = node.start_executable(ExecutableSpec("busy", "sleep 1000", cell="web"), "s")
    node.update_cell(CellSpec("web", CellLimits(cpu_weight=700, cpu_max_us=100_000)), "s")
    cpu = Path(node.layout.v1_mounts["cpu"], node.config.cgroup_root, "web")
    assert (cpu / "cpu.shares").read_text().strip() == str(700 * 1024 // 100)
    assert status.child_pid and status.child_start_time
    assert is_same_process(status.child_pid, status.child_start_time)
    with pytest.raises(InvalidArgument, match="isolation cannot change in place"):
        node.update_cell(CellSpec("web", isolate_network=True), "s")


def test_stop_kills_a_tree_that_ignores_sigterm(node: NodeLayer) -> None:
    node.allocate_cell(CellSpec("web"), "s")
    stubborn = "trap '' TERM; sleep 1000 & sleep 1000 & while :; do sleep 1; done"
    node.start_executable(ExecutableSpec("stubborn", stubborn, cell="web", stop_grace_s=0.3),
                          "s")
    leaf = node.cgroups.leaf("web", "_x.stubborn")
    wait_for(lambda: len(node.cgroups.pids("web")) >= 3)
    started = time.monotonic()
    final = node.stop_executable("stubborn")
    assert time.monotonic() - started < 5
    assert node.cgroups.pids("web") == set()
    assert final is not None and final.state == "stopped"
    for path in leaf.dirs:
        assert Path(path, "cgroup.procs").read_text().strip() == ""


def test_delete_removes_the_status_file_and_retires_the_logs(node: NodeLayer) -> None:
    node.start_executable(ExecutableSpec("talker", "echo said; exec sleep 1000"), "s")
    wait_for(lambda: log_text(node, "talker") == "said")
    names = os.listdir(node.runtime_dir)  # the status and the shim's next tmp file
    assert "talker.json" in names and not [n for n in names if n.startswith(".shim-")]
    node.stop_executable("talker", forget=True)
    assert os.listdir(node.runtime_dir) == []
    assert not os.path.exists(node.log_dir("talker"))
    retired = os.path.join(os.path.dirname(node.log_dir("talker")), "_deleted", "talker")
    assert "\n".join(x.text for x in LogReader(retired).read()) == "said"  # post-mortem
    node.start_executable(ExecutableSpec("talker", "echo again"), "s")  # same name again
    wait_for(lambda: log_text(node, "talker") == "again")  # none of the deleted one's
    node.stop_executable("talker", forget=True)
    assert "\n".join(x.text for x in LogReader(retired).read()) == "again"  # the last one


def test_free_stops_everything_and_leaves_no_cgroup(node: NodeLayer) -> None:
    node.allocate_cell(CellSpec("web"), "s")
    node.allocate_cell(CellSpec("web/inner", isolate_process=True), "s")
    node.start_executable(ExecutableSpec("a", "sleep 1000", cell="web"), "s")
    node.start_executable(ExecutableSpec("b", "sleep 1000", cell="web/inner"), "s")
    pids = node.cgroups.pids("web")
    assert len(pids) >= 3  # two executables and the holder
    node.free_cell("web")
    for mount in node.layout.v1_mounts.values():
        assert not Path(mount, node.config.cgroup_root, "web").exists()
    assert not any(os.path.exists(f"/proc/{pid}") and is_same_process(pid, 0) for pid in pids)
    assert node.store.list_resources() == [] and node.store.list_processes() == []
    with pytest.raises(NotFound):
        node.free_cell("web")


def test_free_takes_the_cells_below_and_nothing_beside(node: NodeLayer) -> None:
    for cell in ("web", "web/inner", "web-2", "webx"):
        node.allocate_cell(CellSpec(cell), "s")
        node.start_executable(ExecutableSpec(f"e-{cell.replace('/', '-')}", "sleep 1000",
                                             cell=cell), "s")
    node.free_cell("web")
    assert [r.name for r in node.store.list_resources(Kind.CELL)] == ["web-2", "webx"]
    assert [p.name for p in node.store.list_processes()] == ["e-web-2", "e-webx"]
    assert node.is_running("e-web-2") and node.is_running("e-webx")
    assert node.cgroups.list_cells() == ["web-2", "webx"]


def test_allocating_again_checks_the_kernel_side_only(node: NodeLayer) -> None:
    spec = CellSpec("web", CellLimits(cpu_weight=300, cpuset_cpus="0"))
    assert node.allocate_cell(spec, "s") is True
    # Labels are not part of the cell's kernel definition: the same cell.
    assert node.allocate_cell(CellSpec("web", spec.limits, labels=(("tier", "front"),)),
                              "s") is False
    # A hierarchy lost (a crash, a hand) is made again, with the cell's cpuset.
    cpuset = Path(node.layout.v1_mounts["cpuset"], node.config.cgroup_root, "web")
    cpuset.rmdir()
    assert node.allocate_cell(spec, "s") is False
    assert (cpuset / "cpuset.cpus").read_text().strip() == "0"
    # An unrecorded cgroup of ours (a crash before the record) with the same limits is
    # adopted; with other limits it is refused.
    node.cgroups.create("orphan", CellLimits(cpu_weight=50))
    assert node.allocate_cell(CellSpec("orphan", CellLimits(cpu_weight=50)), "s") is True
    node.cgroups.create("other", CellLimits(cpu_weight=50))
    with pytest.raises(AlreadyExists):
        node.allocate_cell(CellSpec("other", CellLimits(cpu_weight=60)), "s")
    assert node.store.get_resource(Kind.CELL, "other") is None


@pytest.mark.parametrize("name", ["..", "../etc", "/abs", "a//b", "", "a" * 64, "wéb",
                                  "a/../b", "-a"])
def test_names_that_could_escape_are_refused(node: NodeLayer, name: str) -> None:
    with pytest.raises(UnsafeName):
        node.allocate_cell(CellSpec(name), "s")
    with pytest.raises(UnsafeName):
        node.start_executable(ExecutableSpec(name, "true"), "s")


def test_a_cgroup_we_did_not_create_is_refused(node: NodeLayer) -> None:
    foreign = Path(node.layout.v1_mounts["cpu"], node.config.cgroup_root, "foreign")
    foreign.mkdir()
    try:
        with pytest.raises(NotOwned):
            node.allocate_cell(CellSpec("foreign"), "s")
        with pytest.raises(NotOwned):
            node.free_cell("foreign")
        assert foreign.exists()
    finally:
        foreign.rmdir()


def test_state_survives_a_restart_and_processes_are_adopted(tmp_path: Path) -> None:
    config = make_config(tmp_path / "state")
    first = NodeLayer(config)
    try:
        first.allocate_cell(CellSpec("web"), "s")
        status = first.start_executable(ExecutableSpec("keeper", "sleep 1000", cell="web"),
                                        "s")
        first.close()
        second = NodeLayer(config)  # a new process would do the same: nothing in memory
        state = observe(second)
        by_name = {r.spec.name: r for r in state.resources}
        keeper = by_name["keeper"].process
        assert keeper is not None and keeper.phase is ProcessPhase.RUNNING
        assert (keeper.pid, keeper.pid_start_time) == (status.child_pid,
                                                       status.child_start_time)
        assert by_name["web"].present and by_name["web"].manifest_set == "s"
    finally:
        tear_down(NodeLayer(config))


def test_reconcile_records_deaths_and_adopts_leftover_cgroups(node: NodeLayer) -> None:
    node.allocate_cell(CellSpec("web"), "s")
    status = node.start_executable(ExecutableSpec("victim", "sleep 1000", cell="web"), "s")
    generation = node.store.generation()
    assert status.child_pid is not None
    os.kill(status.shim_pid, 9)  # the supervisor dies, then its child
    os.kill(status.child_pid, 9)
    wait_for(lambda: not is_same_process(status.shim_pid, status.shim_start_time))
    node.cgroups.create("leftover", CellLimits(cpu_weight=50))  # as if a crash lost its record
    found = reconcile(node)
    assert any("Executable/victim" in f for f in found)
    assert any("Cell/leftover: adopted" in f for f in found)
    record = node.store.get_process("victim")
    assert record is not None and record.state.value == "exited"
    adopted = node.store.get_resource(Kind.CELL, "leftover")
    assert adopted is not None and adopted.manifest_set == ""
    assert node.store.generation() == generation + 1  # adoption counts; deaths are observed
    # The plan can start it again: the dead supervisor's leftovers are cleaned first.
    again = node.start_executable(ExecutableSpec("victim", "sleep 1000", cell="web"), "s")
    assert again.child_pid != status.child_pid


def test_executable_in_a_missing_cell_is_refused(node: NodeLayer) -> None:
    with pytest.raises(NotFound, match="cell 'nowhere' does not exist"):
        node.start_executable(ExecutableSpec("lost", "true", cell="nowhere"), "s")
    with pytest.raises(NotFound, match="parent cell 'a'"):
        node.allocate_cell(CellSpec("a/b"), "s")


def test_bad_working_dir_is_a_clear_error_and_leaves_no_process(node: NodeLayer) -> None:
    with pytest.raises(Exception, match="/no/such/dir"):
        node.start_executable(ExecutableSpec("lost", "true", working_dir="/no/such/dir"), "s")
    assert not node.is_running("lost")


def test_only_a_leaf_made_by_the_start_goes_unlisted(
        node: NodeLayer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A start that made its leaf tells the launch so (nothing can be in it); a leaf
    left by an earlier run is adopted and listed, and a stray process in it refuses the
    start - with the stray left alone and nothing recorded."""
    seen: list[bool] = []

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        seen.append(kw.get("new_leaf", False))
        return supervise.launch(*args, **kw)

    monkeypatch.setattr(layer_module, "launch", spy)
    node.allocate_cell(CellSpec("web"), "s")
    node.start_executable(ExecutableSpec("fresh", "sleep 1000", cell="web"), "s")
    assert seen == [True]
    leaf = node.cgroups.create_leaf("web", executable_leaf("adopted"))  # an earlier run's
    stray = subprocess.Popen(["sleep", "1000"])
    try:
        leafops.attach(leaf, stray.pid)
        with pytest.raises(FailedPrecondition, match="is not empty"):
            node.start_executable(ExecutableSpec("adopted", "sleep 1000", cell="web"), "s")
        assert seen == [True, False]
        assert stray.poll() is None and leafops.pids(leaf) == {stray.pid}
        assert node.store.get_process("adopted") is None
        assert node.store.get_resource(Kind.EXECUTABLE, "adopted") is None
    finally:
        stray.kill()
        stray.wait()
    node.start_executable(ExecutableSpec("adopted", "sleep 1000", cell="web"), "s")
    assert seen == [True, False, False] and node.is_running("adopted")


def test_without_root_the_error_is_clear(tmp_path: Path) -> None:
    # The interpreter lives under /root here, so drop the effective uid after it started.
    code = ("import os\nfrom provisioner.node.runtime.layer import NodeLayer, NodeConfig\n"
            "import provisioner.errors\n"
            "os.setegid(65534)\nos.seteuid(65534)\n"
            "try:\n"
            f"    NodeLayer(NodeConfig(state_dir={str(tmp_path)!r}))\n"
            "except provisioner.errors.PermissionDenied as exc:\n"
            "    raise SystemExit(f'PermissionDenied: {exc}')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode != 0
    assert "the node layer needs root" in result.stderr
    assert PermissionDenied.__name__ in result.stderr


def test_without_a_cgroup_filesystem_the_error_is_clear(tmp_path: Path) -> None:
    from provisioner.errors import Unavailable
    from provisioner.node.cgroups.layout import detect_layout

    mounts = tmp_path / "mounts"
    mounts.write_text("proc /proc proc rw 0 0\n")
    with pytest.raises(Unavailable, match="cgroup"):
        detect_layout(str(mounts))
