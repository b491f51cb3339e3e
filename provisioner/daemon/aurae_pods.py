"""Pods through Aurae: ``aurae.runtime.v0.PodService`` and ``aurae.runtime.pod.v0``.

Both act on pods whose containers a ``Pod`` manifest declared (``provisioner apply``, or
``NodeService.Apply``): upstream's messages carry at most a pod's name, never its
containers. The decisions are written down in ``docs/apis.md``:

* ``aurae.runtime.v0.PodService`` names the pod in its messages: Allocate unpacks the
  images, Start starts the containers that are not running, Stop stops all of them or
  the one named, each NOT_FOUND for a pod nobody declared. ``PodServiceFreeRequest`` is
  empty: Free acts on the pod the request metadata names (``pod: <name>``) and is
  FAILED_PRECONDITION without one.
* ``aurae.runtime.pod.v0.PodService`` has only empty messages. Its calls act on the pod
  the request metadata names (``pod: <name>``; Stop also takes ``container: <name>``),
  else on the node's only declared pod; with no name and several pods (or none) the
  answer is FAILED_PRECONDITION saying how to name one. Allocate / Start / Stop / Free
  then do what the calls of ``aurae.runtime.v0.PodService`` do.
"""

from __future__ import annotations

import grpc

from provisioner._proto.aurae.runtime.pod.v0 import pod_pb2 as podpb
from provisioner._proto.aurae.runtime.pod.v0 import pod_pb2_grpc as podpb_grpc
from provisioner._proto.aurae.runtime.v0 import runtime_pb2 as pb
from provisioner._proto.aurae.runtime.v0 import runtime_pb2_grpc as pb_grpc
from provisioner.daemon.context import DaemonContext
from provisioner.daemon.status import handles_errors
from provisioner.errors import FailedPrecondition, InvalidArgument, NotFound
from provisioner.model import Kind, PodSpec
from provisioner.names import check_dns_label
from provisioner.node import Pods

__all__ = ["CONTAINER_METADATA", "POD_METADATA", "PodService", "PodServiceV0",
           "metadata_value"]

#: The gRPC request metadata that names the pod (and Stop's container) for calls whose
#: messages cannot.
POD_METADATA = "pod"
CONTAINER_METADATA = "container"

POD_FREE_NAMES_NOTHING = (
    "PodServiceFreeRequest names no pod: name it with the gRPC request metadata "
    f"'{POD_METADATA}: <name>' (e.g. grpcurl -H '{POD_METADATA}: shop'), remove it from "
    "its manifest (provisioner apply --prune) or use provisioner destroy")


def metadata_value(context: grpc.ServicerContext, key: str, what: str) -> str | None:
    """The one value of request metadata ``key`` (a DNS label), or None without it."""
    values = [v for k, v in (context.invocation_metadata() or ()) if k == key]
    if not values:
        return None
    if len(values) > 1 or not isinstance(values[0], str):
        raise InvalidArgument(f"the request metadata '{key}' must be given once, as text "
                              f"(got {len(values)} values)")
    return check_dns_label(values[0], f"{what} (request metadata '{key}')")


class _Pods:
    """What both services do to a declared pod, under the node's writer lock."""

    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx

    def declared(self, name: str) -> PodSpec:
        try:
            return Pods(self.ctx.layer).applied(check_dns_label(name, "pod name"))
        except NotFound:
            raise NotFound(f"pod {name!r} is not declared: aurae.runtime.v0.Pod carries only "
                           "a name, so declare its containers with a Pod manifest "
                           "(provisioner apply) first") from None

    def _set_of(self, spec: PodSpec) -> str:
        record = self.ctx.layer.store.get_resource(Kind.POD, spec.name)
        return record.manifest_set if record is not None else ""

    def allocate(self, name: str) -> None:
        with self.ctx.executor.locked(reconcile_first=False):
            spec = self.declared(name)
            Pods(self.ctx.layer).allocate(spec, self._set_of(spec))

    def start(self, name: str) -> None:
        with self.ctx.executor.locked(reconcile_first=False):
            spec = self.declared(name)
            Pods(self.ctx.layer).start(spec, self._set_of(spec))

    def stop(self, name: str, container: str | None) -> None:
        with self.ctx.executor.locked(reconcile_first=False):
            spec = self.declared(name)
            Pods(self.ctx.layer).stop(spec.name, container)

    def free(self, name: str) -> None:
        with self.ctx.executor.locked(reconcile_first=False):
            Pods(self.ctx.layer).free(self.declared(name).name)

    def only_pod(self) -> str:
        """The node's only declared pod; FAILED_PRECONDITION with none or several."""
        names = [r.name for r in self.ctx.layer.store.list_resources(Kind.POD)]
        how = (f"name one with the gRPC request metadata '{POD_METADATA}: <name>' "
               f"(e.g. grpcurl -H '{POD_METADATA}: {names[0] if names else 'shop'}')")
        if len(names) == 1:
            return names[0]
        if not names:
            raise FailedPrecondition(
                "aurae.runtime.pod.v0 messages name no pod and this node declares none: "
                f"declare one with a Pod manifest (provisioner apply), then {how}")
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise FailedPrecondition(f"aurae.runtime.pod.v0 messages name no pod and this node "
                                 f"declares {len(names)} ({shown}): {how}")


class PodService(pb_grpc.PodServiceServicer):
    """``aurae.runtime.v0.PodService``: declared pods, by name (see the module)."""

    def __init__(self, ctx: DaemonContext) -> None:
        self.pods = _Pods(ctx)

    @handles_errors
    def Allocate(self, request: pb.PodServiceAllocateRequest,
                 context: grpc.ServicerContext) -> pb.PodServiceAllocateResponse:
        """Allocate the pod the request declares (its cgroup, images and network)."""
        if not request.HasField("pod"):
            raise InvalidArgument("pod is required")
        self.pods.allocate(check_dns_label(request.pod.name, "pod name"))
        return pb.PodServiceAllocateResponse()

    @handles_errors
    def Start(self, request: pb.PodServiceStartRequest,
              context: grpc.ServicerContext) -> pb.PodServiceStartResponse:
        """Start every container of the named, allocated pod."""
        self.pods.start(check_dns_label(request.name, "pod name"))
        return pb.PodServiceStartResponse()

    @handles_errors
    def Stop(self, request: pb.PodServiceStopRequest,
             context: grpc.ServicerContext) -> pb.PodServiceStopResponse:
        """Stop the named pod's containers, or only ``container_name`` when given."""
        container = (check_dns_label(request.container_name, "container name")
                     if request.container_name else None)
        self.pods.stop(check_dns_label(request.pod_name, "pod name"), container)
        return pb.PodServiceStopResponse()

    @handles_errors
    def Free(self, request: pb.PodServiceFreeRequest,
             context: grpc.ServicerContext) -> pb.PodServiceFreeResponse:
        """Free the pod named by the ``pod`` metadata (the request carries no name)."""
        name = metadata_value(context, POD_METADATA, "pod name")
        if name is None:
            raise FailedPrecondition(POD_FREE_NAMES_NOTHING)
        self.pods.free(name)
        return pb.PodServiceFreeResponse()


class PodServiceV0(podpb_grpc.PodServiceServicer):
    """``aurae.runtime.pod.v0.PodService``: the pod of the request metadata, or the
    node's only one (see the module)."""

    def __init__(self, ctx: DaemonContext) -> None:
        self.pods = _Pods(ctx)

    def _pod(self, context: grpc.ServicerContext) -> str:
        return metadata_value(context, POD_METADATA, "pod name") or self.pods.only_pod()

    @handles_errors
    def Allocate(self, request: podpb.PodServiceAllocateRequest,
                 context: grpc.ServicerContext) -> podpb.PodServiceAllocateResponse:
        """Allocate the pod that the metadata names, or the node's only declared pod."""
        self.pods.allocate(self._pod(context))
        return podpb.PodServiceAllocateResponse()

    @handles_errors
    def Start(self, request: podpb.PodServiceStartRequest,
              context: grpc.ServicerContext) -> podpb.PodServiceStartResponse:
        """Start the containers of that pod."""
        self.pods.start(self._pod(context))
        return podpb.PodServiceStartResponse()

    @handles_errors
    def Stop(self, request: podpb.PodServiceStopRequest,
             context: grpc.ServicerContext) -> podpb.PodServiceStopResponse:
        """Stop that pod's containers, or only the one the ``container`` metadata names."""
        container = metadata_value(context, CONTAINER_METADATA, "container name")
        self.pods.stop(self._pod(context), container)
        return podpb.PodServiceStopResponse()

    @handles_errors
    def Free(self, request: podpb.PodServiceFreeRequest,
             context: grpc.ServicerContext) -> podpb.PodServiceFreeResponse:
        """Free that pod: its containers, network, cgroup and records."""
        self.pods.free(self._pod(context))
        return podpb.PodServiceFreeResponse()
