"""``atomix.runtime.v1.Registry``: push and pull driver artifacts (APIS.md section 5).

Push is a client stream: exactly one header, any number of chunks, exactly one trailer
whose checksum is the lowercase hex SHA-256 of all bytes, then the end of the stream.
Pull answers a header with the stored bytes in 1 MiB chunks, then the trailer.

Status codes (where upstream differed, see APIS.md): a message out of order (a chunk
or trailer before the header, a second header, anything after the trailer, an empty
message) is INVALID_ARGUMENT; a stream that ends without its trailer, or a checksum
that does not match, is DATA_LOSS; a driver over ``max_driver_bytes`` is
RESOURCE_EXHAUSTED; names that are not file-safe are INVALID_ARGUMENT; pulling a
driver that is not stored is NOT_FOUND. In every failed push nothing is stored (the
store writes atomically, see ``provisioner/node/state/drivers.py``), and a stored driver of
the same name, version and runtime version stays as it was.

Pushes through this API are artifacts, not declarative resources: they are not
recorded in the state store (a ``Driver`` manifest is, when applied).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import grpc

from provisioner._proto.atomix.runtime.v1 import registry_pb2 as rpb
from provisioner._proto.atomix.runtime.v1 import registry_pb2_grpc as rgrpc
from provisioner.daemon.context import DaemonContext
from provisioner.daemon.status import handles_errors
from provisioner.errors import DataLoss, InvalidArgument
from provisioner.node import CHUNK_BYTES, DriverKey, DriverStore, DriverTooLarge


def key_from_header(header: rpb.PluginHeader) -> DriverKey:
    """The driver a header names, with every part checked (UnsafeName otherwise)."""
    return DriverKey(header.driver.name, header.driver.version,
                     header.runtime.version).check()


class RegistryServicer(rgrpc.RegistryServicer):
    """``atomix.runtime.v1.Registry``: the node's store of driver files."""

    def __init__(self, ctx: DaemonContext) -> None:
        self.store = DriverStore(ctx.layer.config.state_dir, ctx.config.max_driver_bytes)

    @handles_errors
    def PushDriver(self, request_iterator: Iterator[rpb.PushDriverRequest],
                   context: grpc.ServicerContext) -> rpb.PushDriverResponse:
        """Store a streamed driver file: the header first, then chunks; the file is kept
        only if complete and its digest matches (DATA_LOSS otherwise, nothing stored).
        """
        try:
            self._push(iter(request_iterator))
        except DriverTooLarge as exc:
            # No domain error maps to RESOURCE_EXHAUSTED: the status is set here.
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details(str(exc))
        return rpb.PushDriverResponse()

    def _push(self, messages: Iterator[rpb.PushDriverRequest]) -> None:
        first = next(messages, None)
        which = first.WhichOneof("request") if first is not None else None
        if first is None or which != "header":
            raise InvalidArgument(f"a push starts with a header, not {_what(which, first)}")
        key = key_from_header(first.header)
        with self.store.writer(key) as out:
            for message in messages:
                which = message.WhichOneof("request")
                if which == "chunk":
                    out.write(message.chunk.data)
                elif which == "trailer":
                    extra = next(messages, None)
                    if extra is not None:
                        raise InvalidArgument(f"{_what(extra.WhichOneof('request'), extra)} "
                                              "after the trailer; nothing was stored")
                    out.commit(message.trailer.checksum)
                    return
                else:
                    raise InvalidArgument(f"{_what(which, message)} after the header (only "
                                          "chunks, then one trailer); nothing was stored")
        raise DataLoss(f"the push of {key} ended after {out.size} bytes without a trailer; "
                       "nothing was stored")

    @handles_errors
    def PullDriver(self, request: rpb.PullDriverRequest,
                   context: grpc.ServicerContext) -> Iterator[rpb.PullDriverResponse]:
        """Stream a stored driver back: its header, then its chunks."""
        key = key_from_header(request.header)
        with self.store.open(key) as handle:  # NotFound before the first message
            digest = hashlib.sha256()
            for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
                digest.update(block)
                yield rpb.PullDriverResponse(chunk=rpb.PluginChunk(data=block))
        yield rpb.PullDriverResponse(trailer=rpb.PluginTrailer(checksum=digest.hexdigest()))


def _what(which: str | None, message: object) -> str:
    if message is None:
        return "the end of the stream"
    return f"a {which}" if which else "an empty message"


def register(server: grpc.Server, ctx: DaemonContext) -> None:
    """Add the registry servicer to a server."""
    rgrpc.add_RegistryServicer_to_server(RegistryServicer(ctx), server)  # type: ignore[no-untyped-call]
