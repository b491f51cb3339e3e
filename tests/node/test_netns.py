"""A pod's named network namespace, made and removed with syscalls from a thread of
this process (no ``ip`` run): what ``ip netns`` would show, loopback up, the calling
thread left where it was, and nothing left behind when a step fails."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from provisioner.errors import NodeError
from provisioner.node.oci import network

pytestmark = [pytest.mark.kernel]


@pytest.fixture
def name() -> Iterator[str]:
    """A namespace name of this test's own, removed afterwards whatever happened."""
    made = f"prov-test-{uuid.uuid4().hex[:8]}"
    yield made
    subprocess.run(["ip", "netns", "delete", made], capture_output=True, check=False)
    if os.path.exists(network.netns_path(made)):
        os.unlink(network.netns_path(made))


def _ip(*argv: str) -> str:
    return subprocess.run(["ip", *argv], capture_output=True, text=True,
                          check=True).stdout


def test_made_namespace_is_listed_with_loopback_up(name: str) -> None:
    own = os.readlink("/proc/thread-self/ns/net")
    path = network.ensure_netns(name)
    assert path == f"/run/netns/{name}"
    assert network.is_live(name)
    assert name in _ip("netns", "list").split()
    flags = _ip("-n", name, "-o", "link", "show", "lo").split("<", 1)[1].split(">", 1)[0]
    assert "UP" in flags.split(","), flags
    # ours only: no other interface, and this thread is still in its own namespace
    assert len(_ip("-n", name, "-o", "link", "show").splitlines()) == 1
    assert os.readlink("/proc/thread-self/ns/net") == own
    assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino


def test_ensure_again_keeps_the_live_namespace(name: str) -> None:
    network.ensure_netns(name)
    before = os.stat(network.netns_path(name)).st_ino
    network.ensure_netns(name)
    assert os.stat(network.netns_path(name)).st_ino == before


def test_a_stale_file_is_replaced(name: str) -> None:
    os.makedirs(network.NETNS_DIR, exist_ok=True)
    with open(network.netns_path(name), "w"):
        pass  # as a reboot leaves it on a /run that is not a tmpfs
    assert not network.is_live(name)
    network.ensure_netns(name)
    assert network.is_live(name)


def test_remove_deletes_it_and_missing_is_fine(name: str) -> None:
    network.ensure_netns(name)
    network.remove_netns(name)
    assert not os.path.exists(network.netns_path(name))
    assert name not in _ip("netns", "list").split()
    network.remove_netns(name)  # again: nothing to do


def test_a_failed_step_leaves_nothing(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Failure injected: loopback cannot really be refused to root in a fresh namespace.
    def refuse(_: str) -> None:
        raise NodeError(f"bringing up loopback in {name}: refused")

    monkeypatch.setattr(network, "_loopback_up", refuse)
    with pytest.raises(NodeError, match="loopback"):
        network.ensure_netns(name)
    assert not os.path.exists(network.netns_path(name))
    assert name not in _ip("netns", "list").split()
