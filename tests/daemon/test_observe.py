"""Log streams (aurae.observe.v0 and legacy observe) and legacy Status, through a real
channel: backlog then live lines, channels, cancellation, lag notices, daemon log."""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import provisioner.daemon.aurae_observe as observe_module
from provisioner._proto.aurae.discovery.v0 import discovery_pb2, discovery_pb2_grpc
from provisioner._proto.aurae.observe.v0 import observe_pb2 as pb
from provisioner._proto.aurae.observe.v0 import observe_pb2_grpc as pb_grpc
from provisioner._proto.meta import meta_pb2
from provisioner._proto.observe import observe_pb2 as legacy_pb
from provisioner._proto.observe import observe_pb2_grpc as legacy_grpc
from provisioner.model import ExecutableSpec
from provisioner.node.process.logs import STDOUT, LogLimits, LogLine, LogReader
from tests.daemon.aurae_harness import Daemon, code_of, running_daemon, wait_for
from tests.node.log_reference import LogWriter

pytestmark = pytest.mark.kernel
C = grpc.StatusCode
DROPPED = re.compile(r"^\[provisioner\] (\d+) lines were dropped because this reader fell "
                     r"behind$")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path) as d:
        yield d


def start_gated(daemon: Daemon, tmp_path: Path, name: str, before: str, after: str) -> int:
    """Start NAME: it runs BEFORE, waits for the file ``go``, runs AFTER, then sleeps."""
    go = tmp_path / "go"
    command = (f"{before}; while [ ! -e {go} ]; do sleep 0.02; done; {after}; "
               "exec sleep 60")
    status = daemon.layer.start_executable(ExecutableSpec(name, command))
    assert status.child_pid
    return status.child_pid


def logged(daemon: Daemon, name: str) -> list[str]:
    return [line.text for line in LogReader(daemon.layer.log_dir(name)).read()]


def test_sub_process_stream_backlog_then_live_then_cancel(daemon: Daemon,
                                                          tmp_path: Path) -> None:
    pid = start_gated(daemon, tmp_path, "talker", "echo one; echo two >&2", "echo three")
    wait_for(lambda: len(logged(daemon, "talker")) == 2, what="the backlog to be written")
    stub = pb_grpc.ObserveServiceStub(daemon.channel)
    both = stub.GetSubProcessStream(pb.GetSubProcessStreamRequest(process_id=pid))
    out = stub.GetSubProcessStream(pb.GetSubProcessStreamRequest(
        process_id=pid, channel_type=pb.LOG_CHANNEL_TYPE_STDOUT))
    err = stub.GetSubProcessStream(pb.GetSubProcessStreamRequest(
        process_id=pid, channel_type=pb.LOG_CHANNEL_TYPE_STDERR))
    first = [next(both), next(both)]
    assert sorted((i.channel, i.line) for i in first) == [("stderr", "two"), ("stdout", "one")]
    now = time.time_ns()
    assert all(now - 60 * 10**9 < i.timestamp <= now for i in first)  # nanoseconds
    assert next(out).line == "one"
    item = next(err)
    assert (item.channel, item.line) == ("stderr", "two")
    (tmp_path / "go").touch()
    item = next(both)
    assert (item.channel, item.line) == ("stdout", "three")  # live, after the backlog
    assert next(out).line == "three"
    both.cancel()
    out.cancel()
    err.cancel()
    with pytest.raises(grpc.RpcError) as info:
        next(both)
    assert info.value.code() is C.CANCELLED  # type: ignore[attr-defined]
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == "log-tail-talker"],
             what="the tailer to stop with its last follower")


def test_legacy_sub_process_stream_channels(daemon: Daemon, tmp_path: Path) -> None:
    pid = start_gated(daemon, tmp_path, "old", "echo out; echo err >&2", "echo later >&2")
    wait_for(lambda: len(logged(daemon, "old")) == 2)
    stub = legacy_grpc.ObserveStub(daemon.channel)
    err = stub.GetSubProcessStream(legacy_pb.GetSubProcessStreamRequest(
        process_id=pid, channel_type=legacy_pb.CHANNEL_STDERR))
    out = stub.GetSubProcessStream(legacy_pb.GetSubProcessStreamRequest(process_id=pid))
    assert (next(err).channel, next(out).line) == ("stderr", "out")  # CHANNEL_STDOUT is 0
    (tmp_path / "go").touch()
    assert next(err).line == "later"
    err.cancel()
    out.cancel()


def test_stream_errors(daemon: Daemon) -> None:
    stub = pb_grpc.ObserveServiceStub(daemon.channel)
    legacy = legacy_grpc.ObserveStub(daemon.channel)

    def first(request: pb.GetSubProcessStreamRequest) -> object:
        return next(stub.GetSubProcessStream(request))

    assert code_of(lambda: first(pb.GetSubProcessStreamRequest(process_id=2**22 + 7))
                   ) is C.NOT_FOUND
    assert code_of(lambda: first(pb.GetSubProcessStreamRequest(process_id=0))
                   ) is C.INVALID_ARGUMENT
    assert code_of(lambda: first(pb.GetSubProcessStreamRequest(
        process_id=1, channel_type=7))) is C.INVALID_ARGUMENT  # type: ignore[arg-type]
    assert code_of(lambda: next(legacy.GetSubProcessStream(
        legacy_pb.GetSubProcessStreamRequest(process_id=-3)))) is C.INVALID_ARGUMENT


def _flood(daemon: Daemon, tmp_path: Path, total: int,
           pause_after: int | None = None) -> tuple[list[int], int]:
    """Follow a process that prints 1..total at once; optionally stop reading for a
    while after ``pause_after`` lines. Returns the numbers received and the dropped
    count the stream reported."""
    pid = start_gated(daemon, tmp_path, "flood", "echo ready", f"seq 1 {total}")
    wait_for(lambda: logged(daemon, "flood") == ["ready"])
    stream = pb_grpc.ObserveServiceStub(daemon.channel).GetSubProcessStream(
        pb.GetSubProcessStreamRequest(process_id=pid))
    assert next(stream).line == "ready"
    (tmp_path / "go").touch()
    received: list[int] = []
    dropped = 0
    for item in stream:
        match = DROPPED.match(item.line)
        if match:
            dropped += int(match.group(1))
        else:  # a burst arrives coalesced: several lines per item
            received.extend(int(text) for text in item.line.split("\n"))
        if pause_after is not None and len(received) == pause_after:
            time.sleep(1.5)  # a stuck client: the tailer stops waiting for it
        if received and received[-1] == total:
            break
    stream.cancel()
    return received, dropped


def test_a_burst_reaches_a_reader_that_keeps_up_without_loss(tmp_path: Path) -> None:
    total = 30_000
    with running_daemon(tmp_path, ring_lines=256) as daemon:  # far smaller than the burst
        received, dropped = _flood(daemon, tmp_path, total)
    assert dropped == 0
    assert received == list(range(1, total + 1))


class _Call:
    """The little of a grpc.ServicerContext that follow_ring uses."""

    def is_active(self) -> bool:
        return True


def test_a_stuck_reader_is_told_how_many_lines_it_missed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Driven without gRPC: its flow-control buffers would hide a stuck client for
    megabytes. The tailer and the log files are real."""
    monkeypatch.setattr(observe_module._Tailer, "STALL_S", 0.2)
    writer = LogWriter(str(tmp_path / "logs"), LogLimits())
    hub = observe_module.LogHub(ring_lines=8)
    total = 2_000
    with hub.subscribe("flood", str(tmp_path / "logs")) as (tailer, progress):
        ring = tailer.ring
        stream = observe_module.follow_ring(ring, _Call(), threading.Event(),
                                            lambda c, line, ts: line, None, progress)
        for i in range(1, total + 1):
            writer.write("stdout", str(i))
        writer.close()
        received = [int(text) for text in next(stream).split("\n")]
        dropped = 0
        # Stuck: the tailer waits STALL_S for us, then goes on without us to the end.
        deadline = time.monotonic() + 20
        while ring.next_seq < total:
            assert time.monotonic() < deadline, "the tailer kept waiting for a stuck reader"
            time.sleep(0.01)
        for line in stream:
            match = DROPPED.match(line)
            if match:
                dropped += int(match.group(1))
            else:
                received.extend(int(text) for text in line.split("\n"))
            if received[-1] == total:
                break
    assert dropped > 0
    assert received == sorted(received)
    assert len(received) + dropped == total


def test_daemon_log_stream_backlog_live_lag_and_stop(tmp_path: Path) -> None:
    with running_daemon(tmp_path, daemon_log_lines=8) as daemon:
        ring = daemon.ctx.daemon_log
        ring.append(LogLine(time.time_ns(), STDOUT, "before"))
        stub = pb_grpc.ObserveServiceStub(daemon.channel)
        stream = stub.GetAuraeDaemonLogStream(pb.GetAuraeDaemonLogStreamRequest())
        assert next(stream).line == "before"
        ring.append(LogLine(time.time_ns(), STDOUT, "after"))
        assert next(stream).line == "after"
        for n in range(20_000):  # far more than the ring holds, faster than it is read
            ring.append(LogLine(time.time_ns(), STDOUT, str(n)))
        ring.append(LogLine(time.time_ns(), STDOUT, "end"))
        received, dropped = 0, 0
        for item in stream:
            match = DROPPED.match(item.line)
            if match:
                dropped += int(match.group(1))
                continue
            texts = item.line.split("\n")  # a burst arrives coalesced
            if texts[-1] == "end":
                received += len(texts) - 1
                break
            received += len(texts)
        assert dropped > 0 and received + dropped == 20_000

        legacy = legacy_grpc.ObserveStub(daemon.channel).GetAuraeDaemonLogStream(
            legacy_pb.GetAuraeDaemonLogStreamRequest())
        first_texts = next(legacy).line.split("\n")
        assert set(first_texts) <= {str(n) for n in range(19_990, 20_000)} | {"end"}
        daemon.ctx.stopping.set()  # the daemon stops: streams end with a last word
        lines = [i.line for i in legacy]
        assert lines[-1] == "[provisioner] stream ended: the daemon is stopping"
        assert [i.line for i in stream][-1] == lines[-1]


def test_legacy_status(daemon: Daemon, tmp_path: Path) -> None:
    stub = legacy_grpc.ObserveStub(daemon.channel)
    reply = stub.Status(legacy_pb.StatusRequest(meta=meta_pb2.AuraeMeta(name="probe")))
    assert reply.meta.name and reply.meta.message == "healthy, 0 executables running"
    start_gated(daemon, tmp_path, "one", "true", "true")
    reply = stub.Status(legacy_pb.StatusRequest())
    assert reply.meta.message == "healthy, 1 executable running"


def test_many_followers_do_not_slow_unary_calls(tmp_path: Path) -> None:
    with running_daemon(tmp_path, workers=140) as daemon:
        discovery = discovery_pb2_grpc.DiscoveryServiceStub(daemon.channel)

        def latency() -> float:
            samples = []
            for _ in range(40):
                began = time.perf_counter()
                discovery.Discover(discovery_pb2.DiscoverRequest())
                samples.append(time.perf_counter() - began)
            return statistics.median(samples)

        baseline = latency()
        pid = start_gated(daemon, tmp_path, "chatty", "echo hello", "true")
        observe = pb_grpc.ObserveServiceStub(daemon.channel)
        streams = [observe.GetSubProcessStream(pb.GetSubProcessStreamRequest(process_id=pid))
                   for _ in range(100)]
        for stream in streams:
            assert next(stream).line == "hello"
        loaded = latency()
        for stream in streams:
            stream.cancel()
        print(f"Discover median: {baseline * 1e3:.2f} ms alone, "
              f"{loaded * 1e3:.2f} ms with 100 followers")
        assert loaded < max(3 * baseline, baseline + 0.005), (baseline, loaded)
