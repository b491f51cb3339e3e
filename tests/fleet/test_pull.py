"""GitOps pull mode: a node converges itself from a git repository with ansible-pull.

The role is run with pull mode on (ansible-core and the collection go to the node from
the controller, nothing is downloaded on it); the repository is a local one reached by
a file:// URL. The test runs the command the timer (systemd) or cron entry would run,
``/opt/provisioner/bin/provisioner-pull``, over SSH on the node.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from scripts import fleet as fleet_script
from tests.fleet import harness

pytestmark = [pytest.mark.slow, pytest.mark.kernel]
FLEET_SIZE = 1
SITE = """\
- name: Converge this node from the repository
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Make the node match the manifests of the repository
      provisioner.node.manifest:
        src: "{{ playbook_dir }}/gitops"
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
                   cwd=repo, check=True, capture_output=True)


def pulled_changes(output: str) -> int:
    found = re.search(r"localhost\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0",
                      output)
    assert found, output[-3000:]
    return int(found[1])


def names(fleet: fleet_script.Fleet) -> set[str]:
    done = harness.remote_status(fleet, "h1")
    assert done.returncode == 0, done.stderr
    return {r["name"] for r in json.loads(done.stdout)["resources"]}


def test_a_commit_changes_the_node_on_the_next_pull(
        fleet: fleet_script.Fleet, collections: Path, workdir: Path) -> None:
    repo = workdir / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "site.yml").write_text(SITE)
    harness.write_manifests(repo / "gitops", executables=1)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one executable")

    boot = harness.run_playbook(
        fleet, collections, "provisioner.node.bootstrap",
        *harness.bootstrap_args("-e", "daemon_pull_enabled=true",
                                "-e", f"daemon_pull_url=file://{repo}"), cwd=workdir)
    assert boot.all_green(), boot.output[-4000:]
    pull_command = "/opt/provisioner/bin/provisioner-pull"
    assert harness.host_path(fleet, "h1", pull_command).exists()

    first = harness.ssh(fleet, "h1", pull_command)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert pulled_changes(first.stdout) == 1
    assert {"c0", "e0"} <= names(fleet) and "e1" not in names(fleet)

    harness.write_manifests(repo / "gitops", executables=2)
    git(repo, "commit", "-q", "-am", "a second executable")
    second = harness.ssh(fleet, "h1", pull_command)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert pulled_changes(second.stdout) == 1
    assert "e1" in names(fleet)

    nothing = harness.ssh(fleet, "h1", pull_command)
    assert pulled_changes(nothing.stdout) == 0

    # drift: someone removes the set on the node; a --check pull reports it, changes nothing
    removed = harness.ssh(fleet, "h1", "/opt/provisioner/bin/provisioner", "destroy",
                  "--manifest-set", "gitops")
    assert removed.returncode == 0, removed.stderr
    drift = harness.ssh(fleet, "h1", pull_command, "--check", "--diff")
    assert drift.returncode == 0, drift.stdout[-3000:]
    assert pulled_changes(drift.stdout) == 1
    assert "e0" not in names(fleet)
    healed = harness.ssh(fleet, "h1", pull_command)
    assert pulled_changes(healed.stdout) == 1
    assert {"e0", "e1"} <= names(fleet)
