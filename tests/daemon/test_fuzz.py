"""Fuzzing the daemon: every method of every API it serves gets arbitrary requests.

The requests are built from the protobuf descriptors (``proto_strategies.py``) and sent
through a real channel to a real daemon (``server.start``: every servicer, the
authorization interceptor) on a temporary socket, state directory and cgroup root.
For each: the answer is OK or a typed status, never INTERNAL or UNKNOWN; nothing is
written outside the daemon's state directory and cgroup root (an audit hook sees every
file the daemon's Python code creates, changes, renames or removes); the daemon still
answers afterwards.

A few examples per method in the normal suite (the whole module takes well under 30 s);
many more with ``HYPOTHESIS_PROFILE=fuzz`` (``./dev fuzz``).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from provisioner._proto.aurae.discovery.v0 import discovery_pb2 as disc
from provisioner._proto.aurae.discovery.v0 import discovery_pb2_grpc as disc_grpc
from provisioner.daemon.server import Daemon, service_names
from tests.daemon.proto_strategies import message_strategy
from tests.daemon.test_server import running_daemon, short_dir

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "")
FUZZ = PROFILE == "fuzz"
#: The same name as the project-wide profile of ``./dev fuzz``; registered here only if
#: nobody did (tests/conftest.py may), so that the two never collide. This module's
#: tests set their number of examples themselves (below) under either.
try:
    settings.get_profile("fuzz")
except InvalidArgument:
    settings.register_profile("fuzz", max_examples=400, deadline=None)
#: Examples per method (38 methods): ``FUZZ_EXAMPLES`` overrides.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 400 if FUZZ else 12))
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
CALL_TIMEOUT_S = 5.0
STREAM_TIMEOUT_S = 0.5  # a follow that has nothing to send ends with DEADLINE_EXCEEDED
STREAM_ITEMS = 3  # read this many items of a response stream, then cancel it


def all_methods() -> list[MethodDescriptor]:
    pool = descriptor_pool.Default()
    return [method for name in service_names()
            for method in pool.FindServiceByName(name).methods]


# -- what the daemon writes -----------------------------------------------------------

_WRITE_EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.symlink", "os.link",
                 "os.truncate", "os.chmod", "os.chown", "os.utime", "os.mkfifo", "os.mknod",
                 "shutil.rmtree", "shutil.move", "shutil.copyfile"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@dataclass
class WriteWatch:
    """Paths the process writes to while ``active`` (a ``sys.addaudithook`` hook: it
    cannot be removed, so it only records while asked to)."""

    active: bool = False
    seen: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        paths: list[object] = []
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writing:
                paths.append(path)
        elif event in _WRITE_EVENTS:
            paths += [a for a in args[:2] if isinstance(a, str | bytes | os.PathLike)]
        for path in paths:
            if isinstance(path, str | bytes | os.PathLike):
                with self.lock:
                    self.seen.append((event, os.fsdecode(path)))


WATCH = WriteWatch()
sys.addaudithook(WATCH.hook)


def allowed(path: str, daemon: Daemon, socket_dir: str) -> bool:
    real = os.path.realpath(path)
    root = daemon.ctx.layer.cgroups.root_name
    inside = [os.path.realpath(daemon.ctx.config.state_dir), os.path.realpath(socket_dir),
              *daemon.ctx.layer.cgroups.cell_dirs("")]
    if any(real == p or real.startswith(p + "/") for p in inside):
        return True
    if real == "/dev/null" or real.startswith(("/proc/self/", f"/proc/{os.getpid()}/")):
        return True
    # runc's cgroups of a cell, in hierarchies the driver does not manage
    return real.startswith("/sys/fs/cgroup/") and f"/{root}/" in real + "/"


# -- the daemon -----------------------------------------------------------------------

@dataclass
class Target:
    daemon: Daemon
    channel: grpc.Channel
    socket_dir: str


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with short_dir() as tmp, running_daemon(tmp, max_message_bytes=8 * 1024 * 1024) as daemon, \
            grpc.insecure_channel(f"unix://{daemon.ctx.config.socket}") as channel:
        socket = daemon.ctx.config.socket
        assert socket is not None and str(tmp) in socket
        yield Target(daemon, channel, os.path.dirname(socket))


def call(target: Target, method: MethodDescriptor, requests: list[Message]) -> None:
    """Send the request(s); raise AssertionError for a forbidden status."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    out = message_factory.GetMessageClass(method.output_type)
    kwargs: dict[str, Any] = {"request_serializer": lambda m: m.SerializeToString(),
                              "response_deserializer": out.FromString}
    channel = target.channel
    try:
        if method.client_streaming and method.server_streaming:
            responses = channel.stream_stream(path, **kwargs)(iter(requests),
                                                             timeout=CALL_TIMEOUT_S)
            _drain(responses)
        elif method.client_streaming:
            channel.stream_unary(path, **kwargs)(iter(requests), timeout=CALL_TIMEOUT_S)
        elif method.server_streaming:
            _drain(channel.unary_stream(path, **kwargs)(requests[0],
                                                        timeout=STREAM_TIMEOUT_S))
        else:
            channel.unary_unary(path, **kwargs)(requests[0], timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        code, details = exc.code(), exc.details() or ""
        assert code not in FORBIDDEN, f"{path}: {code.name}: {details}"


def _drain(responses: Any) -> None:
    for count, _ in enumerate(responses, 1):
        if count >= STREAM_ITEMS:
            responses.cancel()  # a follow would go on for ever
            break


def still_answers(target: Target) -> None:
    reply = disc_grpc.DiscoveryServiceStub(target.channel).Discover(
        disc.DiscoverRequest(), timeout=10)
    assert reply.healthy


METHODS = all_methods()


@pytest.mark.parametrize("method", METHODS, ids=[m.full_name for m in METHODS])
def test_any_request_gets_a_typed_status_and_writes_only_inside(
        target: Target, method: MethodDescriptor) -> None:
    messages = message_strategy(method.input_type)
    requests = (st.lists(messages, max_size=4) if method.client_streaming
                else messages.map(lambda m: [m]))

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(requests)
    def fuzz(batch: list[Message]) -> None:
        WATCH.seen.clear()
        WATCH.active = True
        try:
            call(target, method, batch)
        finally:
            WATCH.active = False
        outside = [(event, path) for event, path in WATCH.seen
                   if not allowed(path, target.daemon, target.socket_dir)]
        assert not outside, f"{method.full_name} wrote outside its roots: {outside}"
        still_answers(target)

    fuzz()


def test_the_write_watch_sees_a_write_outside(target: Target, tmp_path: Path) -> None:
    outside = tmp_path / "escaped"
    WATCH.seen.clear()
    WATCH.active = True
    try:
        outside.write_text("x")
        os.mkdir(tmp_path / "dir")
    finally:
        WATCH.active = False
    seen = [path for _, path in WATCH.seen]
    assert seen == [str(outside), str(tmp_path / "dir")]
    assert not any(allowed(p, target.daemon, target.socket_dir) for p in seen)
    inside = os.path.join(target.daemon.ctx.config.state_dir, "x")
    assert allowed(inside, target.daemon, target.socket_dir)
    assert not allowed(os.path.join(target.daemon.ctx.config.state_dir, "..", "x"),
                       target.daemon, target.socket_dir)


def test_every_api_the_daemon_serves_is_fuzzed() -> None:
    services = {m.containing_service.full_name for m in METHODS}
    assert services >= {"aurae.runtime.v0.CellService", "provisioner.v1.NodeService",
                        "atomix.runtime.v1.Registry", "runtime.Runtime", "v1alpha.PublicAPI"}
    assert len(METHODS) > 30
