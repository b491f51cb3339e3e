"""Log streams and status: ``aurae.observe.v0.ObserveService`` and legacy ``observe.Observe``.

Streams of an executable's output (``GetSubProcessStream``) are fed by :class:`LogHub`:
one *tailer* thread per executable that someone follows reads its log files (the
last ``ring_lines`` lines as backlog, then new lines as the shim writes them, across
rotations) into a :class:`~provisioner.node.process.logs.LogRing`, never faster than its
slowest live follower reads (the files are the buffer, so nobody loses a line to a
burst). Every follower of that
executable reads the ring with its own cursor and blocks on the ring's condition
variable (with a timeout, to notice a cancelled call or a stopping daemon), so 100
followers cost 100 sleeping threads and one file reader, never 100 pollers. The tailer
stops when its last follower leaves.

The daemon's own log (``GetAuraeDaemonLogStream``) is read the same way from
``DaemonContext.daemon_log``.

Each item carries one line, as upstream Aurae sends them. A client may ask for
batching with the request metadata ``log-batching: on``: then, when it has several lines
waiting (a burst), consecutive lines of one channel travel together in one item, joined
by newlines (see :func:`_coalesced`) - about ten times the lines per second (measured
in ``docs/apis.md``); a follower that keeps up still gets one item per line.

A follower that falls behind the ring (a slow client) is not cut off silently: it gets a
line ``[provisioner] N lines were dropped because this reader fell behind`` (N counts
lines of both channels) on the channel it asked for (``stderr`` when it asked for both)
and continues with the oldest line still held. Timestamps are nanoseconds since the Unix
epoch. A stream ends when the client cancels it, or with a last line saying so when the
daemon stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from provisioner._proto.aurae.observe.v0 import observe_pb2 as pb
from provisioner._proto.aurae.observe.v0 import observe_pb2_grpc as pb_grpc
from provisioner._proto.meta import meta_pb2
from provisioner._proto.observe import observe_pb2 as legacy_pb
from provisioner._proto.observe import observe_pb2_grpc as legacy_grpc
from provisioner.daemon.context import DaemonContext
from provisioner.daemon.discovery import self_check
from provisioner.daemon.status import handles_errors
from provisioner.errors import InvalidArgument, NotFound
from provisioner.node import STDERR, STDOUT, LogLine, LogReader, LogRing, NodeLayer

__all__ = ["BATCHING_METADATA", "DEFAULT_RING_LINES", "LegacyObserveService", "LogHub",
           "ObserveService", "batching", "find_executable_by_pid", "follow_ring"]

log = logging.getLogger("provisioner.daemon.aurae_observe")

DEFAULT_RING_LINES = 10_000
#: Request metadata asking for the lines of a burst batched in one item ("on"/"off").
BATCHING_METADATA = "log-batching"
_WAIT_S = 0.25  # how long a follower sleeps before it looks at cancellation again
_BATCH = 512
_COALESCE_LINES = 64  # lines at most in one item of a burst (see _coalesced)
_COALESCE_BYTES = 32 * 1024
T = TypeVar("T")
Item = Callable[[str, str, int], T]  # (channel, line, timestamp ns) -> a LogItem
Progress = Callable[[int], None]  # a follower's cursor, reported to its tailer


class _Tailer:
    """One thread that copies an executable's log files into a ring.

    The tailer never overwrites a line a live follower has not read yet: it waits for
    the slowest follower (the log files, not the ring, are the buffer, so waiting loses
    nothing). A follower that makes no progress for ``STALL_S`` (a stuck client) stops
    holding the others back; it is then told how many lines it missed.
    """

    STALL_S = 5.0

    def __init__(self, name: str, log_dir: str, capacity: int) -> None:
        self.ring = LogRing(capacity)
        self.users = 0
        self.stop = threading.Event()
        self._reader = LogReader(log_dir)
        self._capacity = capacity
        self._appended = 0
        self._room = threading.Condition()
        self._cursors: dict[int, int] = {}  # follower id -> next line it wants
        self._floor = 0  # the slowest live follower's cursor
        self._progress_at = time.monotonic()
        # The backlog/live boundary is taken now, in the subscriber's thread: a line
        # written after this call is live even if the thread starts late.
        self._lines = self._reader.follow(tail=self._capacity, stop=self.stop)
        self.ended = threading.Event()  # the reader returned: nothing more will come
        self._thread = threading.Thread(target=self._run, name=f"log-tail-{name}",
                                        daemon=True)
        self._thread.start()

    def current(self) -> bool:
        """Still reading the executable's present log directory (not one that was
        retired when the executable was deleted)."""
        return not self.ended.is_set() and self._reader.same_directory()

    def advance(self, follower: int, cursor: int | None) -> None:
        """A follower read up to ``cursor`` (None: it left)."""
        with self._room:
            if cursor is None:
                self._cursors.pop(follower, None)
            else:
                self._cursors[follower] = cursor
            self._floor = min(self._cursors.values(), default=self._appended)
            self._progress_at = time.monotonic()
            self._room.notify_all()

    def _wait_for_room(self) -> None:
        with self._room:
            while (self._cursors and self._appended - self._floor >= self._capacity
                   and not self.stop.is_set()
                   and time.monotonic() - self._progress_at < self.STALL_S):
                self._room.wait(_WAIT_S)

    def _run(self) -> None:
        try:
            for line in self._lines:
                if self._cursors and self._appended - self._floor >= self._capacity:
                    self._wait_for_room()
                self.ring.append(line)
                self._appended += 1
        except Exception:  # a broken tailer must not take the daemon down; say why
            log.exception("log tailer of %s failed", self._reader.directory)
        finally:
            self.ended.set()


class LogHub:
    """Shared tailers of executables' logs, one per executable being followed."""

    def __init__(self, ring_lines: int = DEFAULT_RING_LINES) -> None:
        if ring_lines < 1:
            raise InvalidArgument("ring_lines must be positive")
        self.ring_lines = ring_lines
        self._lock = threading.Lock()
        self._tailers: dict[str, _Tailer] = {}

    @contextlib.contextmanager
    def subscribe(self, name: str, log_dir: str) -> Iterator[tuple[_Tailer, Progress]]:
        """The tailer of executable ``name``'s output (its ``ring``, and ``ended``), and
        the callback through which the follower reports how far it has read, while the
        block runs."""
        with self._lock:
            tailer = self._tailers.get(name)
            if tailer is not None and not tailer.current():
                # Its executable was deleted (and maybe made again): a new follower gets
                # a tailer of the new log; the old one's followers end when it does.
                del self._tailers[name]
                tailer = None
            if tailer is None:
                tailer = self._tailers[name] = _Tailer(name, log_dir, self.ring_lines)
            tailer.users += 1
        follower = id(threading.current_thread()) ^ time.monotonic_ns()
        # Hold the tailer back from now on, not from the follower's first read: lines
        # appended in between must not be overwritten unseen (nor counted as missed).
        _, start = tailer.ring.since(0, limit=0)
        tailer.advance(follower, start)
        try:
            yield tailer, lambda cursor: tailer.advance(follower, cursor)
        finally:
            tailer.advance(follower, None)
            with self._lock:
                tailer.users -= 1
                if tailer.users == 0:
                    tailer.stop.set()
                    if self._tailers.get(name) is tailer:
                        del self._tailers[name]

    def active(self) -> int:
        """How many executables are being tailed now."""
        with self._lock:
            return len(self._tailers)


def follow_ring(ring: LogRing, context: grpc.ServicerContext, stopping: threading.Event,
                make: Item[T], channel: str | None = None,
                progress: Progress | None = None,
                ended: threading.Event | None = None,
                coalesce: bool = False) -> Iterator[T]:
    """The lines the ring holds now (the backlog), then new ones, until the call ends.

    ``channel`` None: both channels. Lines lost to a full ring are reported in one line.
    ``progress`` is told the cursor after every batch (the tailer waits for it).
    ``ended`` set: the ring gets no more lines (its executable was deleted); the stream
    ends with a line saying so once the ring is read. One line per item, as upstream
    Aurae sends them; ``coalesce`` joins the lines of a burst (see :func:`_coalesced`).
    """
    _, cursor = ring.since(0, limit=0)  # older lines were gone before we came
    if progress is not None:
        progress(cursor)
    notice_channel = channel or STDERR
    while context.is_active():
        if stopping.is_set():
            yield make(notice_channel, "[provisioner] stream ended: the daemon is stopping",
                       time.time_ns())
            return
        lines, missed = ring.since(cursor, limit=_BATCH)
        if missed:
            yield make(notice_channel, f"[provisioner] {missed} lines were dropped because "
                       "this reader fell behind", time.time_ns())
        if coalesce:
            yield from _coalesced(lines, channel, make)
        else:
            yield from (make(x.channel, x.text, x.ts_ns) for x in lines
                        if channel is None or x.channel == channel)
        cursor += missed + len(lines)
        if progress is not None and (lines or missed):
            progress(cursor)
        if not lines and not missed:
            if ended is not None and ended.is_set() and ring.next_seq <= cursor:
                yield make(notice_channel, "[provisioner] stream ended: the executable was "
                           "deleted", time.time_ns())
                return
            ring.wait(cursor, _WAIT_S)


def _coalesced(lines: list[LogLine], channel: str | None, make: Item[T]) -> Iterator[T]:
    """With ``log-batching: on``: one item per line while the reader keeps up; when
    lines are waiting (a burst), consecutive lines of one channel travel together in one
    item, joined by newlines and stamped with the first one's time. A gRPC message costs
    tens of microseconds in Python on each side: one per line measured 13,000-16,000
    lines/s, batched 130,000-200,000 (docs/apis.md). Printing ``item.line`` shows the
    same text."""
    group: list[LogLine] = []
    size = 0
    for line in lines:
        if channel is not None and line.channel != channel:
            continue
        if group and (line.channel != group[0].channel or len(group) >= _COALESCE_LINES
                      or size + len(line.text) > _COALESCE_BYTES or line.continued
                      or group[-1].continued):
            yield make(group[0].channel, "\n".join(x.text for x in group), group[0].ts_ns)
            group, size = [], 0
        group.append(line)
        size += len(line.text) + 1
    if group:
        yield make(group[0].channel, "\n".join(x.text for x in group), group[0].ts_ns)


def find_executable_by_pid(layer: NodeLayer, pid: int) -> str:
    """The executable whose current or last child has ``pid``, or that a Start call
    answered with ``pid`` (the store's "started" events); NotFound otherwise."""
    if pid <= 0:
        raise InvalidArgument(f"process_id must be a positive pid, not {pid}")
    found: list[tuple[bool, str]] = []
    for record in layer.store.list_processes():
        status = layer.read_shim_status(record.name)
        if (status is not None and status.child_pid == pid) or record.pid == pid:
            found.append((layer.is_running(record.name), record.name))
    if found:
        return max(found)[1]  # a running one wins over one that ended
    message, after, latest = f"pid {pid}", 0, ""
    while True:
        events = layer.store.events(since_id=after, limit=5000, kind="Executable")
        if not events:
            break
        latest = next((e.name for e in reversed(events)
                       if e.action == "started" and e.message == message), latest)
        after = events[-1].id
    if latest and (layer.store.get_process(latest) is not None
                   or os.path.isdir(layer.log_dir(latest))):
        return latest
    raise NotFound(f"no executable has or had pid {pid}")


def running_count(layer: NodeLayer) -> int:
    """How many recorded executables (and containers) run now."""
    return sum(1 for p in layer.store.list_processes() if layer.is_running(p.name))


# -- aurae.observe.v0 ------------------------------------------------------------------

_CHANNELS_V0: dict[int, str | None] = {pb.LOG_CHANNEL_TYPE_UNSPECIFIED: None,
                                       pb.LOG_CHANNEL_TYPE_STDOUT: STDOUT,
                                       pb.LOG_CHANNEL_TYPE_STDERR: STDERR}
_CHANNELS_LEGACY: dict[int, str | None] = {legacy_pb.CHANNEL_STDOUT: STDOUT,
                                             legacy_pb.CHANNEL_STDERR: STDERR}


def _channel(table: dict[int, str | None], value: int) -> str | None:
    if value not in table:
        raise InvalidArgument(f"unknown channel_type {value}")
    return table[value]


def _v0_item(channel: str, line: str, ts_ns: int) -> pb.LogItem:
    return pb.LogItem(channel=channel, line=line, timestamp=ts_ns)


def _legacy_item(channel: str, line: str, ts_ns: int) -> legacy_pb.LogItem:
    return legacy_pb.LogItem(channel=channel, line=line, timestamp=ts_ns)


class _Streams:
    """What both generations' observe services do; they differ only in types."""

    def __init__(self, ctx: DaemonContext, hub: LogHub) -> None:
        self.ctx = ctx
        self.hub = hub

    def daemon_log(self, context: grpc.ServicerContext, make: Item[T]) -> Iterator[T]:
        return follow_ring(self.ctx.daemon_log, context, self.ctx.stopping, make,
                           coalesce=batching(context))

    def sub_process(self, pid: int, channel: str | None, context: grpc.ServicerContext,
                    make: Item[T]) -> Iterator[T]:
        coalesce = batching(context)
        layer = self.ctx.layer
        name = find_executable_by_pid(layer, pid)
        with self.hub.subscribe(name, layer.log_dir(name)) as (tailer, progress):
            yield from follow_ring(tailer.ring, context, self.ctx.stopping, make, channel,
                                   progress, tailer.ended, coalesce)


def batching(context: grpc.ServicerContext) -> bool:
    """Whether the call asked for batched items (request metadata ``log-batching``:
    ``on`` or ``off``, the default; anything else is INVALID_ARGUMENT)."""
    values = [v for k, v in (context.invocation_metadata() or ()) if k == BATCHING_METADATA]
    if not values:
        return False
    if len(values) > 1 or values[0] not in ("on", "off"):
        raise InvalidArgument(f"request metadata '{BATCHING_METADATA}' must be given once, "
                              f"as 'on' or 'off' (got {values!r})")
    return values[0] == "on"


class ObserveService(pb_grpc.ObserveServiceServicer):
    """``aurae.observe.v0.ObserveService``: the daemon's log and an executable's output
    as streams."""

    def __init__(self, ctx: DaemonContext, hub: LogHub) -> None:
        self.streams = _Streams(ctx, hub)

    @handles_errors
    def GetAuraeDaemonLogStream(self, request: pb.GetAuraeDaemonLogStreamRequest,
                                context: grpc.ServicerContext) -> Iterator[pb.LogItem]:
        """The daemon's own log: the lines it holds, then new ones until cancelled."""
        yield from self.streams.daemon_log(context, _v0_item)

    @handles_errors
    def GetSubProcessStream(self, request: pb.GetSubProcessStreamRequest,
                            context: grpc.ServicerContext) -> Iterator[pb.LogItem]:
        """The output of the executable that has or had pid ``process_id`` (one channel,
        or both when unspecified): its recent lines, then new ones until cancelled."""
        channel = _channel(_CHANNELS_V0, request.channel_type)
        yield from self.streams.sub_process(request.process_id, channel, context, _v0_item)


# -- legacy observe --------------------------------------------------------------------

class LegacyObserveService(legacy_grpc.ObserveServicer):
    """First-generation ``observe.Observe``; Status reports the self-check in words."""

    def __init__(self, ctx: DaemonContext, hub: LogHub) -> None:
        self.ctx = ctx
        self.streams = _Streams(ctx, hub)

    @handles_errors
    def Status(self, request: legacy_pb.StatusRequest,
               context: grpc.ServicerContext) -> legacy_pb.StatusResponse:
        """The self-check's verdict and how many executables run, in one message."""
        problems = self_check(self.ctx.layer)
        running = running_count(self.ctx.layer)
        state = "healthy" if not problems else "unhealthy: " + "; ".join(problems)
        message = f"{state}, {running} executable{'s' * (running != 1)} running"
        return legacy_pb.StatusResponse(meta=meta_pb2.AuraeMeta(name=socket.gethostname(),
                                                                message=message))

    @handles_errors
    def GetAuraeDaemonLogStream(self, request: legacy_pb.GetAuraeDaemonLogStreamRequest,
                                context: grpc.ServicerContext) -> Iterator[legacy_pb.LogItem]:
        """The daemon's own log, as :meth:`ObserveService.GetAuraeDaemonLogStream`."""
        yield from self.streams.daemon_log(context, _legacy_item)

    @handles_errors
    def GetSubProcessStream(self, request: legacy_pb.GetSubProcessStreamRequest,
                            context: grpc.ServicerContext) -> Iterator[legacy_pb.LogItem]:
        """An executable's output, as :meth:`ObserveService.GetSubProcessStream`."""
        channel = _channel(_CHANNELS_LEGACY, request.channel_type)
        yield from self.streams.sub_process(request.process_id, channel, context,
                                            _legacy_item)
