"""The collection as users get it: ``ansible-galaxy collection build`` makes a tarball,
``ansible-galaxy collection install -p <tmp>`` installs it, and its playbooks and
modules work from another directory with only that collections path — nothing of the
repository's ``ansible_collections/`` folder is used."""

from __future__ import annotations

import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.node.runtime.layer import NodeConfig, NodeLayer
from tests.ansible.harness import REPO, VENV_BIN, Play
from tests.conftest import tear_down

pytestmark = pytest.mark.kernel


def galaxy(*args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    done = subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", *args], cwd=cwd,
                          env={**env, "ANSIBLE_HOME": str(cwd / "ansible-home")},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Play]:
    """A node whose playbooks find the collection only in a temporary collections path
    where the built tarball was installed."""
    if os.geteuid() != 0:
        pytest.skip("needs root, cgroups and namespaces")
    dist, collections = tmp_path / "dist", tmp_path / "collections"
    galaxy("build", "--output-path", str(dist), str(REPO / "ansible_collections" /
                                                    "provisioner" / "node"), cwd=tmp_path)
    [tarball] = dist.glob("provisioner-node-*.tar.gz")
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    assert {"galaxy.yml", "MANIFEST.json", "plugins/action/manifest.py"} - names == {
        "galaxy.yml"}  # a built collection carries MANIFEST.json, not galaxy.yml
    assert not any(name.startswith("tests/output") for name in names)
    galaxy("install", "-p", str(collections), str(tarball), cwd=tmp_path)
    (tmp_path / "node").mkdir()
    play = Play(tmp_path / "node", collections_path=collections)
    try:
        yield play
    finally:
        tear_down(NodeLayer(NodeConfig(state_dir=play.state_dir, cgroup_root=play.root)))


def test_the_installed_tarball_converges_from_another_directory(installed: Play) -> None:
    root = installed.env["ANSIBLE_COLLECTIONS_PATH"]
    module = Path(root) / "ansible_collections" / "provisioner" / "node" / "plugins"
    assert (module / "modules" / "manifest.py").is_file()
    assert str(REPO) not in root
    first = installed.converge()
    assert (first.code, first.changed, first.failed) == (0, 1, 0), first.out
    assert len(installed.pids()) == 3
    second = installed.converge()
    assert (second.code, second.changed, second.failed) == (0, 0, 0), second.out
    removed = installed.teardown()
    assert (removed.code, removed.changed) == (0, 1), removed.out
    assert installed.status() == {}
