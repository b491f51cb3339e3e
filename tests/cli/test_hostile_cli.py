"""Hostile templates through the real command line (a subprocess, as a user runs it):
``validate``, ``plan`` and ``apply`` exit 2 with every file refused at its line, print
no traceback, run no command and create nothing on the node."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.hostile_templates import assert_every_file_refused_at_its_line, write_hostile_set

PROVISIONER = Path(sys.executable).parent / "provisioner"  # the tests' virtualenv


@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_every_hostile_template_is_exit_2_with_its_line(tmp_path: Path, command: str) -> None:
    hostile = write_hostile_set(tmp_path)
    state_dir = tmp_path / "state"
    cgroup_root = f"ptest-{uuid.uuid4().hex[:10]}"
    node = [] if command == "validate" else ["--state-dir", str(state_dir),
                                             "--cgroup-root", cgroup_root]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    done = subprocess.run([str(PROVISIONER), command, str(hostile.folder), *node],
                          capture_output=True, text=True, timeout=120, check=False, env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert_every_file_refused_at_its_line(done.stderr.splitlines(), hostile)
    assert done.stdout == ""
    assert not state_dir.exists()
    assert not any(Path("/sys/fs/cgroup").glob(f"*/{cgroup_root}"))
