"""Cgroup drivers against the real kernel (v1 hierarchies, and v2 on the unified mount).

Every test works under its own root ``provisioner-test-<random>``, removed in teardown
even when the test fails (processes killed first, directories removed bottom-up).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from provisioner.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotOwned,
    PermissionDenied,
    Unavailable,
    UnsafeName,
)
from provisioner.model import CellLimits
from provisioner.node.cgroups.layout import (
    HOLDER_LEAF,
    OWNER_XATTR,
    CgroupDriver,
    CgroupV1Driver,
    CgroupV2Driver,
    detect_layout,
    executable_leaf,
    format_cpu_list,
    make_driver,
    parse_cpu_list,
    validate_limits,
)
from provisioner.node.types import LeafCgroup

UNIFIED = "/sys/fs/cgroup/unified"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def cleanup(driver: CgroupDriver) -> None:
    """Kill everything under the driver's root, then remove the root whatever its marks."""
    for _ in range(50):
        pids = driver.pids("") if driver.exists("") else set()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    for top in driver.cell_dirs(""):
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            for _ in range(50):
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def make(kind: str) -> CgroupDriver:
    root = f"provisioner-test-{secrets.token_hex(4)}"
    if kind == "v2":
        return CgroupV2Driver(UNIFIED, root)
    return make_driver(detect_layout(), root)


@pytest.fixture
def v1() -> Iterator[CgroupDriver]:
    driver = make("v1")
    assert isinstance(driver, CgroupV1Driver)
    try:
        yield driver
    finally:
        cleanup(driver)


@pytest.fixture
def v2() -> Iterator[CgroupDriver]:
    if not os.path.exists(os.path.join(UNIFIED, "cgroup.procs")):
        pytest.skip("no cgroup v2 mount at " + UNIFIED)
    driver = make("v2")
    try:
        yield driver
    finally:
        cleanup(driver)


def spawn_in(leaf: LeafCgroup) -> subprocess.Popen[bytes]:
    """A sleeping process moved into every directory of ``leaf``."""
    proc = subprocess.Popen(["sleep", "60"])
    for d in leaf.dirs:
        with open(os.path.join(d, "cgroup.procs"), "w") as fh:
            fh.write(str(proc.pid))
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


def read(path: str) -> str:
    with open(path) as fh:
        return fh.read().strip()


# --- pure checks (no kernel) -------------------------------------------------------

def test_parse_cpu_list_accepts_kernel_syntax() -> None:
    assert parse_cpu_list("0-3,8") == [0, 1, 2, 3, 8]
    assert parse_cpu_list("1") == [1]
    assert parse_cpu_list("2,0-1,1") == [0, 1, 2]
    assert format_cpu_list([0, 1, 2, 3, 8]) == "0-3,8"
    assert format_cpu_list({5}) == "5"


@pytest.mark.parametrize("text", ["", "5-1", " 0", "0 ", "0, 1", "a", "0,", ",0", "0--1",
                                  "1-", "-1", "0-3:2", "\u0663", "99999999999", "0\n"])
def test_parse_cpu_list_refuses_bad_syntax(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_cpu_list(text)


@pytest.mark.parametrize("limits", [
    CellLimits(cpu_weight=0), CellLimits(cpu_weight=10001), CellLimits(cpu_max_us=-1),
    CellLimits(cpu_max_us=999), CellLimits(cpuset_cpus="5-1"), CellLimits(cpuset_mems=""),
])
def test_validate_limits_refuses_out_of_range(limits: CellLimits) -> None:
    with pytest.raises(InvalidArgument):
        validate_limits(limits)


def test_detect_layout_from_mount_tables(tmp_path: os.PathLike[str]) -> None:
    if os.geteuid() != 0:
        with pytest.raises(PermissionDenied):
            detect_layout()
        return
    v2dir = os.path.join(tmp_path, "v2 mount")
    os.mkdir(v2dir)
    with open(os.path.join(v2dir, "cgroup.controllers"), "w") as fh:
        fh.write("cpuset cpu io memory pids\n")
    table = os.path.join(tmp_path, "mounts")
    escaped = v2dir.replace(" ", "\\040")
    with open(table, "w") as fh:
        fh.write(f"cgroup2 {escaped} cgroup2 rw,nosuid 0 0\n")
    layout = detect_layout(table)
    assert layout.cgroup_v2 and layout.v2_mount == v2dir
    with open(table, "w") as fh:
        fh.write("proc /proc proc rw 0 0\n")
    with pytest.raises(Unavailable, match="no cgroup filesystem"):
        detect_layout(table)
    with open(table, "w") as fh:
        fh.write("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu,cpuacct 0 0\n")
    with pytest.raises(Unavailable, match="cpuset, pids, freezer"):
        detect_layout(table)
    with open(table, "w") as fh:
        fh.writelines(f"cgroup /sys/fs/cgroup/{c} cgroup ro,{c} 0 0\n"
                      for c in ("cpu", "cpuset", "pids", "freezer"))
    with pytest.raises(Unavailable, match="not writable"):
        detect_layout(table)


# --- cgroup v1 ---------------------------------------------------------------------

@pytest.mark.kernel
@needs_root
def test_this_machine_is_hybrid() -> None:
    layout = detect_layout()
    assert not layout.cgroup_v2
    assert {"cpu", "cpuset", "pids", "freezer"} <= set(layout.v1_mounts)
    assert layout.v2_mount == UNIFIED


@pytest.mark.kernel
@needs_root
def test_v1_files_hold_the_limits_and_read_back(v1: CgroupDriver) -> None:
    limits = CellLimits(cpu_weight=200, cpu_max_us=500_000, cpuset_cpus="0", cpuset_mems="0")
    assert v1.create("web", limits) is True
    cpu, cpuset = v1.cell_dirs("web")[0], v1.cell_dirs("web")[1]
    assert read(f"{cpu}/cpu.shares") == "2048"
    assert read(f"{cpu}/cpu.cfs_period_us") == "1000000"
    assert read(f"{cpu}/cpu.cfs_quota_us") == "500000"
    assert read(f"{cpuset}/cpuset.cpus") == "0"
    assert read(f"{cpuset}/cpuset.mems") == "0"
    for d in v1.cell_dirs("web"):
        assert os.getxattr(d, OWNER_XATTR) == b"provisioner"
    assert v1.read_limits("web") == limits
    assert v1.create("web", limits) is False  # same again: no change
    with pytest.raises(AlreadyExists):
        v1.create("web", CellLimits(cpu_weight=300))
    # The same cpuset written another way is the same cell, and reads back as asked.
    v1.create("pair", CellLimits(cpuset_cpus="0,1"))
    assert v1.create("pair", CellLimits(cpuset_cpus="0-1")) is False
    assert v1.read_limits("pair").cpuset_cpus == "0,1"
    # Unset limits read back as unset, although v1 files always hold some value.
    v1.create("plain", CellLimits())
    assert v1.read_limits("plain") == CellLimits()
    assert read(f"{v1.cell_dirs('plain')[0]}/cpu.cfs_quota_us") == "-1"
    # Drift: someone changes a file behind our back.
    with open(f"{cpu}/cpu.shares", "w") as fh:
        fh.write("512")
    assert v1.read_limits("web").cpu_weight == 50


@pytest.mark.kernel
@needs_root
@pytest.mark.parametrize(("weight", "shares"), [(1, 10), (100, 1024), (10000, 102400)])
def test_v1_weight_mapping(v1: CgroupDriver, weight: int, shares: int) -> None:
    v1.create("w", CellLimits(cpu_weight=weight))
    assert read(f"{v1.cell_dirs('w')[0]}/cpu.shares") == str(shares)
    assert v1.read_limits("w").cpu_weight == weight


@pytest.mark.kernel
@needs_root
def test_v1_nested_cells_and_listing(v1: CgroupDriver) -> None:
    with pytest.raises(NotFound):
        v1.create("a/b", CellLimits())
    v1.create("a", CellLimits(cpuset_cpus="0"))
    v1.create("a/b", CellLimits(cpu_weight=50))
    v1.create("a/b/c", CellLimits())
    v1.create("z", CellLimits())
    assert read(f"{v1.cell_dirs('a/b')[1]}/cpuset.cpus") == "0"  # inherited from a
    assert v1.list_cells() == ["a", "z", "a/b", "a/b/c"]
    # A second driver on the same root (a restarted daemon) adopts what it finds.
    again = CgroupV1Driver(detect_layout().v1_mounts, v1.root_name)
    assert again.list_cells() == v1.list_cells()
    assert again.read_limits("a/b") == CellLimits(cpu_weight=50)
    assert v1.remove("a") is True
    for d in v1.cell_dirs("a"):
        assert not os.path.exists(d)
    assert v1.list_cells() == ["z"]
    assert v1.remove("a") is False


@pytest.mark.kernel
@needs_root
def test_v1_live_update_keeps_the_process(v1: CgroupDriver) -> None:
    v1.create("live", CellLimits(cpu_weight=100, cpuset_cpus="0-1"))
    leaf = v1.create_leaf("live", executable_leaf("sleeper"))
    proc = spawn_in(leaf)
    try:
        with open(f"/proc/{proc.pid}/cgroup") as fh:
            cgroup = fh.read()
        assert f"cpu:/{v1.root_name}/live/_x.sleeper\n" in cgroup
        assert f"cpuset:/{v1.root_name}/live/_x.sleeper\n" in cgroup
        v1.update("live", CellLimits(cpu_weight=400, cpu_max_us=250_000, cpuset_cpus="1"))
        assert proc.poll() is None and proc.pid in v1.pids("live")
        assert read(f"{v1.cell_dirs('live')[0]}/cpu.shares") == "4096"
        assert read(f"{v1.cell_dirs('live')[0]}/cpu.cfs_quota_us") == "250000"
        assert read(f"{leaf.dirs[1]}/cpuset.cpus") == "1"  # the leaf follows its cell
        with open(f"/proc/{proc.pid}/status") as fh:
            assert "Cpus_allowed_list:\t1\n" in fh.read()
        assert v1.leaf("live", executable_leaf("sleeper")) == leaf
        with pytest.raises(FailedPrecondition, match=str(proc.pid)):
            v1.remove("live")
        with pytest.raises(FailedPrecondition):
            v1.remove_leaf("live", executable_leaf("sleeper"))
    finally:
        stop(proc)
    assert v1.pids("live") == set()
    assert v1.remove_leaf("live", executable_leaf("sleeper")) is True
    with pytest.raises(NotFound):
        v1.leaf("live", executable_leaf("sleeper"))
    assert v1.remove("live") is True


@pytest.mark.kernel
@needs_root
@pytest.mark.parametrize("name", ["..", "/abs", "a//b", "", "x" * 64, "caf\u00e9", "a/../b",
                                  "a/", "-a", "a b", "_x.a", "."])
def test_escaping_names_are_refused(v1: CgroupDriver, name: str) -> None:
    with pytest.raises(UnsafeName):
        v1.create(name, CellLimits())
    with pytest.raises(UnsafeName):
        v1.remove(name)
    assert not v1.exists("")  # nothing was made, not even the root


@pytest.mark.kernel
@needs_root
@pytest.mark.parametrize("leaf", ["", "x", "_x.", "_x.a/b", "_x./abs", "_x..", "_x.a..b",
                                  "_holder/..", "_holder2", "_x.caf\u00e9", "_x." + "a" * 129])
def test_bad_leaf_names_are_refused(v1: CgroupDriver, leaf: str) -> None:
    with pytest.raises(InvalidArgument):
        v1.create_leaf("", leaf)
    with pytest.raises(InvalidArgument):
        v1.remove_leaf("", leaf)
    assert not v1.exists("")


@pytest.mark.kernel
@needs_root
def test_foreign_cgroups_are_refused(v1: CgroupDriver) -> None:
    v1.ensure_root()
    foreign = os.path.join(v1.cell_dirs("")[0], "foreign")
    os.mkdir(foreign)  # made by "someone else": no ownership mark
    with pytest.raises(NotOwned):
        v1.create("foreign", CellLimits())
    with pytest.raises(NotOwned):
        v1.remove("foreign")
    assert os.path.isdir(foreign)
    assert "foreign" not in v1.list_cells()
    # A foreign child inside one of our cells blocks removal of the cell.
    v1.create("ours", CellLimits())
    intruder = os.path.join(v1.cell_dirs("ours")[2], "intruder")
    os.mkdir(intruder)
    with pytest.raises(NotOwned, match="intruder"):
        v1.remove("ours")
    assert os.path.isdir(intruder)


@pytest.mark.kernel
@needs_root
def test_a_root_made_by_someone_else_is_refused(v1: CgroupDriver) -> None:
    os.mkdir(v1.cell_dirs("")[0])
    with pytest.raises(NotOwned):
        v1.create("a", CellLimits())
    with pytest.raises(NotOwned):
        v1.remove_root()


@pytest.mark.kernel
@needs_root
def test_a_half_made_leftover_is_adopted_and_repaired(v1: CgroupDriver) -> None:
    limits = CellLimits(cpu_weight=300)
    v1.create("crashed", limits)
    freezer = v1.cell_dirs("crashed")[3]
    os.rmdir(freezer)  # as if we had died between two hierarchies
    assert v1.exists("crashed") and v1.is_owned("crashed")
    assert v1.create("crashed", limits) is False
    assert os.path.isdir(freezer) and os.getxattr(freezer, OWNER_XATTR) == b"provisioner"


@pytest.mark.kernel
@needs_root
def test_refused_values_leave_nothing_behind(v1: CgroupDriver) -> None:
    v1.create("p", CellLimits(cpu_max_us=200_000))
    with pytest.raises(InvalidArgument, match=r"cpuset\.cpus.*'5'"):
        v1.create("p/bad", CellLimits(cpuset_cpus="5"))  # this machine has no CPU 5
    # The kernel itself refuses a child quota above its parent's (v1 only).
    with pytest.raises(InvalidArgument, match=r"'800000'.*cpu\.cfs_quota_us"):
        v1.create("p/greedy", CellLimits(cpu_max_us=800_000))
    with pytest.raises(InvalidArgument, match=r"(?i)cpu list"):
        v1.create("p/syntax", CellLimits(cpuset_cpus="0-"))
    for name in ("p/bad", "p/greedy", "p/syntax"):
        assert not v1.exists(name)
        assert all(not os.path.exists(d) for d in v1.cell_dirs(name))
    # A refused update leaves the previous limits in place.
    with pytest.raises(InvalidArgument):
        v1.update("p", CellLimits(cpu_max_us=200_000, cpuset_mems="7"))
    assert v1.read_limits("p") == CellLimits(cpu_max_us=200_000)


@pytest.mark.kernel
@needs_root
def test_leaves_of_the_root_cell_and_holder_leaf(v1: CgroupDriver) -> None:
    leaf = v1.create_leaf("", executable_leaf("daemon-tool"))
    assert leaf.dirs[0] == os.path.join(v1.cell_dirs("")[0], "_x.daemon-tool")
    assert leaf.freezer_dir is not None and "freezer" in leaf.freezer_dir
    v1.create("iso", CellLimits())
    holder = v1.create_leaf("iso", HOLDER_LEAF)
    proc = spawn_in(holder)  # a v1 cpuset leaf must accept tasks at once
    try:
        assert v1.pids("") == {proc.pid}
        assert v1.list_cells() == ["iso"]  # leaves are not cells
    finally:
        stop(proc)
    assert v1.remove_root() is True
    assert not v1.exists("")


@pytest.mark.kernel
@needs_root
def test_v1_cpusets_of_new_directories_come_from_their_parent(v1: CgroupDriver) -> None:
    v1.create("k", CellLimits(cpuset_cpus="0"))
    cell = v1.cell_dirs("k")[1]
    mems = read(f"{v1.cell_dirs('')[1]}/cpuset.mems")
    # Copied by the kernel at mkdir: the root asks for it, its descendants inherit that.
    assert read(f"{v1.cell_dirs('')[1]}/cgroup.clone_children") == "1"
    assert read(f"{cell}/cgroup.clone_children") == "1"
    first = v1.create_leaf("k", executable_leaf("first"))
    assert (read(f"{first.dirs[1]}/cpuset.cpus"), read(f"{first.dirs[1]}/cpuset.mems")) == (
        "0", mems)
    # A cell made without the flag (by an older provisioner): copied by hand, and the
    # flag set for the next ones.
    with open(f"{cell}/cgroup.clone_children", "w") as fh:
        fh.write("0")
    second = v1.create_leaf("k", executable_leaf("second"))
    assert (read(f"{second.dirs[1]}/cpuset.cpus"), read(f"{second.dirs[1]}/cpuset.mems")) == (
        "0", mems)
    assert read(f"{cell}/cgroup.clone_children") == "1"
    proc = spawn_in(second)  # a v1 cpuset leaf must accept tasks at once
    stop(proc)
    # A nested cell asking for CPUs its parent does not have: the kernel refuses
    # (EACCES), the error says why, nothing is left.
    with pytest.raises(InvalidArgument,
                       match=r"cpuset\.cpus '1' of cell 'k/wide' names 1, outside the '0'"):
        v1.create("k/wide", CellLimits(cpuset_cpus="1"))
    assert not v1.exists("k/wide")


@pytest.mark.kernel
@needs_root
def test_leftovers_of_interrupted_creations_never_block(v1: CgroupDriver) -> None:
    v1.ensure_root()
    root = v1.cell_dirs("")[0]
    # A creation by a thread of this very id that died between mkdir and rename (then
    # the id was reused): the staging directory is ours by its name, removed, made again.
    stale = os.path.join(root, f".provisioner-new.web.{threading.get_native_id()}")
    os.mkdir(stale)
    assert v1.create("web", CellLimits(cpu_weight=300)) is True
    assert not os.path.exists(stale) and v1.is_owned("web")
    stale_leaf = os.path.join(v1.cell_dirs("web")[2],
                              f".provisioner-new._x.e.{threading.get_native_id()}")
    os.mkdir(stale_leaf)
    leaf = v1.create_leaf("web", executable_leaf("e"))
    assert not os.path.exists(stale_leaf)
    assert all(os.getxattr(d, OWNER_XATTR) == b"provisioner" for d in leaf.dirs)
    # An existing leaf is adopted whole; a half-made one is completed.
    os.rmdir(leaf.dirs[3])
    assert v1.create_leaf("web", executable_leaf("e")) == leaf
    assert os.path.isdir(leaf.dirs[3])
    # Removing a leaf that holds a process is refused and leaves it whole.
    proc = spawn_in(leaf)
    try:
        with pytest.raises(FailedPrecondition, match=str(proc.pid)):
            v1.remove_leaf("web", executable_leaf("e"))
        assert all(os.path.isdir(d) for d in leaf.dirs)
    finally:
        stop(proc)
    assert v1.remove_leaf("web", executable_leaf("e")) is True
    assert not any(os.path.exists(d) for d in leaf.dirs)
    # The root removed behind the driver's back is made again by the next creation.
    assert v1.remove_root() is True
    assert v1.create("again", CellLimits()) is True
    assert v1.is_owned("") and v1.list_cells() == ["again"]
    assert v1.create_leaf("", executable_leaf("tool")).dirs[0] == os.path.join(root, "_x.tool")


# --- cgroup v2 (the hybrid layout's controller-less unified mount) ------------------

@pytest.mark.kernel
@needs_root
def test_v2_cells_leaves_kill_and_removal(v2: CgroupDriver) -> None:
    assert v2.cgroup_v2
    v2.create("a", CellLimits())
    v2.create("a/b", CellLimits())
    top = v2.cell_dirs("a/b")[0]
    assert top == os.path.join(UNIFIED, v2.root_name, "a", "b")
    assert os.getxattr(top, OWNER_XATTR) == b"provisioner"
    assert v2.read_limits("a/b") == CellLimits()
    assert v2.list_cells() == ["a", "a/b"]
    leaf = v2.create_leaf("a/b", executable_leaf("sleeper"))
    assert leaf.v2 and leaf.dirs == (os.path.join(top, "_x.sleeper"),)
    proc = spawn_in(leaf)
    try:
        with open(f"/proc/{proc.pid}/cgroup") as fh:
            assert f"0::/{v2.root_name}/a/b/_x.sleeper\n" in fh.read()
        assert v2.pids("a") == {proc.pid}
        with pytest.raises(FailedPrecondition, match=str(proc.pid)):
            v2.remove("a")
        with open(os.path.join(leaf.dirs[0], "cgroup.kill"), "w") as fh:
            fh.write("1")
        assert proc.wait(timeout=5) == -signal.SIGKILL
    finally:
        stop(proc)
    assert v2.remove("a") is True
    assert not os.path.exists(os.path.join(UNIFIED, v2.root_name, "a"))
    # v2 refuses rename: directories are made in place, no staging name is left over.
    assert [n for n in os.listdir(v2.cell_dirs("")[0]) if n.startswith(".")] == []


@pytest.mark.kernel
@needs_root
def test_v2_limits_without_controllers_are_refused_clearly(v2: CgroupDriver) -> None:
    assert isinstance(v2, CgroupV2Driver)
    if "cpu" in v2.available_controllers():
        pytest.skip("this v2 mount has the cpu controller")
    with pytest.raises(Unavailable, match="cpu controller is not available"):
        v2.create("limited", CellLimits(cpu_weight=200))
    with pytest.raises(Unavailable, match="cpuset controller is not available"):
        v2.create("pinned", CellLimits(cpuset_cpus="0"))
    assert not v2.exists("limited") and not v2.exists("pinned")
    v2.ensure_root()
    foreign = os.path.join(v2.cell_dirs("")[0], "foreign")
    os.mkdir(foreign)
    with pytest.raises(NotOwned):
        v2.create("foreign", CellLimits())
    with pytest.raises(NotOwned):
        v2.remove("foreign")
