"""The daemon in-process on a temporary unix socket, called through real gRPC channels."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from provisioner.daemon.context import DaemonConfig, DaemonContext
from provisioner.daemon.server import Daemon, start
from provisioner.errors import FailedPrecondition
from provisioner.executors.local import LocalExecutor
from provisioner.model import ExecutableSpec
from provisioner.node.runtime.layer import NodeLayer
from tests.conftest import make_config, tear_down

pytestmark = pytest.mark.kernel

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    """A directory with a short path: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="pd", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def running_daemon(tmp: Path, **config: Any) -> Iterator[Daemon]:
    """A started daemon on its own node (state dir, cgroup root) and socket."""
    if os.geteuid() != 0:
        pytest.skip("the daemon needs root, cgroups and namespaces")
    node_config = make_config(tmp / "state")
    layer = NodeLayer(node_config)
    config.setdefault("socket", str(tmp / "run" / "p.sock"))  # parent made by the daemon
    daemon_config = DaemonConfig(state_dir=node_config.state_dir,
                                 cgroup_root=node_config.cgroup_root, **config)
    ctx = DaemonContext(daemon_config, layer, LocalExecutor(layer))
    daemon: Daemon | None = None
    try:
        daemon = start(ctx)
        yield daemon
    finally:
        if daemon is not None:
            daemon.stop(grace_s=1.0)
        tear_down(layer)


def unix_channel(daemon: Daemon) -> grpc.Channel:
    return grpc.insecure_channel(f"unix://{daemon.ctx.config.socket}")


def check(channel: grpc.Channel, service: str = "", timeout: float = 5.0) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return int(reply.status)


def list_services(channel: grpc.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    return [s.name for r in replies for s in r.list_services_response.service]


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with short_dir() as tmp, running_daemon(tmp) as started:
        yield started


def test_health_and_reflection_answer_on_the_unix_socket(daemon: Daemon) -> None:
    with unix_channel(daemon) as channel:
        assert check(channel) == SERVING
        services = list_services(channel)
        assert "grpc.health.v1.Health" in services
        assert "grpc.reflection.v1alpha.ServerReflection" in services
        for name in services:
            assert check(channel, name) == SERVING, name
    lines, _ = daemon.ctx.daemon_log.since(0)
    assert any("serving on" in line.text for line in lines)
    assert any("reconciled" in line.text for line in lines)


def test_the_socket_is_0600_and_owned_by_root(daemon: Daemon) -> None:
    st = os.stat(str(daemon.ctx.config.socket))
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (0, 0)
    # No staging directory is left next to it.
    assert os.listdir(os.path.dirname(str(daemon.ctx.config.socket))) == ["p.sock"]


def test_a_socket_group_gets_read_write(tmp_path: Path) -> None:
    with short_dir() as tmp, running_daemon(tmp, socket_group="daemon") as started:
        st = os.stat(str(started.ctx.config.socket))
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert (st.st_uid, st.st_gid) == (0, 1)  # Debian's "daemon" group


def test_a_stale_socket_is_replaced_and_a_live_one_refused() -> None:
    with short_dir() as tmp:
        path = tmp / "run" / "p.sock"
        path.parent.mkdir()
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(path))
        stale.close()  # the file stays, nothing listens
        with running_daemon(tmp) as first:
            assert check(unix_channel(first)) == SERVING
            other_state = tmp / "other"
            other_state.mkdir()
            ctx = DaemonContext(DaemonConfig(state_dir=str(other_state), socket=str(path)),
                                first.ctx.layer, first.ctx.executor)
            with pytest.raises(FailedPrecondition, match="another daemon is listening on"):
                start(ctx)
            # The refused daemon neither unlinked nor replaced the live socket.
            assert check(unix_channel(first)) == SERVING
            # A second daemon on the same state directory is refused too.
            same_state = DaemonContext(
                DaemonConfig(state_dir=first.ctx.config.state_dir,
                             socket=str(tmp / "run" / "q.sock")),
                first.ctx.layer, first.ctx.executor)
            with pytest.raises(FailedPrecondition, match="serves the state directory"):
                start(same_state)
        assert not path.exists()  # removed at stop


def test_a_regular_file_in_the_way_is_refused(tmp_path: Path) -> None:
    with short_dir() as tmp:
        path = tmp / "run" / "p.sock"
        path.parent.mkdir()
        path.write_text("not a socket")
        with pytest.raises(FailedPrecondition, match="is not a socket"), running_daemon(tmp):
            pass
        assert path.read_text() == "not a socket"


def test_an_oversized_request_is_resource_exhausted() -> None:
    with short_dir() as tmp, running_daemon(tmp, max_message_bytes=64 * 1024) as started, \
            unix_channel(started) as channel:
        with pytest.raises(grpc.RpcError) as err:
            check(channel, "x" * 100_000)
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert check(channel) == SERVING  # the daemon carries on


def test_calls_past_the_concurrency_limit_are_resource_exhausted() -> None:
    with short_dir() as tmp, running_daemon(tmp, max_concurrent_rpcs=2) as started, \
            unix_channel(started) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watches = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=20) for _ in range(2)]
        for watch in watches:
            assert next(watch).status == SERVING  # both are in flight now
        with pytest.raises(grpc.RpcError) as err:
            check(channel)
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        for watch in watches:
            watch.cancel()
        deadline = time.monotonic() + 5
        while True:  # the slots free up once the server sees the cancellations
            try:
                assert check(channel) == SERVING
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline
                time.sleep(0.05)


def test_a_deadline_ends_a_stream(daemon: Daemon) -> None:
    with unix_channel(daemon) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(),
                                                          timeout=0.3)
        with pytest.raises(grpc.RpcError) as err:
            list(watch)
        assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


def _sleeper(layer: NodeLayer, name: str) -> int:
    status = layer.start_executable(ExecutableSpec(name, "sleep 60"))
    assert status.child_pid
    return status.child_pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_ends_streams_and_leaves_executables_running() -> None:
    with short_dir() as tmp, running_daemon(tmp) as started:
        pid = _sleeper(started.ctx.layer, "sleeper")
        channel = unix_channel(started)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(),
                                                          timeout=10)
        assert next(watch).status == SERVING
        began = time.monotonic()
        started.stop(grace_s=5.0)
        assert time.monotonic() - began < 3  # the watch did not hold the grace period
        assert [r.status for r in watch] == [NOT_SERVING]
        assert started.ctx.stopping.is_set()
        assert _alive(pid)
        assert started.ctx.layer.is_running("sleeper")
        assert not os.path.exists(str(started.ctx.config.socket))
        channel.close()


def test_stop_on_exit_stops_executables() -> None:
    with short_dir() as tmp, running_daemon(tmp, stop_on_exit=True) as started:
        pid = _sleeper(started.ctx.layer, "sleeper")
        started.stop(grace_s=1.0)
        assert not started.ctx.layer.is_running("sleeper")
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)


def test_sigterm_stops_the_real_daemon_and_executables_keep_running(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    node_config = make_config(tmp_path / "state")
    layer = NodeLayer(node_config)
    try:
        pid = _sleeper(layer, "survivor")
        with short_dir() as tmp:
            sock = str(tmp / "p.sock")
            proc = subprocess.Popen(
                [sys.executable, "-m", "provisioner", "daemon", "--socket", sock,
                 "--state-dir", node_config.state_dir, "--cgroup-root", node_config.cgroup_root],
                stderr=subprocess.PIPE, text=True)
            try:
                deadline = time.monotonic() + 20
                while not os.path.exists(sock):
                    assert proc.poll() is None and time.monotonic() < deadline
                    time.sleep(0.05)
                with grpc.insecure_channel(f"unix://{sock}") as channel:
                    grpc.channel_ready_future(channel).result(timeout=10)
                    assert check(channel) == SERVING
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=20)
            finally:
                if proc.poll() is None:
                    proc.kill()
            assert proc.returncode == 0, err
            assert "received SIGTERM" in err
            assert "leaving 1 executable(s) running" in err
            assert not os.path.exists(sock)
        assert _alive(pid)
    finally:
        tear_down(layer)
