"""Domain errors become status codes once, with their class in the status metadata, and
come back to a client as the same class; an abort inside a method passes unchanged."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from provisioner.daemon.status import handles_errors
from provisioner.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    LoadError,
    LockBusy,
    ManifestError,
    NodeError,
    NotFound,
    PermissionDenied,
    ProvisionerError,
    StalePlan,
    Unavailable,
)
from provisioner.executors.remote import error_from_rpc
from provisioner.serde.status import ERROR_CLASS_KEY, ERROR_STATUS, error_class_of


class Servicer:
    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc

    @handles_errors
    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        if self.exc is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "not here")
        raise self.exc

    @handles_errors
    def stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"first"
        if self.exc is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "not here")
        raise self.exc


def serve(servicer: Servicer) -> tuple[grpc.Server, str]:
    path = tempfile.mktemp(prefix="pdst", dir="/tmp")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    identity: Any = None
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(servicer.unary, identity, identity),
        "Stream": grpc.unary_stream_rpc_method_handler(servicer.stream, identity, identity),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.T", handlers)])
    server.add_insecure_port(f"unix://{path}")
    server.start()
    return server, f"unix://{path}"


@pytest.mark.parametrize(("exc", "code"), [
    (InvalidArgument("bad name"), grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound("no cell"), grpc.StatusCode.NOT_FOUND),
    (AlreadyExists("exists"), grpc.StatusCode.ALREADY_EXISTS),
    (StalePlan("stale"), grpc.StatusCode.FAILED_PRECONDITION),
    (NodeError("disk"), grpc.StatusCode.INTERNAL),
    (KeyError("x"), grpc.StatusCode.INTERNAL),
    (None, grpc.StatusCode.UNIMPLEMENTED),
])
def test_codes_for_unary_and_streaming_methods(exc: BaseException | None,
                                               code: grpc.StatusCode) -> None:
    server, target = serve(Servicer(exc))
    try:
        with grpc.insecure_channel(target) as channel:
            with pytest.raises(grpc.RpcError) as unary:
                channel.unary_unary("/t.T/Unary")(b"", timeout=5)
            assert unary.value.code() == code
            stream = channel.unary_stream("/t.T/Stream")(b"", timeout=5)
            assert next(stream) == b"first"
            with pytest.raises(grpc.RpcError) as streamed:
                next(stream)
            assert streamed.value.code() == code
            if exc is None:
                assert unary.value.details() == "not here"
            elif isinstance(exc, KeyError):
                assert unary.value.details().startswith("internal error: KeyError")
            else:
                assert unary.value.details() == str(exc)
    finally:
        server.stop(0)


class Aborter:
    """A servicer that ends its call with a status grpc's own abort gives, with the
    metadata the test chooses (what another server or an older daemon would send)."""

    def __init__(self, code: grpc.StatusCode, metadata: tuple[tuple[str, str], ...]) -> None:
        self.code, self.metadata = code, metadata

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        context.set_trailing_metadata(self.metadata)
        context.abort(self.code, "said by the server")
        raise AssertionError("unreachable")


def call_error(handler: Any) -> grpc.RpcError:
    path = tempfile.mktemp(prefix="pdst", dir="/tmp")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    identity: Any = None
    handlers = {"Unary": grpc.unary_unary_rpc_method_handler(handler, identity, identity)}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.T", handlers)])
    server.add_insecure_port(f"unix://{path}")
    server.start()
    try:
        with grpc.insecure_channel(f"unix://{path}") as channel:
            with pytest.raises(grpc.RpcError) as raised:
                channel.unary_unary("/t.T/Unary")(b"", timeout=5)
            return raised.value
    finally:
        server.stop(0)


@pytest.mark.parametrize("cls", [cls for cls, _ in ERROR_STATUS])
def test_every_error_class_crosses_the_wire_as_itself(cls: type[ProvisionerError]) -> None:
    """The daemon's side (handles_errors) and the client's (error_from_rpc) read one
    table: each class comes back as itself, with its message, whatever the message says."""
    error = call_error(Servicer(cls("a message that names no class")).unary)
    assert error.code() == dict(ERROR_STATUS)[cls]
    assert (ERROR_CLASS_KEY, cls.__name__) in tuple(error.trailing_metadata() or ())
    rebuilt = error_from_rpc(error, "unix:///x")
    assert type(rebuilt) is cls and str(rebuilt) == "a message that names no class"


def test_subclasses_that_need_more_than_a_message_travel_as_their_row() -> None:
    error = call_error(Servicer(LoadError("m.yaml", "not YAML", 3, 1)).unary)
    rebuilt = error_from_rpc(error, "unix:///x")
    assert type(rebuilt) is ManifestError and str(rebuilt) == "m.yaml:3:1: not YAML"
    fault = error_from_rpc(call_error(Servicer(KeyError("k")).unary), "unix:///x")
    assert type(fault) is NodeError and "INTERNAL" in str(fault) and "unix:///x" in str(fault)


@pytest.mark.parametrize(("code", "metadata", "expected"), [
    # no class named: the code's general class; the text is not read
    (grpc.StatusCode.FAILED_PRECONDITION, (), FailedPrecondition),
    (grpc.StatusCode.INVALID_ARGUMENT, (), InvalidArgument),
    (grpc.StatusCode.UNAUTHENTICATED, (), PermissionDenied),
    # a name the table does not know, or one that contradicts the code, is ignored
    (grpc.StatusCode.NOT_FOUND, ((ERROR_CLASS_KEY, "SystemExit"),), NotFound),
    (grpc.StatusCode.NOT_FOUND, ((ERROR_CLASS_KEY, "StalePlan"),), NotFound),
    (grpc.StatusCode.FAILED_PRECONDITION, ((ERROR_CLASS_KEY, "LockBusy"),), LockBusy),
    # unreachable without a class: grpc's own status, said with the target
    (grpc.StatusCode.UNAVAILABLE, (), Unavailable),
    (grpc.StatusCode.UNIMPLEMENTED, (), NodeError),
])
def test_statuses_without_a_known_class_fall_back_to_the_code(
        code: grpc.StatusCode, metadata: tuple[tuple[str, str], ...],
        expected: type[ProvisionerError]) -> None:
    rebuilt = error_from_rpc(call_error(Aborter(code, metadata).unary), "unix:///x")
    assert type(rebuilt) is expected
    assert "said by the server" in str(rebuilt)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED):
        assert "unix:///x" in str(rebuilt)
    assert error_class_of(code, metadata) in (expected, None)
