"""A test fleet of real hosts on this machine, with the collection installed as a user
would: built tarball, temporary collections path, playbooks run from another directory."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import fleet as fleet_script
from scripts import fleet_hosts
from tests.fleet import harness


def _can_run() -> str | None:
    if os.geteuid() != 0:
        return "the test fleet needs root (namespaces, bridges)"
    for tool in ("/usr/sbin/sshd", "ssh", "nsenter", "unshare", "ip", "git"):
        if not shutil.which(tool):
            return f"{tool} is missing (./dev setup installs it)"
    return None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory outside the repository: the playbooks run from here."""
    return tmp_path_factory.mktemp("fleet-user")


@pytest.fixture(scope="module")
def collections(workdir: Path) -> Path:
    reason = _can_run()
    if reason:
        pytest.skip(reason)
    return harness.install_collection(workdir)


@pytest.fixture(scope="module")
def fleet(collections: Path, request: pytest.FixtureRequest) -> Iterator[fleet_script.Fleet]:
    """A fresh fleet for the test module: FLEET_SIZE hosts (module attribute, default 3)."""
    made = fleet_script.create(getattr(request.module, "FLEET_SIZE", 3), None)
    try:
        yield made
    finally:
        fleet_script.remove(made)
        assert not Path(made.run_dir).exists()
        assert not Path(f"/sys/class/net/{made.bridge}").exists()
        for host in made.hosts:  # nothing left: namespaces, links, cgroups, processes
            assert not Path(f"/run/netns/{host.netns}").exists()
            assert not Path(f"/sys/class/net/{host.veth}").exists()
            assert not fleet_hosts.cgroup_dirs(host.cgroup_root)
            assert not fleet_hosts.pids_in_namespaces(host.net_inode, host.mnt_inode)
