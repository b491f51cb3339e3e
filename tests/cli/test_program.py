"""The ``provisioner`` program as scripts and Ansible run it (``python -m provisioner``,
the same ``run()`` as the console script): it ends with ``os._exit`` once ``main()``
returned, so these check that nothing is lost by that - every byte of output through a
pipe, the exit code of each outcome, a reader that goes away."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.cli import main

PROGRAM = [sys.executable, "-m", "provisioner"]


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROGRAM, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_large_output_arrives_whole_through_a_pipe(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("schema", cwd=tmp_path)  # every kind's schema: ~35 KB of JSON
    assert done.returncode == 0, done.stderr
    assert main(["schema"]) == 0
    assert done.stdout == capsys.readouterr().out  # byte for byte what main() prints
    assert len(done.stdout) > 30_000 and json.loads(done.stdout)


def test_exit_codes_survive_the_quick_exit(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: -x-}\n")
    invalid = run("validate", str(bad), cwd=tmp_path)
    assert invalid.returncode == 2
    assert f"{bad}:3:" in invalid.stderr and "invalid: 1 error(s)" in invalid.stderr
    usage = run("apply", "--parallelism", "-1", str(bad), cwd=tmp_path)
    assert usage.returncode == 64 and "--parallelism" in usage.stderr
    missing = run("destroy", str(tmp_path / "nowhere.yaml"), cwd=tmp_path)
    assert missing.returncode == 64 and "no such file or directory" in missing.stderr
    assert run("version", cwd=tmp_path).returncode == 0


def test_a_reader_that_goes_away_is_no_error(tmp_path: Path) -> None:
    program = subprocess.Popen([*PROGRAM, "schema"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert program.stdout is not None and program.stderr is not None
    program.stdout.read(10)
    program.stdout.close()  # the reader is gone before the program has written it all
    err = program.stderr.read().decode()
    assert program.wait(timeout=60) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err
