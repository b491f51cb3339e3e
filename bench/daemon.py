#!/usr/bin/env python3
"""Daemon benchmarks over the unix socket, against a raw grpcio echo server measured in
the same run. Both servers run as separate processes; the client is this process.

1. Discover latency p50 / p99 divided by a raw echo RPC's (target <= 1.5 each).
2. Full cell lifecycle (Allocate, Start, Stop, Free) per second through CellService.
3. Log streaming to one follower (GetSubProcessStream): lines per second, and that no
   line is lost, one line per item (upstream's way) and batched (request metadata
   ``log-batching: on``; target >= 50,000 lines/s).
4. Registry push and pull of a 64 MiB driver, MB/s each way (target >= 100 each).
5. Under load: 50 concurrent clients (one channel each) x 1000 calls, alternating
   Discover and NodeService.GetState on a node holding 10 cells with one running
   executable each: both p50 / p99, GetState's p99 against its target (<= 50 ms), and
   the daemon's open file descriptors and threads after a warm-up round and after the
   load (target: flat).
6. Idle: the daemon's CPU time per second while nothing happens (every thread's, from
   ``/proc/PID/task/*/schedstat``), with nothing on the node and with 10 cells running
   40 executables (target <= 10 ms/s, 1% of a core, with them), against the raw echo
   server's idle CPU in the same run.

    python bench/daemon.py [--calls 2000] [--lifecycles 50] [--lines 300000] [--mib 64]
                           [--clients 50] [--client-calls 1000] [--idle-s 5]
                           [--only NAME ...]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc

from provisioner._proto.atomix.runtime.v1 import registry_pb2 as reg
from provisioner._proto.atomix.runtime.v1 import registry_pb2_grpc as reg_grpc
from provisioner._proto.aurae.discovery.v0 import discovery_pb2 as disc
from provisioner._proto.aurae.discovery.v0 import discovery_pb2_grpc as disc_grpc
from provisioner._proto.aurae.observe.v0 import observe_pb2 as obs
from provisioner._proto.aurae.observe.v0 import observe_pb2_grpc as obs_grpc
from provisioner._proto.aurae.runtime.v0 import runtime_pb2 as rt
from provisioner._proto.aurae.runtime.v0 import runtime_pb2_grpc as rt_grpc
from provisioner._proto.provisioner.v1 import node_pb2 as npb
from provisioner._proto.provisioner.v1 import node_pb2_grpc as npb_grpc
from provisioner.node.runtime.layer import NodeConfig, NodeLayer
from provisioner.node.runtime.teardown import remove_everything

MiB = 1024 * 1024
BENCHES = ("latency", "lifecycle", "logs", "registry", "load", "idle")
IDLE_TARGET_MS_PER_S = 10.0


def echo_server(path: str) -> None:
    """The baseline: a bare grpcio server answering one unary method with its input."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler})])
    server.add_insecure_port(f"unix://{path}")
    server.start()
    server.wait_for_termination()


def wait_for_socket(path: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server for {path} did not start")
        time.sleep(0.05)
    time.sleep(0.2)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def latency(call: object, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return samples


def bench_latency(channel: grpc.Channel, echo: grpc.Channel, calls: int) -> None:
    discover = disc_grpc.DiscoveryServiceStub(channel).Discover
    raw = echo.unary_unary("/bench.Echo/Echo")
    request = disc.DiscoverRequest()
    for _ in range(200):  # warm both up
        discover(request)
        raw(b"x")
    ours, base = [], []
    for _ in range(5):  # interleaved rounds, so both see the same machine load
        ours += latency(lambda: discover(request), calls // 5)
        base += latency(lambda: raw(b"x"), calls // 5)
    (o50, o99), (b50, b99) = percentiles(ours), percentiles(base)
    print(f"Discover p50 {o50 * 1e6:.0f} us, p99 {o99 * 1e6:.0f} us; raw echo p50 "
          f"{b50 * 1e6:.0f} us, p99 {b99 * 1e6:.0f} us; ratio p50 {o50 / b50:.2f}, "
          f"p99 {o99 / b99:.2f} (target <= 1.5): "
          f"{'met' if max(o50 / b50, o99 / b99) <= 1.5 else 'NOT met'}")


def bench_lifecycle(channel: grpc.Channel, count: int) -> None:
    cells = rt_grpc.CellServiceStub(channel)
    started = time.perf_counter()
    for i in range(count):
        name = f"bench{i}"
        cells.Allocate(rt.CellServiceAllocateRequest(cell=rt.Cell(name=name)))
        cells.Start(rt.CellServiceStartRequest(cell_name=name, executable=rt.Executable(
            name=f"bench-e{i}", command="sleep 1000")))
        cells.Stop(rt.CellServiceStopRequest(cell_name=name, executable_name=f"bench-e{i}"))
        cells.Free(rt.CellServiceFreeRequest(cell_name=name))
    elapsed = time.perf_counter() - started
    print(f"cell lifecycle (Allocate + Start + Stop + Free): {count / elapsed:.1f} per second "
          f"({elapsed / count * 1000:.1f} ms each)")


def bench_log_stream(channel: grpc.Channel, lines: int, batching: bool) -> None:
    """One line per item (upstream's way, the default) or, with the request metadata
    ``log-batching: on``, the lines of a burst batched (the target is for that one)."""
    cells = rt_grpc.CellServiceStub(channel)
    name = "bench-batched" if batching else "bench-talker"  # each its own log
    reply = cells.Start(rt.CellServiceStartRequest(executable=rt.Executable(
        name=name, command=f"sleep 1; seq 1 {lines}; sleep 1000")))
    stream = obs_grpc.ObserveServiceStub(channel).GetSubProcessStream(
        obs.GetSubProcessStreamRequest(channel_type=obs.LOG_CHANNEL_TYPE_STDOUT,
                                       process_id=reply.pid),
        metadata=(("log-batching", "on" if batching else "off"),))
    expected, first, lost_notices, items = 1, 0.0, 0, 0
    try:
        for item in stream:
            if item.line.startswith("[provisioner]"):
                lost_notices += 1
                continue
            if expected == 1:
                first = time.perf_counter()
            items += 1
            for text in item.line.split("\n"):  # batched: a burst arrives coalesced
                if int(text) != expected:
                    raise SystemExit(f"line {expected} missing (got {text})")
                expected += 1
            if expected > lines:
                break
    finally:
        stream.cancel()
        cells.Stop(rt.CellServiceStopRequest(executable_name=name))
    elapsed = time.perf_counter() - first
    rate = (lines - 1) / elapsed
    lost = 'no line lost' if not lost_notices else f'{lost_notices} loss notices'
    if not batching:
        print(f"log stream to one follower, one line per item: {rate:,.0f} lines/s over "
              f"{lines:,} lines in {items:,} messages, {lost}")
        return
    print(f"log stream to one follower, batched: {rate:,.0f} lines/s over {lines:,} lines in "
          f"{items:,} messages, {lost} "
          f"(target >= 50,000): {'met' if rate >= 50_000 and not lost_notices else 'NOT met'}")


def bench_registry(channel: grpc.Channel, mib: int) -> None:
    registry = reg_grpc.RegistryStub(channel)
    payload = os.urandom(MiB)
    total = mib * MiB
    digest = hashlib.sha256()
    for _ in range(mib):
        digest.update(payload)
    header = reg.PluginHeader(driver=reg.DriverInfo(name="bench", version="v1"),
                              runtime=reg.RuntimeInfo(version="v1"))

    def requests() -> Iterator[reg.PushDriverRequest]:
        yield reg.PushDriverRequest(header=header)
        for _ in range(mib):
            yield reg.PushDriverRequest(chunk=reg.PluginChunk(data=payload))
        yield reg.PushDriverRequest(trailer=reg.PluginTrailer(checksum=digest.hexdigest()))

    started = time.perf_counter()
    registry.PushDriver(requests())
    push = total / MiB / (time.perf_counter() - started)
    started = time.perf_counter()
    received, pulled = 0, hashlib.sha256()
    for response in registry.PullDriver(reg.PullDriverRequest(header=header)):
        if response.HasField("chunk"):
            received += len(response.chunk.data)
            pulled.update(response.chunk.data)
    pull = total / MiB / (time.perf_counter() - started)
    assert received == total and pulled.hexdigest() == digest.hexdigest()
    print(f"registry {mib} MiB driver: push {push:.0f} MB/s, pull {pull:.0f} MB/s "
          f"(target >= 100 each): {'met' if min(push, pull) >= 100 else 'NOT met'}")


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _client(sock: str, calls: int, start: threading.Barrier, echo: bool = False
            ) -> tuple[list[float], list[float]]:
    """One client with its own channel: ``calls`` calls, Discover and GetState in turn
    (with ``echo``: the raw echo server's one method for both)."""
    first_times: list[float] = []
    second_times: list[float] = []
    with grpc.insecure_channel(f"unix://{sock}") as channel:
        if echo:
            raw = channel.unary_unary("/bench.Echo/Echo")
            first: Callable[[], object] = lambda: raw(b"x")  # noqa: E731
            second = first
        else:
            discover = disc_grpc.DiscoveryServiceStub(channel).Discover
            get_state = npb_grpc.NodeServiceStub(channel).GetState
            first = lambda: discover(disc.DiscoverRequest())  # noqa: E731
            second = lambda: get_state(npb.GetStateRequest())  # noqa: E731
        first()  # connect before the clock starts
        start.wait()
        for i in range(calls):
            began = time.perf_counter()
            (second if i % 2 else first)()
            (second_times if i % 2 else first_times).append(time.perf_counter() - began)
    return first_times, second_times


def _load(sock: str, clients: int, calls: int, echo: bool = False
          ) -> tuple[list[tuple[list[float], list[float]]], float]:
    start = threading.Barrier(clients)
    with futures.ThreadPoolExecutor(max_workers=clients) as pool:
        began = time.perf_counter()
        results = list(pool.map(lambda _: _client(sock, calls, start, echo), range(clients)))
        return results, time.perf_counter() - began


def bench_under_load(channel: grpc.Channel, sock: str, echo_sock: str, daemon_pid: int,
                     clients: int, calls: int) -> None:
    cells = rt_grpc.CellServiceStub(channel)
    for i in range(10):  # something to observe: a cell with a running executable each
        cells.Allocate(rt.CellServiceAllocateRequest(cell=rt.Cell(name=f"load{i}")))
        cells.Start(rt.CellServiceStartRequest(cell_name=f"load{i}", executable=rt.Executable(
            name=f"load-e{i}", command="sleep 1000")))
    _load(sock, clients, 20)  # warm-up: the daemon's threads and connections exist
    files_before, threads_before = _open_files(daemon_pid), _threads(daemon_pid)
    results, elapsed = _load(sock, clients, calls)
    files_after, threads_after = _open_files(daemon_pid), _threads(daemon_pid)
    for i in range(10):
        cells.Stop(rt.CellServiceStopRequest(cell_name=f"load{i}", executable_name=f"load-e{i}"))
        cells.Free(rt.CellServiceFreeRequest(cell_name=f"load{i}"))
    d50, d99 = percentiles([t for d, _ in results for t in d])
    s50, s99 = percentiles([t for _, s in results for t in s])
    echoed, _ = _load(echo_sock, clients, calls, echo=True)
    e50, e99 = percentiles([t for a, b in echoed for t in a + b])
    print(f"{clients} clients x {calls} calls ({clients * calls / elapsed:,.0f} calls/s): "
          f"Discover p50 {d50 * 1e3:.1f} ms, p99 {d99 * 1e3:.1f} ms; GetState p50 "
          f"{s50 * 1e3:.1f} ms, p99 {s99 * 1e3:.1f} ms (target <= 50 ms, ratio "
          f"{s99 / 0.050:.2f}): {'met' if s99 <= 0.050 else 'NOT met'}; raw echo under the "
          f"same load p50 {e50 * 1e3:.1f} ms, p99 {e99 * 1e3:.1f} ms")
    flat = files_after <= files_before + 2
    print(f"daemon's open files {files_before} after a warm-up -> {files_after} after the "
          f"load, threads {threads_before} -> {threads_after} (target: files flat): "
          f"{'met' if flat else 'NOT met'}")


def _cpu_ns(pid: int) -> int:
    """CPU time of every thread of PID so far (ns; a thread that ended meanwhile drops
    out, which an idle process's do not)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def idle_cpu(pid: int, seconds: float) -> float:
    """PID's CPU milliseconds per second over SECONDS of doing nothing."""
    before = _cpu_ns(pid)
    time.sleep(seconds)
    return (_cpu_ns(pid) - before) / 1e6 / seconds


def bench_idle(channel: grpc.Channel, daemon_pid: int, echo_pid: int, seconds: float) -> None:
    time.sleep(1)  # what the previous benchmarks started has settled
    echo = idle_cpu(echo_pid, seconds)
    empty = idle_cpu(daemon_pid, seconds)
    cells = rt_grpc.CellServiceStub(channel)
    for i in range(10):
        cells.Allocate(rt.CellServiceAllocateRequest(cell=rt.Cell(name=f"idle{i}")))
    for i in range(40):
        cells.Start(rt.CellServiceStartRequest(
            cell_name=f"idle{i % 10}",
            executable=rt.Executable(name=f"idle-e{i}", command="sleep 1000")))
    time.sleep(1)
    busy = idle_cpu(daemon_pid, seconds)
    for i in range(40):
        cells.Stop(rt.CellServiceStopRequest(cell_name=f"idle{i % 10}",
                                             executable_name=f"idle-e{i}"))
    for i in range(10):
        cells.Free(rt.CellServiceFreeRequest(cell_name=f"idle{i}"))
    print(f"idle CPU over {seconds:g} s: raw echo server {echo:.1f} ms/s; daemon, empty node "
          f"{empty:.1f} ms/s; daemon, 10 cells running 40 executables {busy:.1f} ms/s "
          f"(target <= {IDLE_TARGET_MS_PER_S:g}): "
          f"{'met' if busy <= IDLE_TARGET_MS_PER_S else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--lifecycles", type=int, default=50)
    parser.add_argument("--lines", type=int, default=300_000)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--client-calls", type=int, default=1000)
    parser.add_argument("--idle-s", type=float, default=5.0,
                        help="seconds each idle CPU figure is measured over")
    parser.add_argument("--only", choices=BENCHES, action="append",
                        help="run only this benchmark (repeatable; default: all)")
    parser.add_argument("--echo-server", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        echo_server(args.echo_server)
        return 0
    if os.geteuid() != 0:
        print("needs root (the daemon makes cgroups)", file=sys.stderr)
        return 1
    cgroup_root = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="pdb", dir="/tmp") as tmp:
        sock, echo_sock = os.path.join(tmp, "d.sock"), os.path.join(tmp, "e.sock")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "provisioner", "daemon", "--socket", sock, "--state-dir",
             os.path.join(tmp, "state"), "--cgroup-root", cgroup_root,
             "--stop-on-exit", "--max-message-mb", "8"],
            stderr=subprocess.DEVNULL)
        echo = subprocess.Popen([sys.executable, __file__, "--echo-server", echo_sock])
        try:
            wait_for_socket(sock, daemon)
            wait_for_socket(echo_sock, echo)
            with grpc.insecure_channel(f"unix://{sock}") as channel, \
                    grpc.insecure_channel(f"unix://{echo_sock}") as echo_channel:
                only = set(args.only or BENCHES)
                if "latency" in only:
                    bench_latency(channel, echo_channel, args.calls)
                if "lifecycle" in only:
                    bench_lifecycle(channel, args.lifecycles)
                if "logs" in only:
                    bench_log_stream(channel, args.lines, batching=False)
                    bench_log_stream(channel, args.lines, batching=True)
                if "registry" in only:
                    bench_registry(channel, args.mib)
                if "load" in only:
                    bench_under_load(channel, sock, echo_sock, daemon.pid, args.clients,
                                     args.client_calls)
                if "idle" in only:
                    bench_idle(channel, daemon.pid, echo.pid, args.idle_s)
        finally:
            echo.terminate()
            daemon.terminate()
            daemon.wait(timeout=60)
            echo.wait(timeout=10)
            layer = NodeLayer(NodeConfig(state_dir=os.path.join(tmp, "state"),
                                         cgroup_root=cgroup_root))
            remove_everything(layer)  # the daemon keeps its cgroup root; the bench does not
            layer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
