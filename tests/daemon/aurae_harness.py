"""A real gRPC server with the Aurae servicers on a temporary unix socket, for tests.

Independent of ``server.py``: the server is built here with ``register_all`` on a
private node (unique cgroup root, private state directory) from ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from provisioner.daemon.aurae_observe import DEFAULT_RING_LINES
from provisioner.daemon.context import DaemonConfig, DaemonContext
from provisioner.daemon.services import register_all
from provisioner.executors.local import LocalExecutor
from provisioner.node.process.logs import LogRing
from provisioner.node.runtime.layer import NodeLayer
from tests.conftest import make_config, tear_down


@dataclass
class Daemon:
    ctx: DaemonContext
    channel: grpc.Channel
    socket: str

    @property
    def layer(self) -> NodeLayer:
        return self.ctx.layer


@contextlib.contextmanager
def running_daemon(tmp_path: Path, ring_lines: int = DEFAULT_RING_LINES,
                   daemon_log_lines: int = 10_000, workers: int = 32) -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("the daemon's node layer needs root, cgroups and namespaces")
    layer = NodeLayer(make_config(tmp_path / "state"))
    ctx = DaemonContext(
        DaemonConfig(state_dir=layer.config.state_dir, cgroup_root=layer.config.cgroup_root,
                     socket=None, health_ttl_s=0),
        layer, LocalExecutor(layer), daemon_log=LogRing(daemon_log_lines))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    # Unix socket paths are limited to 107 bytes, which a deep tmp_path can exceed.
    sock_dir = tempfile.mkdtemp(prefix="pa", dir="/tmp")
    socket = os.path.join(sock_dir, "d.sock")
    try:
        register_all(server, ctx, ring_lines=ring_lines)
        server.add_insecure_port(f"unix://{socket}")
        server.start()
        channel = grpc.insecure_channel(f"unix://{socket}")
        try:
            yield Daemon(ctx, channel, socket)
        finally:
            ctx.stopping.set()
            channel.close()
            server.stop(grace=1).wait()
    finally:
        tear_down(layer)
        shutil.rmtree(sock_dir, ignore_errors=True)


def wait_for(predicate: Callable[[], object], timeout: float = 5.0,
             what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    """The RpcError ``call`` raises (the test fails if it succeeds)."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    err = rpc_error(call)
    code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
    return code


def details_of(call: Callable[[], object]) -> str:
    err = rpc_error(call)
    details: str = err.details()  # type: ignore[attr-defined]
    return details
