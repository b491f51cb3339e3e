"""Real ``ansible-playbook`` runs of the collection ``provisioner.node`` against a private
node: a temporary state directory and a unique cgroup root per test (or a private
daemon's target), set once through ``module_defaults`` for the group
``provisioner.node.node`` — so the machine's daemon and default state are never touched.

Playbooks run from the test's temporary directory (not the repository), with
``ANSIBLE_COLLECTIONS_PATH`` naming the repository (its top folder holds
``ansible_collections/``) or, for the installed-tarball test, a temporary collections
path. Runs use ``-v`` so each task's result is printed as one JSON object, which
:attr:`Run.results` parses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.node.runtime.layer import NodeConfig, NodeLayer
from tests.conftest import make_config, tear_down

REPO = Path(__file__).parents[2]
VENV_BIN = Path(sys.executable).parent  # the virtualenv running the tests
EXAMPLES = REPO / "examples" / "node"
RECAP_RE = re.compile(r"\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                      r"failed=(\d+)\s+skipped=\d+\s+rescued=\d+\s+ignored=(\d+)")
#: A task's (or loop item's) result line with -v: ``changed: [localhost] => {...}``,
#: ``failed: [localhost] (item=...) => {...}``.
RESULT_RE = re.compile(r"^(?:ok|changed|fatal|failed): \[[^\]]+\](?:: FAILED!)?"
                       r"(?: =>)?(?: \(item=.*?\))? => (\{.*\})$", re.MULTILINE)


@dataclass
class Run:
    code: int
    out: str
    ok: int
    changed: int
    failed: int
    ignored: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)

    def of(self, key: str) -> list[dict[str, Any]]:
        """The results that have ``key`` (a module's results: ``plan``, ``node``...)."""
        return [r for r in self.results if key in r]


def parse_results(out: str) -> list[dict[str, Any]]:
    results = []
    for match in RESULT_RE.finditer(out):
        try:
            results.append(json.loads(match.group(1)))
        except ValueError:
            continue
    return results


class Play:
    """Runs playbooks of the collection (FQCN) or written per test, against a private
    node."""

    def __init__(self, tmp: Path, collections_path: Path = REPO) -> None:
        config = make_config(tmp / "state")
        self.state_dir, self.root, self.tmp = config.state_dir, config.cgroup_root, tmp
        #: Where the modules act: this state and cgroup root, or {"target": a daemon}.
        self.node: dict[str, str] = {"state_dir": self.state_dir, "cgroup_root": self.root}
        self.src = tmp / "node"
        shutil.copytree(EXAMPLES, self.src)
        self.cwd = tmp / "elsewhere"  # not the repository: nothing found by accident
        self.cwd.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("ANSIBLE_", "PROVISIONER_"))}
        self.env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_path), ANSIBLE_NOCOLOR="1",
                        ANSIBLE_FORCE_COLOR="0", ANSIBLE_DEPRECATION_WARNINGS="0",
                        ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_STDOUT_CALLBACK="default",
                        ANSIBLE_HOME=str(tmp / "ansible-home"),
                        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-local"),
                        ANSIBLE_REMOTE_TEMP=str(tmp / "ansible-remote"))
        self.runs = 0

    def playbook(self, playbook: str, *flags: str, inventory: str = "localhost,",
                 host: str = "localhost", **variables: Any) -> Run:
        """``ansible-playbook <playbook>`` (a collection's playbook by FQCN, or a file)
        on ``host`` of ``inventory`` (default this machine), with the virtualenv's
        Python; ``self.node`` as the playbooks' ``provisioner_*`` node variables."""
        extra = {f"provisioner_{k}": v for k, v in self.node.items()}
        extra.update(variables)
        command = [str(VENV_BIN / "ansible-playbook"), playbook, "-i", inventory,
                   *(["-c", "local"] if inventory == "localhost," else []),
                   "-e", f"ansible_python_interpreter={VENV_BIN / 'python'}",
                   "-e", json.dumps(extra), "-v", *flags]
        done = subprocess.run(command, cwd=self.cwd, env=self.env, capture_output=True,
                              text=True, timeout=120, check=False)
        out = done.stdout + done.stderr
        recap = re.search(re.escape(host) + RECAP_RE.pattern, out)
        assert recap, out
        ok, changed, _, failed, ignored = (int(n) for n in recap.groups())
        return Run(done.returncode, out, ok, changed, failed, ignored, parse_results(out))

    def converge(self, *flags: str, **variables: Any) -> Run:
        return self.playbook("provisioner.node.converge", *flags,
                             **{"provisioner_manifests": str(self.src), **variables})

    def teardown(self, *flags: str, **variables: Any) -> Run:
        return self.playbook("provisioner.node.teardown", *flags,
                             **{"provisioner_manifests": str(self.src), **variables})

    def tasks(self, tasks: list[dict[str, Any]], *flags: str, inventory: str = "localhost,",
              host: str = "localhost", **play: Any) -> Run:
        """One play of ``tasks`` written to a file next to the node; ``self.node`` set
        for every module of the collection through module_defaults."""
        self.runs += 1
        path = self.tmp / f"play-{self.runs}.yml"
        path.write_text(yaml.safe_dump([{
            "hosts": host, "gather_facts": False,
            "module_defaults": {"group/provisioner.node.node": dict(self.node)},
            "tasks": tasks, **play}], sort_keys=False))
        return self.playbook(str(path), *flags, inventory=inventory, host=host)

    def status(self) -> dict[str, dict[str, Any]]:
        where = (["--target", self.node["target"]] if "target" in self.node else
                 ["--state-dir", self.state_dir, "--cgroup-root", self.root])
        if "tls_ca" in self.node:
            where += ["--tls-ca", self.node["tls_ca"], "--tls-cert", self.node["tls_cert"],
                      "--tls-key", self.node["tls_key"]]
        done = subprocess.run([str(VENV_BIN / "provisioner"), "status", "--json", *where],
                              env=self.env, capture_output=True, text=True, timeout=30,
                              check=True)
        return {f"{r['kind']}/{r['name']}": r for r in json.loads(done.stdout)["resources"]}

    def pids(self) -> dict[str, int]:
        return {k: r["pid"] for k, r in self.status().items() if k.startswith("Executable/")}

    def cell_dirs(self) -> list[Path]:
        """Cgroups of cells below the root, in every hierarchy (v1 controllers, v2)."""
        roots = [*Path("/sys/fs/cgroup").glob(f"*/{self.root}"),
                 Path(f"/sys/fs/cgroup/{self.root}")]
        return [p for root in roots if root.is_dir() for p in root.iterdir() if p.is_dir()]

    def cpu_weight_file(self, cell: str) -> str:
        """The kernel's CPU weight of ``cell``: v1 cpu.shares, else v2 cpu.weight."""
        v1 = Path(f"/sys/fs/cgroup/cpu/{self.root}/{cell}/cpu.shares")
        v2 = Path(f"/sys/fs/cgroup/{self.root}/{cell}/cpu.weight")
        return (v1 if v1.exists() else v2).read_text().strip()

    def edit(self, name: str, old: str, new: str) -> Path:
        path = self.src / name
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))
        return path

    def drop_documents(self, name: str, needle: str) -> None:
        path = self.src / name
        documents = path.read_text().split("\n---\n")
        path.write_text("\n---\n".join(d for d in documents if needle not in d))


@pytest.fixture
def play(tmp_path: Path) -> Iterator[Play]:
    if os.geteuid() != 0:
        pytest.skip("needs root, cgroups and namespaces")
    created = Play(tmp_path)
    try:
        yield created
    finally:
        tear_down(NodeLayer(NodeConfig(state_dir=created.state_dir,
                                       cgroup_root=created.root)))


def gone(pid: int, within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
