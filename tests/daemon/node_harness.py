"""A real gRPC server with NodeService, the rkt API and the driver registry on a
temporary unix socket, for tests. Built here from the modules' ``register`` functions
(not ``server.py``), on a private node: unique cgroup root, private state directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from provisioner import records
from provisioner.daemon import node_service, registry, rkt
from provisioner.daemon.context import DaemonConfig, DaemonContext
from provisioner.executors.local import LocalExecutor
from provisioner.node.runtime.layer import NodeLayer
from tests.conftest import make_config, tear_down


@dataclass
class Daemon:
    ctx: DaemonContext
    channel: grpc.Channel
    socket: str
    #: Port on 127.0.0.1 when asked for (``tcp=True``), else None.
    tcp_port: int | None = None

    @property
    def target(self) -> str:
        return f"unix://{self.socket}"

    @property
    def layer(self) -> NodeLayer:
        return self.ctx.layer


@contextlib.contextmanager
def running_daemon(tmp_path: Path, max_driver_bytes: int = 16 * 1024 * 1024,
                   rkt_source: rkt.PodSource | None = None,
                   lock_timeout_s: float = 10.0, tcp: bool = False,
                   tls: grpc.ServerCredentials | None = None,
                   pod_subnet: str | None = None) -> Iterator[Daemon]:
    """The daemon; with ``tcp`` also on 127.0.0.1 (with ``tls`` credentials, if given);
    ``pod_subnet``: its pod bridge's (default: the node's default)."""
    if os.geteuid() != 0:
        pytest.skip("the daemon's node layer needs root, cgroups and namespaces")
    config_ = make_config(tmp_path / "state")
    if pod_subnet is not None:
        config_ = records.replace(config_, pod_subnet=pod_subnet)
    layer = NodeLayer(config_)
    config = DaemonConfig(state_dir=layer.config.state_dir,
                          cgroup_root=layer.config.cgroup_root, socket=None,
                          max_driver_bytes=max_driver_bytes)
    ctx = DaemonContext(config, layer, LocalExecutor(layer, lock_timeout_s=lock_timeout_s))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    # Unix socket paths are limited to 107 bytes, which a deep tmp_path can exceed.
    sock_dir = tempfile.mkdtemp(prefix="pn", dir="/tmp")
    socket = os.path.join(sock_dir, "d.sock")
    try:
        node_service.register(server, ctx)
        registry.register(server, ctx)
        rkt.register(server, ctx, rkt_source)
        server.add_insecure_port(f"unix://{socket}")
        port = None
        if tcp:
            port = (server.add_secure_port("127.0.0.1:0", tls) if tls is not None
                    else server.add_insecure_port("127.0.0.1:0"))
        server.start()
        channel = grpc.insecure_channel(f"unix://{socket}")
        try:
            yield Daemon(ctx, channel, socket, port)
        finally:
            ctx.stopping.set()
            channel.close()
            server.stop(grace=1).wait()
    finally:
        tear_down(layer)
        shutil.rmtree(sock_dir, ignore_errors=True)


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    """The RpcError ``call`` raises (it must raise one)."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the call succeeded")


def code_of(exc: grpc.RpcError) -> grpc.StatusCode:
    assert isinstance(exc, grpc.Call)
    return exc.code()


def details_of(exc: grpc.RpcError) -> str:
    assert isinstance(exc, grpc.Call)
    return exc.details() or ""
