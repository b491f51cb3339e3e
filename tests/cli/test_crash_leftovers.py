"""Nothing is left behind by a crash: applies SIGKILLed at random moments, then one
apply and a destroy, leave no staging cgroup and no process. Real `provisioner apply`
subprocesses on a private cgroup root and state directory, on the real kernel."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.model import CellLimits
from provisioner.node.cgroups.base import NEW_DIR_PREFIX
from provisioner.node.cgroups.layout import CgroupV2Driver, detect_layout, make_driver
from provisioner.node.runtime.layer import NodeConfig, NodeLayer
from tests.cli.test_node_cli import Node
from tests.conftest import tear_down

pytestmark = pytest.mark.kernel
KILLS = 20


@pytest.fixture
def crash_node(tmp_path: Path) -> Iterator[Node]:
    if os.geteuid() != 0:
        pytest.skip("needs root, cgroups and namespaces")
    made = Node(tmp_path)
    try:
        yield made
    finally:
        tear_down(NodeLayer(NodeConfig(state_dir=made.state_dir, cgroup_root=made.root)))


def manifest(variant: int) -> str:
    """Cells (two nested) and executables; the variants differ in names, limits and
    commands, so each apply creates, updates, replaces and (with --prune) frees."""
    cells = [f"c{i}-{variant}" for i in range(8)] + ["shared", "shared/inner"]
    docs = [f"apiVersion: provisioner/v1\nkind: Cell\nmetadata: {{name: {name}}}\n"
            f"spec: {{cpu: {{weight: {100 + variant}}}}}\n" for name in cells]
    for index, cell in enumerate([*cells[::2], "shared/inner"]):
        docs.append(f"apiVersion: provisioner/v1\nkind: Executable\n"
                    f"metadata: {{name: x{index}-{variant}}}\n"
                    f"spec: {{cell: {cell}, command: 'sleep 1000', stopGracePeriod: 1s}}\n")
    docs.append("apiVersion: provisioner/v1\nkind: Executable\nmetadata: {name: steady}\n"
                f"spec: {{command: 'sleep {1000 + variant}', stopGracePeriod: 1s}}\n")
    return "---\n".join(docs)


def staging_dirs(root: str) -> list[str]:
    """Every staging cgroup of ROOT: beside it under each mount, and anywhere below it."""
    layout = detect_layout()
    mounts = [layout.v2_mount] if layout.cgroup_v2 else list(layout.v1_mounts.values())
    found: list[str] = []
    for mount in {m for m in mounts if m}:
        found += [str(p) for p in Path(mount).glob(f"{NEW_DIR_PREFIX}{root}.*")]
        for here, dirs, _ in os.walk(os.path.join(mount, root)):
            found += [os.path.join(here, d) for d in dirs if d.startswith(NEW_DIR_PREFIX)]
    return found


def processes_of(node: Node) -> list[str]:
    """Processes in the node's cgroups, or whose command line names its state dir."""
    driver = make_driver(detect_layout(), node.root)
    found = [f"pid {p} in cgroup root" for p in driver.pids("")]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if node.state_dir.encode() in cmdline:
                text = cmdline.replace(b"\0", b" ").decode(errors="replace")
                found.append(f"pid {entry}: {text}")
    return found


def provisioner(node: Node, *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "provisioner", *argv, *node.args(), "--manifest-set", "crash"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def started_applying(run: subprocess.Popen[bytes]) -> float:
    """Wait for the plan line of an ``apply --json`` (the steps start right after it);
    the time it came."""
    assert run.stdout is not None
    for line in run.stdout:
        if b'"type":"plan"' in line:
            break
    return time.monotonic()


def test_sigkilled_applies_leave_no_staging_cgroup_and_no_process(crash_node: Node) -> None:
    node = crash_node
    files = node.tmp / "m"
    files.mkdir()
    path = str(files / "m.yaml")
    rng = random.Random(os.environ.get("CRASH_SEED", "11"))
    # One apply to completion tells how long its steps take here; the kills fall
    # within that span after the plan (Python's start-up is not what is tested).
    (files / "m.yaml").write_text(manifest(0))
    done = provisioner(node, "apply", path, "--prune", "--json")
    began = started_applying(done)
    assert done.wait(30) == 0, done.stderr.read() if done.stderr else ""
    span = time.monotonic() - began
    left_by_kills = 0
    for kill in range(KILLS):
        (files / "m.yaml").write_text(manifest(1 + kill % 3))
        run = provisioner(node, "apply", path, "--prune", "--json")
        started_applying(run)
        time.sleep(rng.uniform(0, span))
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        left_by_kills += len(staging_dirs(node.root))  # the next apply sweeps them
    print(f"steps took {span:.2f}s; the kills left {left_by_kills} staging cgroup(s)")
    # Whether a kill lands between a mkdir and its rename is chance (a few in 20 here):
    # what one leaves is also made here, beside the root and in a cell, for certain.
    dead = _dead_tid()
    layout = detect_layout()
    mount = layout.v2_mount if layout.cgroup_v2 else layout.v1_mounts["cpu"]
    assert mount
    os.mkdir(os.path.join(mount, f"{NEW_DIR_PREFIX}{node.root}.{dead}"))
    os.mkdir(os.path.join(mount, node.root, "shared", f"{NEW_DIR_PREFIX}c9.{dead}"))
    (files / "m.yaml").write_text(manifest(0))
    for command in ("apply", "destroy"):
        final = provisioner(node, command, path, *(["--prune"] if command == "apply" else []))
        assert final.wait(60) == 0, final.stderr.read() if final.stderr else ""
    assert staging_dirs(node.root) == []
    assert processes_of(node) == []


def test_the_sweep_leaves_live_staging_alone_on_cgroup_v2(tmp_path: Path) -> None:
    """The v2 driver's sweep, on this machine's unified mount (a controller-less v2
    hierarchy on hybrid hosts, the whole tree on pure v2 ones)."""
    layout = detect_layout()
    if os.geteuid() != 0 or not layout.v2_mount:
        pytest.skip("needs root and a cgroup v2 mount")
    root = f"ptest-{os.urandom(5).hex()}"
    driver = CgroupV2Driver(layout.v2_mount, root)
    driver.ensure_root()
    try:
        driver.create("web", CellLimits())
        dead_tid = _dead_tid()
        live = f"{NEW_DIR_PREFIX}x.{os.getpid()}"  # this (live) thread's
        made = [
            os.path.join(layout.v2_mount, f"{NEW_DIR_PREFIX}{root}.{dead_tid}"),
            os.path.join(layout.v2_mount, root, f"{NEW_DIR_PREFIX}web.{dead_tid}"),
            os.path.join(layout.v2_mount, root, "web", f"{NEW_DIR_PREFIX}_x.a.{dead_tid}"),
        ]
        kept = [os.path.join(layout.v2_mount, root, "web", live)]
        for path in made + kept:
            os.mkdir(path)
        assert sorted(driver.sweep_staging()) == sorted(made)
        assert [p for p in made if os.path.exists(p)] == []
        assert all(os.path.isdir(p) for p in kept)
        assert driver.sweep_staging() == []
    finally:
        for here, dirs, _ in os.walk(os.path.join(layout.v2_mount, root), topdown=False):
            for d in dirs:
                os.rmdir(os.path.join(here, d))
        os.rmdir(os.path.join(layout.v2_mount, root))


def _dead_tid() -> int:
    """The id of a thread that has ended (a process that has exited and been reaped)."""
    probe = subprocess.Popen(["true"])
    probe.wait()
    assert not os.path.exists(f"/proc/{probe.pid}")
    return probe.pid
