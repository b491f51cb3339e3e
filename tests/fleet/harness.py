"""Running the collection against a test fleet: build and install it, run playbooks.

Shared by tests/fleet/ and bench/fleet.py. Everything happens as a user of the
collection would do it: the tarball made by ``ansible-galaxy collection build`` is
installed into a temporary collections path, and the playbooks run by their FQCN from a
directory outside the repository, with the fleet's ansible.cfg (scripts/fleet.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scripts import fleet as fleet_script

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "ansible_collections" / "provisioner" / "node"
BIN = Path(sys.executable).parent
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                    r"failed=(\d+)\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)", re.M)


@dataclass(frozen=True)
class Recap:
    ok: int
    changed: int
    unreachable: int
    failed: int


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    recap: dict[str, Recap]
    output: str
    seconds: float

    def changed(self) -> dict[str, int]:
        return {host: r.changed for host, r in self.recap.items()}

    def all_green(self) -> bool:
        return self.returncode == 0 and all(
            r.failed == 0 and r.unreachable == 0 for r in self.recap.values())


def install_collection(into: Path) -> Path:
    """Build the collection's tarball and install it under ``into``; the collections
    path to give Ansible."""
    dist = into / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    _run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path",
          str(dist), str(COLLECTION)], cwd=into)
    tarball = next(dist.glob("provisioner-node-*.tar.gz"))
    collections = into / "collections"
    _run([str(BIN / "ansible-galaxy"), "collection", "install", "--force", "-p",
          str(collections), str(tarball)], cwd=into)
    return collections


def run_playbook(fleet: fleet_script.Fleet, collections: Path, playbook: str,
                 *args: str, cwd: Path, extra_env: dict[str, str] | None = None
                 ) -> PlaybookRun:
    """``ansible-playbook PLAYBOOK ARGS`` against the fleet, from ``cwd``."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(Path(fleet.run_dir, "ansible.cfg")),
           "ANSIBLE_COLLECTIONS_PATH": str(collections),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "PYTHONWARNINGS": "ignore::DeprecationWarning",
           "PWD": str(cwd),  # relative manifest paths are resolved against $PWD
           **(extra_env or {})}
    started = time.monotonic()
    done = subprocess.run([str(BIN / "ansible-playbook"), playbook, *args], cwd=cwd,
                          env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    recap = {m[1]: Recap(int(m[2]), int(m[3]), int(m[4]), int(m[5]))
             for m in _RECAP.finditer(done.stdout)}
    return PlaybookRun(done.returncode, recap, output, seconds)


def bootstrap_args(*extra: str) -> list[str]:
    """The bootstrap's variables: this checkout is the source of the wheelhouse; the
    wheel cache is shared between runs (keyed by lock and source hashes)."""
    cache = os.environ.get("PROVISIONER_WHEELHOUSE_CACHE",
                           str(Path.home() / ".cache" / "provisioner" / "wheelhouse"))
    return ["-e", f"daemon_source_dir={REPO}", "-e", f"daemon_wheelhouse_cache={cache}",
            *extra]


def host_path(fleet: fleet_script.Fleet, host: str, path: str) -> Path:
    """Where ``path`` (one of the private paths) of a test host is seen from here."""
    from scripts import fleet_hosts

    for private in fleet_hosts.PRIVATE_PATHS:
        if path == private or path.startswith(private + "/"):
            base = fleet_hosts.private_dir(Path(fleet.run_dir, "hosts", host), private)
            return base / path[len(private):].lstrip("/")
    raise ValueError(f"{path} is not private to a test host")


def write_manifests(directory: Path, executables: int, cells: int = 1,
                    command: str = "sleep infinity", prefix: str = "") -> Path:
    """A manifest set: ``cells`` cells and ``executables`` executables spread over them
    (named ``<prefix>c0``..., ``<prefix>e0``...)."""
    directory.mkdir(parents=True, exist_ok=True)
    docs = []
    for c in range(cells):
        docs.append("apiVersion: provisioner/v1\nkind: Cell\nmetadata:\n"
                    f"  name: {prefix}c{c}\n"
                    "spec:\n  cpu:\n    weight: 100\n")
    for e in range(executables):
        docs.append("apiVersion: provisioner/v1\nkind: Executable\nmetadata:\n"
                    f"  name: {prefix}e{e}\n"
                    f"spec:\n  cell: {prefix}c{e % cells}\n  command: \"{command}\"\n"
                    "  restartPolicy: always\n")
    (directory / "resources.yaml").write_text("---\n" + "---\n".join(docs))
    return directory


def ssh(fleet: fleet_script.Fleet, host: str, *argv: str) -> subprocess.CompletedProcess[str]:
    address = fleet.host(host).address
    return subprocess.run(
        ["ssh", "-i", str(Path(fleet.run_dir, "id_ed25519")), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "LogLevel=ERROR", f"root@{address}", "--", *argv],
        capture_output=True, text=True, check=False, timeout=600)


def remote_status(fleet: fleet_script.Fleet, host: str,
                  *tls: str) -> subprocess.CompletedProcess[str]:
    """``provisioner status --json`` from the controller, over TCP with mutual TLS."""
    pki = Path(fleet.run_dir, "inventory", "pki")
    default_tls = ("--tls-ca", str(pki / "ca.crt"), "--tls-cert", str(pki / "ansible.crt"),
                   "--tls-key", str(pki / "ansible.key"))
    return subprocess.run(
        [str(BIN / "provisioner"), "status", "--json", "--target",
         f"{fleet.host(host).address}:7443", *(tls or default_tls)],
        capture_output=True, text=True, check=False, timeout=60)


def _run(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
