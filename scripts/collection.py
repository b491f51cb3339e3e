"""Build the Ansible collection's tarball, or run ``ansible-test sanity`` on it.

    python scripts/collection.py build [--out DIR]     # dist/provisioner-node-X.tar.gz
    python scripts/collection.py sanity [ansible-test sanity options...]

``ansible-test`` must run from a folder named ``ansible_collections/<ns>/<name>``, and
it looks at the files git tracks there, so sanity runs on a copy of the collection in a
temporary folder (a fresh git repository of its own), with the virtualenv's Python.
It installs its test requirements from PyPI into its own virtualenvs (cached under
``~/.ansible/test``); the pip bootstrap script it would download from a host that is
not reachable here is provided by ``scripts/get_pip_offline.py``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLLECTION = REPO / "ansible_collections" / "provisioner" / "node"
BIN = Path(sys.executable).parent
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


def run(command: list[str], cwd: Path) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=cwd, check=True)


def build(out: Path) -> Path:
    """The collection's tarball in ``out``, replacing an older one of the same version."""
    out.mkdir(parents=True, exist_ok=True)
    run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path",
         str(out), str(COLLECTION)], cwd=REPO)
    built = sorted(out.glob("provisioner-node-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return built[-1]


def copy_for_ansible_test(into: Path) -> Path:
    """A copy of the collection at ``into/ansible_collections/provisioner/node``, as a
    git repository with every file added (ansible-test reads git's file list)."""
    target = into / "ansible_collections" / "provisioner" / "node"
    shutil.copytree(COLLECTION, target, ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", "tests/output", "*.tar.gz"))
    git = ["git", "-c", "user.name=sanity", "-c", "user.email=sanity@localhost"]
    run([*git, "init", "-q"], cwd=target)
    run([*git, "add", "-A"], cwd=target)
    run([*git, "commit", "-q", "-m", "sanity"], cwd=target)
    return target


def provide_pip_bootstrap() -> None:
    """ansible-test's cached pip bootstrap script, made from get_pip_offline.py when it
    is not there (the download host is not reachable from here)."""
    import ansible_test  # type: ignore[import-untyped]  # its pip version is a literal there

    source = Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
    match = re.search(r"\bpip='([0-9.]+)'", source.read_text())
    if match is None:
        raise SystemExit(f"cannot find the pip version ansible-test bootstraps in {source}")
    version = match.group(1)
    cache = Path.home() / ".ansible" / "test" / "cache" / f"get_pip_{version.replace('.', '_')}.py"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / "scripts" / "get_pip_offline.py", cache)


def sanity(options: list[str]) -> int:
    provide_pip_bootstrap()
    with tempfile.TemporaryDirectory(prefix="provisioner-sanity-") as tmp:
        target = copy_for_ansible_test(Path(tmp))
        command = [str(BIN / "ansible-test"), "sanity", "--python", PYTHON_VERSION,
                   "--color", "no", *options]
        print("+", " ".join(command), flush=True)
        return subprocess.run(command, cwd=target, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    built = sub.add_parser("build", help="build the tarball")
    built.add_argument("--out", type=Path, default=REPO / "dist")
    sub.add_parser("sanity", help="ansible-test sanity on a copy of the collection")
    args, rest = parser.parse_known_args()
    if args.command == "build":
        if rest:
            parser.error(f"unknown arguments: {' '.join(rest)}")
        print(build(args.out))
        return 0
    return sanity(rest)


if __name__ == "__main__":
    sys.exit(main())
