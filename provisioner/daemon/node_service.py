"""``provisioner.v1.NodeService``: GetState, Plan and Apply for declarative clients,
GetLogs, and the image cache (ListImages, PruneImages).

- GetState: ``ctx.executor.observe()`` as a NodeState, shared by concurrent callers
  and reused while nothing it shows has changed (``state_cache.py``; at most
  ``DaemonConfig.state_ttl_s`` old for a change made behind the provisioner's back).
- Plan: the request's resources are validated exactly like manifest files (the same
  JSON Schemas and cross-document checks, see ``provisioner/manifest/from_data.py``);
  any error is INVALID_ARGUMENT listing them all, except that a reference (a parent
  cell, ``spec.cell``, ``dependsOn``) may also name a resource the node already has,
  of any manifest set (a per-resource set's executable in a cell declared by another
  set). Then ``ctx.executor.plan`` against the node as observed now (observed once,
  for both), within ``manifest_set`` (default ``default``), with ``prune`` and
  ``destroy``. A pod the plan allocates whose image this node cannot use (a registry
  reference, a missing layout or tag) is FAILED_PRECONDITION naming the pod, the
  container and the problem (the executor's image pre-flight). Nothing changes on
  the node.
- Apply: each step's resource is schema-checked the same way (steps are not a whole
  manifest set, so no cross-document check), then ``ctx.executor.apply`` runs the plan
  and every event is streamed as it happens, in the order the local CLI shows them; the
  last one is the summary. A plan made at another node generation is refused with
  FAILED_PRECONDITION ("the plan was made at node generation N ..."), as is a plan
  arriving while another apply runs (after the executor's lock timeout). Both happen
  before the first event, so the client gets a status, never half a stream.

- GetLogs: ``ctx.executor.logs``: an executable's log files by name (the seed APIs
  stream by pid and never end): the lines selected by since / tail / channel, then,
  with ``follow``, new ones until the call is cancelled or the daemon stops. Unknown
  name: NOT_FOUND.

- ListImages: ``ctx.executor.list_images()``: the image cache, each image with the pods
  using it. PruneImages: ``ctx.executor.prune_images(all, dry_run)``, under the
  executor's writer lock like an Apply (another apply holding it past the lock timeout:
  FAILED_PRECONDITION, nothing removed); an image a pod uses is never removed.

The handlers only convert (``serde``) and call the daemon's local executor, the same
:class:`~provisioner.executors.base.Executor` the CLI uses on this machine.

If the client goes away mid-apply, no further steps are started; the steps running
finish and are recorded, so applying again converges.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator

import grpc

from provisioner import serde
from provisioner._proto.provisioner.v1 import node_pb2 as npb
from provisioner._proto.provisioner.v1 import node_pb2_grpc as ngrpc
from provisioner.daemon.context import DaemonContext
from provisioner.daemon.state_cache import ObservedCache
from provisioner.daemon.status import handles_errors
from provisioner.defaults import DEFAULT_MANIFEST_SET
from provisioner.errors import InvalidArgument
from provisioner.manifest.from_data import render_issues, validate_data
from provisioner.model import DesiredState, Ref, ResourceSpec
from provisioner.plan.steps import Plan

__all__ = ["DEFAULT_MANIFEST_SET", "NodeServicer", "desired_from_request",
           "plan_from_request", "register"]


def desired_from_request(request: npb.PlanRequest,
                         existing: Collection[Ref] = ()) -> DesiredState:
    """The validated desired state of a PlanRequest, or InvalidArgument with every error.

    ``existing``: refs of the resources the node has, which satisfy references besides
    the request's own resources."""
    manifest_set = request.manifest_set or DEFAULT_MANIFEST_SET
    items = [serde.resource_to_manifest(res) for res in request.resources]
    result = validate_data(items, manifest_set, existing=existing)
    if result.issues:
        raise InvalidArgument("invalid resources: " + render_issues(result.issues))
    return result.state


def plan_from_request(plan: npb.Plan) -> Plan:
    """The plan of an ApplyRequest with every step resource schema-checked."""
    with_resource = [i for i, step in enumerate(plan.steps) if step.HasField("resource")]
    items = [serde.resource_to_manifest(plan.steps[i].resource) for i in with_resource]
    result = validate_data(items, plan.manifest_set, label="request:plan.steps", cross=False,
                           positions=with_resource)
    if result.issues:
        raise InvalidArgument("invalid plan: " + render_issues(result.issues))
    specs: list[ResourceSpec | None] = [None] * len(plan.steps)
    for index, spec in zip(with_resource, result.state.resources, strict=True):
        specs[index] = spec
    return serde.plan_from_proto(plan, specs)


class NodeServicer(ngrpc.NodeServiceServicer):
    """``provisioner.v1.NodeService`` over the daemon's local executor."""

    def __init__(self, ctx: DaemonContext) -> None:
        """Servicer of ``ctx``'s node; GetState answers are cached (see the module doc)."""
        self.ctx = ctx
        self.state = ObservedCache(ctx.layer, self._observe, ctx.config.state_ttl_s)

    def _observe(self) -> npb.GetStateResponse:
        return npb.GetStateResponse(state=serde.state_to_proto(self.ctx.executor.observe()))

    @handles_errors
    def GetState(self, request: npb.GetStateRequest,
                 context: grpc.ServicerContext) -> npb.GetStateResponse:
        """The node as observed (a shared, cached answer)."""
        # A shared answer: gRPC only serializes it, nobody changes it.
        return self.state.get()

    @handles_errors
    def Plan(self, request: npb.PlanRequest,
             context: grpc.ServicerContext) -> npb.PlanResponse:
        """The plan for the request's resources, compiled against the node now."""
        node = self.ctx.executor.observe()  # once: for the references and the plan
        desired = desired_from_request(request, [resource.ref for resource in node.resources])
        plan = self.ctx.executor.plan(desired, prune=request.prune, destroy=request.destroy,
                                      observed=node)
        return npb.PlanResponse(plan=serde.plan_to_proto(plan))

    @handles_errors
    def Apply(self, request: npb.ApplyRequest,
              context: grpc.ServicerContext) -> Iterator[npb.ApplyEvent]:
        """The plan applied, every event streamed as it happens."""
        plan = plan_from_request(request.plan)
        # The executor's writer lock (which another call of this daemon waits for, up to
        # its timeout), reconcile and the stale-plan check come before the first event,
        # and nothing is sent before it: a refusal is a status, not half a stream.
        events = self.ctx.executor.apply(plan, request.parallelism)
        try:
            for event in events:
                yield serde.event_to_proto(event)
        finally:
            events.close()  # releases the writer lock now, even if the client left

    @handles_errors
    def GetLogs(self, request: npb.GetLogsRequest,
                context: grpc.ServicerContext) -> Iterator[npb.LogEntry]:
        """The lines asked for; with ``follow``, new ones until the client leaves or
        the daemon stops."""
        query = serde.logs_request_from_proto(request)
        stop = threading.Event()
        if query.follow:
            context.add_callback(stop.set)  # the client cancelled or went away
            threading.Thread(target=self._end_on_shutdown, args=(stop,), daemon=True).start()
        try:  # not found, a bad name or channel: refused here, before the first line
            lines = self.ctx.executor.logs(query.name, query.follow, query.since_ns,
                                           query.tail, query.channel, stop=stop)
            for line in lines:
                yield serde.logline_to_proto(line)
        finally:
            stop.set()

    @handles_errors
    def ListImages(self, request: npb.ListImagesRequest,
                   context: grpc.ServicerContext) -> npb.ListImagesResponse:
        """The node's image cache."""
        return serde.image_list_to_proto(self.ctx.executor.list_images())

    @handles_errors
    def PruneImages(self, request: npb.PruneImagesRequest,
                    context: grpc.ServicerContext) -> npb.PruneImagesResponse:
        """Remove what no pod uses, under the writer lock."""
        return serde.prune_to_proto(self.ctx.executor.prune_images(request.all,
                                                                   request.dry_run))

    def _end_on_shutdown(self, stop: threading.Event) -> None:
        """End a follow when the daemon starts stopping (the stream's own end or
        cancellation sets ``stop`` first, which ends this thread)."""
        while not stop.wait(0.5):
            if self.ctx.stopping.is_set():
                stop.set()


def register(server: grpc.Server, ctx: DaemonContext) -> None:
    """Serve NodeService for ``ctx`` on ``server``."""
    ngrpc.add_NodeServiceServicer_to_server(NodeServicer(ctx), server)  # type: ignore[no-untyped-call]
