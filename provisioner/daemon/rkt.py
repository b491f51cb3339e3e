"""``v1alpha.PublicAPI``: the read-only rkt API (APIS.md section 4).

GetInfo reports our versions: ``rkt_version`` is the provisioner's version,
``api_version`` the rkt API revision served (:data:`API_VERSION`), ``appc_version``
``0.0.0`` (appc images are not supported), and ``global_flags.dir`` the state directory.

Pods and images come from a :class:`PodSource`: by default the provisioner's own pods
of OCI containers, its executables, and the unpacked images
(:mod:`provisioner.daemon.rkt_pods`); an unknown id is NOT_FOUND. InspectPod and
GetLogs take a pod's id, or its name (an extension; a provisioner pod's name wins over
an executable's). The filter semantics are in ``rkt_match.py``.

ListenEvents streams the rkt events of the daemon's durable event log
(``Store.events``): an :class:`~provisioner.daemon.rkt_events.EventWatcher`, started
with the servicer, records each observed pod and app transition once
(``rkt_events.py``), and :func:`provisioner.daemon.rkt_match.event_from_store` maps them
back. Without ``since_time`` only
events from now on are sent; with it, every stored event from that second on (the log
is durable, so unlike upstream it reaches back before the daemon started). A future
``since_time`` simply sends nothing before then. With ``until_time`` only earlier events
are sent and the stream ends at that moment (at once if it has passed, after the stored
events). Events are batched per poll (every ``poll_s``), in the order they happened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

import grpc

import provisioner
from provisioner._proto.v1alpha import api_pb2 as rkt
from provisioner._proto.v1alpha import api_pb2_grpc as rkt_grpc
from provisioner.daemon.context import DaemonContext
from provisioner.daemon.rkt_events import EventWatcher
from provisioner.daemon.rkt_match import (
    NS,
    LogQuery,
    event_from_store,
    event_matches,
    follow_lines,
    format_line,
    select_images,
    select_lines,
    select_pods,
)
from provisioner.daemon.rkt_pods import KIND_KEY, NAME_KEY, ProvisionerPods, annotation
from provisioner.daemon.status import handles_errors
from provisioner.errors import InvalidArgument, NotFound
from provisioner.node import LogLine

API_VERSION = "1.0.0-alpha"
APPC_VERSION = "0.0.0"
BATCH = 1000


class PodSource(Protocol):
    """Where the rkt API finds pods, images and pod logs."""

    def pods(self) -> list[rkt.Pod]:
        """Every pod, as the rkt API describes it."""

    def images(self) -> list[rkt.Image]:
        """Every image in the node's store, as the rkt API describes it."""

    def logs(self, pod: rkt.Pod, app_name: str,
             stop: threading.Event) -> tuple[list[LogLine], Iterable[LogLine]]:
        """The existing lines, and the lines written from now on (until ``stop``)."""
        ...


class NoPods:
    """A source with nothing at all (for tests and tools)."""

    def pods(self) -> list[rkt.Pod]:
        """None: an empty source."""
        return []

    def images(self) -> list[rkt.Image]:
        """None: an empty source."""
        return []

    def logs(self, pod: rkt.Pod, app_name: str,
             stop: threading.Event) -> tuple[list[LogLine], Iterable[LogLine]]:
        """NotFound: an empty source has no pods, hence no logs."""
        raise NotFound(f"pod {pod.id} has no logs")


class RktServicer(rkt_grpc.PublicAPIServicer):
    """rkt's read-only ``v1alpha.PublicAPI`` over the node's pods, images, events and logs."""
    def __init__(self, ctx: DaemonContext, source: PodSource | None = None,
                 poll_s: float = 0.1, watch: bool = True) -> None:
        self.ctx = ctx
        self.source: PodSource = source or ProvisionerPods(ctx.layer)
        self.poll_s = poll_s
        self.watcher = EventWatcher(ctx.layer, self.source)
        if watch:
            self.watcher.start(ctx.stopping)

    @handles_errors
    def GetInfo(self, request: rkt.GetInfoRequest,
                context: grpc.ServicerContext) -> rkt.GetInfoResponse:
        """The daemon's version, the appc and API versions, and its state directory."""
        flags = rkt.GlobalFlags(dir=self.ctx.layer.config.state_dir)
        return rkt.GetInfoResponse(info=rkt.Info(
            rkt_version=provisioner.__version__, appc_version=APPC_VERSION,
            api_version=API_VERSION, global_flags=flags))

    @handles_errors
    def ListPods(self, request: rkt.ListPodsRequest,
                 context: grpc.ServicerContext) -> rkt.ListPodsResponse:
        """The pods matching any of the filters (all without filters)."""
        return rkt.ListPodsResponse(
            pods=select_pods(self.source.pods(), request.filters, request.detail))

    @handles_errors
    def InspectPod(self, request: rkt.InspectPodRequest,
                   context: grpc.ServicerContext) -> rkt.InspectPodResponse:
        """One pod by id; NotFound if there is none."""
        return rkt.InspectPodResponse(pod=self._pod(request.id))

    @handles_errors
    def ListImages(self, request: rkt.ListImagesRequest,
                   context: grpc.ServicerContext) -> rkt.ListImagesResponse:
        """The images matching any of the filters (all without filters)."""
        return rkt.ListImagesResponse(
            images=select_images(self.source.images(), request.filters, request.detail))

    @handles_errors
    def InspectImage(self, request: rkt.InspectImageRequest,
                     context: grpc.ServicerContext) -> rkt.InspectImageResponse:
        """One image by id (its manifest digest); NotFound if there is none."""
        for image in self.source.images():
            if image.id == request.id:
                return rkt.InspectImageResponse(image=image)
        raise NotFound(f"no image with id {request.id!r}")

    def _pod(self, pod_id: str) -> rkt.Pod:
        if not pod_id:
            raise InvalidArgument("a pod id is required")
        pods = self.source.pods()
        for pod in pods:
            if pod.id == pod_id:
                return pod
        named = sorted((p for p in pods if annotation(p.annotations, NAME_KEY) == pod_id),
                       key=lambda p: annotation(p.annotations, KIND_KEY) != "Pod")
        if named:
            return named[0]
        raise NotFound(f"no pod with id {pod_id!r}")

    @handles_errors
    def ListenEvents(self, request: rkt.ListenEventsRequest,
                     context: grpc.ServicerContext) -> Iterator[rkt.ListenEventsResponse]:
        """The recorded pod events in the filter's time bounds, then new ones as they happen."""
        f = request.filter
        since_ns = f.since_time * NS if f.since_time else None
        until_ns = f.until_time * NS if f.until_time else None
        store = self.ctx.layer.store
        cursor = 0 if since_ns is not None else store.last_event_id()
        last_round = False
        while context.is_active() and not self.ctx.stopping.is_set():
            batch = store.events(since_id=cursor, limit=BATCH, since_ns=since_ns,
                                 until_ns=until_ns)
            if batch:
                cursor = batch[-1].id
            events = [e for e in map(event_from_store, batch)
                      if e is not None and event_matches(e, f)]
            if events:
                yield rkt.ListenEventsResponse(events=events)
            if len(batch) == BATCH:
                continue
            if last_round:
                return
            wait = self.poll_s
            if until_ns is not None:
                left = (until_ns - time.time_ns()) / NS
                # Past the end: one more read for events stamped before it but
                # committed just after, then close.
                last_round = left <= 0
                wait = min(wait, max(left, 0.0))
            self.ctx.stopping.wait(wait)

    @handles_errors
    def GetLogs(self, request: rkt.GetLogsRequest,
                context: grpc.ServicerContext) -> Iterator[rkt.GetLogsResponse]:
        """A pod's log lines (every app's, or one app's), optionally followed."""
        if request.lines < 0:
            raise InvalidArgument(f"lines must be 0 (all) or more, not {request.lines}")
        if request.since_time and request.until_time and request.until_time <= request.since_time:
            raise InvalidArgument("until_time must be after since_time")
        pod = self._pod(request.pod_id)
        query = LogQuery(request.lines, request.follow, request.since_time, request.until_time)
        stop = threading.Event()
        context.add_callback(stop.set)  # the client went away
        timer = None
        if query.follow and query.until_s:
            timer = threading.Timer(max(0.0, query.until_s - time.time()), stop.set)
            timer.start()
        try:
            backlog, new = self.source.logs(pod, request.app_name, stop)
            chosen = select_lines(backlog, query)
            for start in range(0, len(chosen), BATCH):
                yield rkt.GetLogsResponse(
                    lines=[format_line(line) for line in chosen[start:start + BATCH]])
            if query.follow:
                for line in follow_lines(new, query, time.time_ns):
                    yield rkt.GetLogsResponse(lines=[format_line(line)])
        finally:
            stop.set()
            if timer is not None:
                timer.cancel()


def register(server: grpc.Server, ctx: DaemonContext, source: PodSource | None = None) -> None:
    """Serve the rkt API on ``server`` (pods from ``source``, the node's by default)."""
    rkt_grpc.add_PublicAPIServicer_to_server(RktServicer(ctx, source), server)  # type: ignore[no-untyped-call]
