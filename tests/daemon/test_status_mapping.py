"""Domain errors become status codes once; an abort inside a method passes unchanged."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from provisioner.daemon.status import handles_errors
from provisioner.errors import AlreadyExists, InvalidArgument, NodeError, NotFound, StalePlan


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
