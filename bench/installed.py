"""The checkout installed as a node has it, for the benchmarks that time CLI start-up.

The development virtualenv installs the package in editable mode, and setuptools does
that with an import hook on a ``.pth`` file that every Python start in that
virtualenv runs (it loads ``pathlib`` and ``importlib.util``: ~10-20 ms here, more
than the interpreter itself). No installed copy has it: the daemon role installs a
wheel, as ``pip install`` does. So the CLI benchmarks (``cli_startup.py``,
``pods.py``) time a wheel of this checkout installed into a throw-away virtualenv -
its own interpreter start being the ``python -c pass`` baseline - and borrow the
development virtualenv's dependencies through a plain path line in a ``.pth`` file (a
path line puts the directory on ``sys.path``; the ``.pth`` files inside it are not
run, so neither is the hook).

    with installed_copy(scratch) as copy:
        subprocess.run([copy.cli, "version"])
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class InstalledCopy:
    """Where the installed copy is: its interpreter and its console script."""

    python: str
    cli: str


@contextlib.contextmanager
def installed_copy(scratch: Path) -> Iterator[InstalledCopy]:
    """Build a wheel of the checkout and install it in a new virtualenv under
    ``scratch`` (removed at the end). Exits the benchmark if a step fails."""
    where = scratch / "installed"
    venv, wheels = where / "venv", where / "wheel"
    try:
        _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "making a venv")
        python = venv / "bin" / "python"
        site = Path(subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True).stdout.strip())
        (site / "_dev_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
              "--no-build-isolation", "--wheel-dir", str(wheels), str(REPO)],
             "building the wheel")
        [wheel] = wheels.glob("provisioner-*.whl")
        _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
              "--no-deps", "--no-index", "--disable-pip-version-check", str(wheel)],
             "installing the wheel")
        yield InstalledCopy(python=str(python), cli=str(venv / "bin" / "provisioner"))
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _run(argv: list[str], what: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed: {' '.join(argv)}\n{done.stdout}{done.stderr}")
