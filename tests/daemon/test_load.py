"""The daemon under concurrent clients: its open files stay flat (the store's bounded
connections), and GetState is one shared observation while nothing changed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest

from provisioner._proto.aurae.discovery.v0 import discovery_pb2 as disc
from provisioner._proto.aurae.discovery.v0 import discovery_pb2_grpc as disc_grpc
from provisioner._proto.provisioner.v1 import node_pb2 as npb
from provisioner._proto.provisioner.v1 import node_pb2_grpc as npb_grpc
from provisioner.daemon.state_cache import RACY_NS, ObservedCache
from provisioner.model import ExecutableSpec, Kind
from provisioner.node.runtime.layer import NodeConfig, NodeLayer
from provisioner.node.state.pool import DEFAULT_READERS
from tests.conftest import make_config, tear_down
from tests.daemon.test_server import short_dir

CLIENTS = 50


def clients(sock: str, calls: int) -> None:
    """CLIENTS clients, each with its own channel, Discover and GetState in turn."""
    start = threading.Barrier(CLIENTS)

    def client(_: int) -> None:
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            discover = disc_grpc.DiscoveryServiceStub(channel).Discover
            get_state = npb_grpc.NodeServiceStub(channel).GetState
            start.wait(30)
            for i in range(calls):
                if i % 2:
                    assert get_state(npb.GetStateRequest(), timeout=30).state.node_name
                else:
                    assert discover(disc.DiscoverRequest(), timeout=30).healthy

    with futures.ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))


@pytest.fixture
def daemon_process() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    if os.geteuid() != 0:
        pytest.skip("the daemon needs root, cgroups and namespaces")
    with short_dir() as tmp:
        config = make_config(tmp / "state")
        sock = str(tmp / "d.sock")
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner", "daemon", "--socket", sock, "--state-dir",
             config.state_dir, "--cgroup-root", config.cgroup_root],
            stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(sock):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            yield proc, sock
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            tear_down(NodeLayer(NodeConfig(state_dir=config.state_dir,
                                           cgroup_root=config.cgroup_root)))


def test_open_files_stay_flat_under_fifty_clients(
        daemon_process: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, sock = daemon_process
    fds = f"/proc/{proc.pid}/fd"

    def database_files() -> int:
        return sum(1 for fd in os.listdir(fds)
                   if "state.db" in os.path.basename(_target(f"{fds}/{fd}")))

    def other_files() -> int:
        return len(os.listdir(fds)) - database_files()

    clients(sock, 40)  # warm-up: worker threads exist now
    warm = other_files()
    threads = len(os.listdir(f"/proc/{proc.pid}/task"))
    assert threads > 10  # many calls really ran at once
    clients(sock, 40)
    after = len(os.listdir(fds))
    # The pool opens its readers lazily (a loaded machine may open the last one only in
    # the second round), so they are bounded below; everything else stays flat.
    assert other_files() <= warm + 1, (warm, other_files(), threads)
    # Each thread used to hold its own connection (two files each); now the writer and
    # at most DEFAULT_READERS readers (two files each) and one shared-memory index.
    assert database_files() <= 2 * (1 + DEFAULT_READERS) + 1
    assert after < 40, sorted(_target(f"{fds}/{fd}") for fd in os.listdir(fds))


def _target(link: str) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return ""


def backdate(path: str) -> None:
    """Make the folder's time old enough not to count as racy."""
    old = time.time_ns() - 10 * RACY_NS
    os.utime(path, ns=(old, old))


def counting(layer: NodeLayer, pause_s: float = 0.0
             ) -> tuple[ObservedCache[int], Callable[[], int]]:
    made = [0]

    def make() -> int:
        time.sleep(pause_s)
        made[0] += 1
        return made[0]

    return ObservedCache(layer, make, ttl_s=60), lambda: made[0]


def test_an_observation_is_reused_until_the_node_changes(node: NodeLayer) -> None:
    cache, made = counting(node)
    backdate(node.runtime_dir)
    assert cache.get() == cache.get() == made() == 1
    with node.store.transaction() as tx:  # a change the provisioner made: new generation
        tx.put_resource(Kind.CELL, "web", "{}")
    assert cache.get() == cache.get() == 2
    node.start_executable(ExecutableSpec("quick", "exit 0"))  # its shim writes statuses
    time.sleep(0.2)
    backdate(node.runtime_dir)
    first = cache.get()
    assert first > 2
    os.rename(node.status_file("quick"), node.status_file("quick") + ".x")  # like a shim
    os.rename(node.status_file("quick") + ".x", node.status_file("quick"))
    backdate(node.runtime_dir)
    os.utime(node.runtime_dir)  # the rename's new folder time
    assert cache.get() > first
    node.stop_executable("quick", forget=True)


def test_a_racy_folder_time_is_not_reused(node: NodeLayer) -> None:
    cache, made = counting(node)
    os.utime(node.runtime_dir)  # just now: a status written in this tick would hide
    cache.get()
    cache.get()
    assert made() == 2


def test_concurrent_callers_share_one_observation(node: NodeLayer) -> None:
    cache, made = counting(node, pause_s=0.3)
    backdate(node.runtime_dir)
    with futures.ThreadPoolExecutor(20) as pool:
        assert set(pool.map(lambda _: cache.get(), range(20))) == {1}
    assert made() == 1


def test_no_ttl_observes_every_time(node: NodeLayer) -> None:
    cache, made = counting(node)
    cache.ttl_s = 0
    backdate(node.runtime_dir)
    cache.get()
    cache.get()
    assert made() == 2
