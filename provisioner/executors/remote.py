"""The remote executor: a node daemon's ``provisioner.v1.NodeService`` over gRPC.

The :class:`~provisioner.executors.base.Executor` interface over the wire, like
:class:`~provisioner.executors.local.LocalExecutor` in-process: plans are compiled by
the daemon against the node it sees (``Plan``), logs come from ``GetLogs``, and the
writer lock is the daemon's to hold for each apply (its state is not visible from
here: ``unknown``). This module does not import the node layer. Targets:

- ``unix:///run/provisioner/provisioner.sock`` (or ``unix:/path``): a local daemon;
  the socket's file permissions are the access control.
- ``host:port``: mutual TLS with ``tls_ca`` (the CA that signed the daemon's
  certificate; omitted: the system's roots) and ``tls_cert`` + ``tls_key`` (this
  client's identity), or, for a lab only, ``insecure=True`` (plain TCP).

gRPC errors come back as the provisioner's errors (:func:`error_from_rpc`: the class the
daemon names in the status metadata, not parsed from text), with the
daemon's message unchanged, so the CLI reports them as it would locally.
``node_id`` is the daemon's (from ``GetState``, asked once), so a plan saved against
one daemon is refused by another, as locally.

Driver files are the client's: before an apply, each file a PUSH step names is streamed
to the daemon's driver registry (``atomix.runtime.v1.Registry.PushDriver``, its
SHA-256 checked there), so the daemon need not see the client's file system; its PUSH
step then finds the bytes in the registry.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from provisioner import serde
from provisioner._proto.atomix.runtime.v1 import registry_pb2 as rpb
from provisioner._proto.atomix.runtime.v1 import registry_pb2_grpc as rgrpc
from provisioner._proto.provisioner.v1 import node_pb2 as npb
from provisioner._proto.provisioner.v1 import node_pb2_grpc as ngrpc
from provisioner.defaults import RPC_TIMEOUT_S
from provisioner.errors import (
    FailedPrecondition,
    NodeError,
    ProvisionerError,
    Unavailable,
    UsageError,
)
from provisioner.events import ApplyEvent, EventType
from provisioner.executors.base import Executor, LockState
from provisioner.logline import LogLine
from provisioner.model import DesiredState, DriverSpec
from provisioner.plan.steps import Action, Plan
from provisioner.serde.status import ERROR_CLASS_KEY, error_class_of
from provisioner.state import NodeState

if TYPE_CHECKING:  # named in signatures only
    from provisioner.image_state import ImageList, ImagePrune

MiB = 1024 * 1024
#: Big enough for a status message listing many validation errors.
_OPTIONS = [("grpc.max_receive_message_length", 64 * MiB),
            ("grpc.max_send_message_length", 64 * MiB),
            ("grpc.max_metadata_size", 1 * MiB),
            ("grpc.absolute_max_metadata_size", 1 * MiB)]


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


_CHUNK_BYTES = 1 << 20  # well below gRPC's default 4 MiB message limit


def _driver_messages(spec: DriverSpec) -> Iterator[rpb.PushDriverRequest]:
    """Header, the file in chunks, trailer (the SHA-256 the manifest declared or the
    loader computed: the registry refuses bytes that do not match it)."""
    yield rpb.PushDriverRequest(header=rpb.PluginHeader(
        driver=rpb.DriverInfo(name=spec.name, version=spec.version),
        runtime=rpb.RuntimeInfo(version=spec.runtime_version)))
    with open(spec.source_path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK_BYTES), b""):
            yield rpb.PushDriverRequest(chunk=rpb.PluginChunk(data=block))
    yield rpb.PushDriverRequest(trailer=rpb.PluginTrailer(checksum=spec.sha256))


def make_channel(target: str, tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None, insecure: bool = False) -> grpc.Channel:
    """A channel to ``target`` (see the module doc); bad combinations are UsageError."""
    if target.startswith("unix:"):
        path = target[len("unix://"):] if target.startswith("unix://") else target[5:]
        if not os.path.exists(path):
            raise UsageError(f"--target {target}: there is no daemon socket at {path} (start "
                             "the daemon, or omit --target to act on this machine)")
        return grpc.insecure_channel(f"unix://{path}", options=_OPTIONS)
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together (this client's identity)")
    if tls_ca is None and tls_cert is None:
        if not insecure:
            raise UsageError(f"--target {target}: a TCP daemon needs mutual TLS "
                             "(--tls-ca, --tls-cert, --tls-key), or --insecure for a lab")
        return grpc.insecure_channel(target, options=_OPTIONS)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(tls_ca), private_key=_read(tls_key),
        certificate_chain=_read(tls_cert))
    return grpc.secure_channel(target, credentials, options=_OPTIONS)


def error_from_rpc(exc: grpc.RpcError, target: str) -> ProvisionerError:
    """The provisioner error a failed call stands for: the class the daemon named in the
    status metadata (:mod:`provisioner.serde.status`), with its message; a status grpc
    made itself (unreachable, deadline) says which daemon; any other code is a fault."""
    if not isinstance(exc, grpc.Call):
        return NodeError(f"the daemon at {target} failed: {exc}")
    code = exc.code()
    details = exc.details() or code.name
    sent = any(key == ERROR_CLASS_KEY for key, _ in exc.trailing_metadata() or ())
    if code is grpc.StatusCode.UNAVAILABLE and not sent:
        return Unavailable(f"cannot reach the daemon at {target}: {details}")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(f"the daemon at {target} did not answer in time: {details}")
    cls = error_class_of(code, exc.trailing_metadata())
    if cls is None or (cls is NodeError and not sent):
        return NodeError(f"the daemon at {target} failed: {code.name}: {details}")
    return cls(details)


def _cancel_on(stop: threading.Event, ended: threading.Event,
               cancel: Callable[[], object]) -> None:
    """Call ``cancel`` once ``stop`` is set, unless the stream has ``ended`` first."""
    while not ended.is_set():
        if stop.wait(0.2):
            cancel()
            return


class RemoteExecutor:
    """Observes, plans and applies through the daemon at ``target``."""

    def __init__(self, target: str, *, tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None, insecure: bool = False,
                 timeout_s: float = RPC_TIMEOUT_S) -> None:
        """A channel to ``target`` (see the module doc for targets and TLS); nothing is
        sent until the first call. ``timeout_s``: deadline of each unary call."""
        self.target = target
        self.timeout_s = timeout_s
        self.channel = make_channel(target, tls_ca, tls_cert, tls_key, insecure)
        self.stub = ngrpc.NodeServiceStub(self.channel)  # type: ignore[no-untyped-call]

    @functools.cached_property
    def node_id(self) -> str:
        """The daemon's node id ("" from a daemon too old to send one)."""
        return self.observe().node_id

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> RemoteExecutor:
        """This executor; closed on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the channel."""
        self.close()

    def describe(self) -> dict[str, Any]:
        """``mode`` daemon and its ``target``."""
        return {"mode": "daemon", "target": self.target}

    def lock_state(self) -> LockState:
        """``unknown``: the daemon takes its lock for each apply and does not report it."""
        return LockState("unknown")

    @contextlib.contextmanager
    def locked(self) -> Iterator[RemoteExecutor]:
        """Nothing to hold here: the daemon locks for each apply, and refuses a plan
        made at another generation, so a plan-then-apply cannot act on a changed node."""
        yield self

    def ping(self, timeout_s: float) -> bool:
        """Whether the daemon answers GetState within ``timeout_s``."""
        try:
            self.stub.GetState(npb.GetStateRequest(), timeout=timeout_s)
        except grpc.RpcError:
            return False
        return True

    def observe(self) -> NodeState:
        """The daemon's GetState."""
        try:
            response = self.stub.GetState(npb.GetStateRequest(), timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.target) from None
        return serde.state_from_proto(response.state)

    def plan(self, desired: DesiredState, prune: bool = False, destroy: bool = False, *,
             observed: NodeState | None = None) -> Plan:
        """The daemon's plan for ``desired`` (validated there again, and compiled against
        the node the daemon observes: ``observed`` is not sent)."""
        request = npb.PlanRequest(resources=[serde.spec_to_proto(s) for s in desired.resources],
                                  manifest_set=desired.manifest_set, prune=prune,
                                  destroy=destroy)
        try:
            response = self.stub.Plan(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.target) from None
        return serde.plan_from_proto(response.plan)

    def list_images(self) -> ImageList:
        """The daemon's ListImages (FailedPrecondition from a daemon without it)."""
        try:
            response = self.stub.ListImages(npb.ListImagesRequest(), timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise self._image_error(exc, "ListImages") from None
        return serde.image_list_from_proto(response)

    def prune_images(self, all_unused: bool = False, dry_run: bool = False) -> ImagePrune:
        """The daemon's PruneImages, which takes its writer lock (its lock timeout
        applies); FailedPrecondition from a daemon without it. The deadline is long: a
        prune may wait for an apply and then delete a lot."""
        request = npb.PruneImagesRequest(all=all_unused, dry_run=dry_run)
        try:
            response = self.stub.PruneImages(request, timeout=self.timeout_s * 20)
        except grpc.RpcError as exc:
            raise self._image_error(exc, "PruneImages") from None
        return serde.prune_from_proto(response)

    def _image_error(self, exc: grpc.RpcError, method: str) -> ProvisionerError:
        """:func:`error_from_rpc`, but a daemon that does not know ``method`` (older
        than image collection) is told as such."""
        if isinstance(exc, grpc.Call) and exc.code() is grpc.StatusCode.UNIMPLEMENTED:
            return FailedPrecondition(
                f"the daemon at {self.target} does not offer image collection "
                f"(provisioner.v1.NodeService/{method} is not implemented there: it is "
                "older than this client); upgrade the daemon, or run the command on the "
                "node without --target while the daemon is stopped")
        return error_from_rpc(exc, self.target)

    def logs(self, name: str, follow: bool = False, since_ns: int | None = None,
             tail: int | None = None, channel: str | None = None, *,
             stop: threading.Event | None = None) -> Iterator[LogLine]:
        """An executable's captured output from the daemon (NodeService.GetLogs); a
        follow ends when ``stop`` is set (the call is cancelled) or the iterator closed."""
        request = serde.logs_request_to_proto(name, follow, since_ns, tail, channel)
        stream = self.stub.GetLogs(request, timeout=None if follow else self.timeout_s)
        ended = threading.Event()
        if stop is not None:
            threading.Thread(target=_cancel_on, args=(stop, ended, stream.cancel), daemon=True,
                             name="logs-stop").start()
        try:
            for entry in stream:
                yield serde.logline_from_proto(entry)
        except grpc.RpcError as exc:
            if stop is not None and stop.is_set():
                return  # cancelled on request
            raise error_from_rpc(exc, self.target) from None
        finally:
            ended.set()
            stream.cancel()

    def push_driver_files(self, plan: Plan) -> None:
        """Send the file of every PUSH step found here to the daemon's registry (an
        identity without the admin role may not push: the files are then not sent)."""
        registry = rgrpc.RegistryStub(self.channel)  # type: ignore[no-untyped-call]
        for step in plan.steps:
            spec = step.spec
            if step.action is not Action.PUSH or not isinstance(spec, DriverSpec) or \
                    not os.path.isfile(spec.source_path):
                continue
            try:
                registry.PushDriver(_driver_messages(spec), timeout=self.timeout_s * 10)
            except grpc.RpcError as exc:
                if exc.code() is grpc.StatusCode.PERMISSION_DENIED:
                    # The registry is admin-only. Not fatal here: the daemon still uses
                    # the file if it is on the node, else its PUSH step says what is
                    # missing.
                    return
                raise error_from_rpc(exc, self.target) from None

    def apply(self, plan: Plan, parallelism: int = 0) -> Iterator[ApplyEvent]:
        """The daemon's events as they come; the last is the summary. A stream that
        ends without one (the daemon died) is Unavailable."""
        self.push_driver_files(plan)
        request = npb.ApplyRequest(plan=serde.plan_to_proto(plan), parallelism=parallelism)
        stream = self.stub.Apply(request)  # no deadline: an apply takes what it takes
        try:
            for message in stream:
                event = serde.event_from_proto(message, plan)
                yield event
                if event.type is EventType.SUMMARY:
                    return
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.target) from None
        finally:
            stream.cancel()
        raise Unavailable(f"the daemon at {self.target} ended the apply without a summary; "
                          "what was done is recorded there: run status, then apply again")


if TYPE_CHECKING:  # mypy checks that this class is an Executor
    _conforms: type[Executor] = RemoteExecutor
