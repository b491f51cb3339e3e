"""One-off commands in the node layer (provisioner.node.run_command), on the real kernel:
output, exit status, signals, the deadline, a caller that goes away, the leaf it runs in
(made, then gone), refused commands (nothing made), and the clean-up after a crash."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from provisioner.errors import InvalidArgument
from provisioner.node import (
    EXEC_LEAF_PREFIX,
    ExecResult,
    NodeLayer,
    cleanup_exec_leaves,
    run_command,
)
from provisioner.node.process import leaf as leafops
from provisioner.node.process.procs import process_alive

pytestmark = pytest.mark.kernel


def leaves(node: NodeLayer) -> list[str]:
    """The command leaves under the node's root cell (in any of its hierarchies)."""
    return sorted({name for root in node.cgroups.cell_dirs("") for name in os.listdir(root)
                   if name.startswith(EXEC_LEAF_PREFIX)})


def run(node: NodeLayer, command: str, timeout: float | None = None) -> ExecResult:
    """Run ``command`` to completion (or ``timeout`` seconds), the caller always there."""
    deadline = None if timeout is None else time.monotonic() + timeout
    return run_command(node, command, deadline, lambda: True)


def test_output_exit_status_and_the_leaf_it_ran_in(node: NodeLayer) -> None:
    result = run(node, "echo out; echo err >&2; cat /proc/self/cgroup; exit 3")
    assert result.returncode == 3 and not result.timed_out and result.pid > 0
    assert result.stdout.startswith("out\n") and result.stderr == "err\n"
    assert f"/{node.config.cgroup_root}/{EXEC_LEAF_PREFIX}" in result.stdout
    assert result.describe() == "exited with 3"
    assert leaves(node) == []


def test_environment_and_working_directory(node: NodeLayer) -> None:
    result = run(node, 'echo "$PWD|$HOME|$PATH"; env | wc -l')
    where, _, count = result.stdout.partition("\n")
    pwd, home, path = where.split("|")
    assert (pwd, home) == ("/", "/") and "/usr/bin" in path.split(":")
    assert int(count) <= 4  # PATH, HOME and what the shell adds (PWD, SHLVL)


def test_killed_by_a_signal(node: NodeLayer) -> None:
    result = run(node, "kill -9 $$")
    assert result.returncode == -9
    assert result.describe() == "killed by signal 9"


def test_the_deadline_kills_the_whole_tree(node: NodeLayer, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    result = run(node, f"sleep 60 & echo $! > {pid_file}; echo started; wait", timeout=1.0)
    assert time.monotonic() - started < 10
    assert result.timed_out and result.returncode is None
    assert result.stdout == "started\n"
    assert result.describe() == "killed: the call's deadline passed"
    child = int(pid_file.read_text())
    assert not process_alive(child)
    assert leaves(node) == []


def test_a_caller_that_goes_away_stops_the_command(node: NodeLayer) -> None:
    asked = []

    def active() -> bool:
        asked.append(time.monotonic())
        return len(asked) < 5

    started = time.monotonic()
    result = run_command(node, "sleep 60", None, active)
    assert time.monotonic() - started < 10
    assert result.returncode is None and not result.timed_out
    assert result.describe() == "killed: the call was cancelled"
    assert leaves(node) == []


@pytest.mark.parametrize("command", ["", "   \n", "echo a\0b"])
def test_an_empty_or_nul_command_is_refused_and_nothing_is_made(
        node: NodeLayer, command: str) -> None:
    with pytest.raises(InvalidArgument, match="empty or contains a NUL"):
        run(node, command)
    assert leaves(node) == []


def test_a_command_too_long_for_the_kernel_is_refused_by_name(node: NodeLayer) -> None:
    with pytest.raises(InvalidArgument, match=r"^Exec: command is \d+ bytes"):
        run_command(node, "true " + "x" * (1 << 20), None, lambda: True, what="Exec")
    assert leaves(node) == []


def test_cleanup_removes_leaves_a_crash_left(node: NodeLayer) -> None:
    leaf = node.cgroups.create_leaf("", f"{EXEC_LEAF_PREFIX}crashed")
    proc = subprocess.Popen(["sleep", "60"])
    try:
        leafops.attach(leaf, proc.pid)
        assert leaves(node) == [f"{EXEC_LEAF_PREFIX}crashed"]
        assert cleanup_exec_leaves(node) == [f"{EXEC_LEAF_PREFIX}crashed"]
        assert proc.wait(timeout=10) == -9
        assert leaves(node) == []
        assert cleanup_exec_leaves(node) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
