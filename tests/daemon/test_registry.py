"""atomix.runtime.v1.Registry through a real channel: push/pull round trips, protocol
errors with their codes, and that a failed push never stores anything."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from provisioner._proto.atomix.runtime.v1 import registry_pb2 as rpb
from provisioner._proto.atomix.runtime.v1 import registry_pb2_grpc as rgrpc
from provisioner.errors import DataLoss, UnsafeName
from provisioner.node.state.drivers import CHUNK_BYTES, DriverKey, DriverStore, DriverTooLarge
from tests.daemon.node_harness import Daemon, code_of, details_of, rpc_error, running_daemon

pytestmark = pytest.mark.kernel
LIMIT = 4 * 1024 * 1024


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path, max_driver_bytes=LIMIT) as running:
        yield running


def header(name: str = "raft", version: str = "v1.2.0", runtime: str = "1.0"
           ) -> rpb.PushDriverRequest:
    return rpb.PushDriverRequest(header=rpb.PluginHeader(
        driver=rpb.DriverInfo(name=name, version=version),
        runtime=rpb.RuntimeInfo(version=runtime)))


def chunks(data: bytes, size: int = CHUNK_BYTES) -> list[rpb.PushDriverRequest]:
    return [rpb.PushDriverRequest(chunk=rpb.PluginChunk(data=data[i:i + size]))
            for i in range(0, len(data), size)]


def trailer(data: bytes | None = None, checksum: str = "") -> rpb.PushDriverRequest:
    digest = checksum or hashlib.sha256(data or b"").hexdigest()
    return rpb.PushDriverRequest(trailer=rpb.PluginTrailer(checksum=digest))


def pull(daemon: Daemon, name: str = "raft", version: str = "v1.2.0",
         runtime: str = "1.0") -> list[rpb.PullDriverResponse]:
    stub = rgrpc.RegistryStub(daemon.channel)  # type: ignore[no-untyped-call]
    request = rpb.PullDriverRequest(header=rpb.PluginHeader(
        driver=rpb.DriverInfo(name=name, version=version),
        runtime=rpb.RuntimeInfo(version=runtime)))
    return list(stub.PullDriver(request, timeout=10))


def push(daemon: Daemon, messages: list[rpb.PushDriverRequest]) -> None:
    rgrpc.RegistryStub(daemon.channel).PushDriver(iter(messages), timeout=10)  # type: ignore[no-untyped-call]


def stored(daemon: Daemon) -> list[str]:
    root = Path(daemon.layer.config.state_dir) / "drivers"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_push_then_pull_a_few_mib_round_trips_with_checksum(daemon: Daemon) -> None:
    data = os.urandom(3 * CHUNK_BYTES + 12345)
    push(daemon, [header(), *chunks(data, 300_000), trailer(data)])
    assert stored(daemon) == ["raft/v1.2.0/1.0"]
    responses = pull(daemon)
    assert [r.WhichOneof("response") for r in responses] == ["chunk"] * 4 + ["trailer"]
    assert all(len(r.chunk.data) == CHUNK_BYTES for r in responses[:3])  # 1 MiB chunks
    assert b"".join(r.chunk.data for r in responses[:-1]) == data
    assert responses[-1].trailer.checksum == hashlib.sha256(data).hexdigest()
    # A push of the same driver replaces it atomically; an empty driver is fine too.
    push(daemon, [header(), trailer(b"")])
    assert [r.WhichOneof("response") for r in pull(daemon)] == ["trailer"]


@pytest.mark.parametrize("messages, wanted", [
    ([], "starts with a header, not the end of the stream"),
    ([rpb.PushDriverRequest(chunk=rpb.PluginChunk(data=b"x"))], "not a chunk"),
    ([header(), header()], "a header after the header"),
    ([header(), rpb.PushDriverRequest()], "an empty message after the header"),
    ([header(), *chunks(b"abc"), trailer(b"abc"), *chunks(b"d")], "a chunk after the trailer"),
])
def test_a_message_out_of_order_is_invalid_argument(
        daemon: Daemon, messages: list[rpb.PushDriverRequest], wanted: str) -> None:
    error = rpc_error(lambda: push(daemon, messages))
    assert code_of(error) is grpc.StatusCode.INVALID_ARGUMENT
    assert wanted in details_of(error)
    assert stored(daemon) == []


def test_missing_trailer_and_bad_checksum_are_data_loss_and_store_nothing(
        daemon: Daemon) -> None:
    data = os.urandom(100_000)
    push(daemon, [header(), *chunks(data), trailer(data)])
    before = pull(daemon)
    error = rpc_error(lambda: push(daemon, [header(), *chunks(b"new bytes")]))
    assert code_of(error) is grpc.StatusCode.DATA_LOSS
    assert "without a trailer" in details_of(error)
    error = rpc_error(lambda: push(daemon, [header(), *chunks(b"new"), trailer(b"other")]))
    assert code_of(error) is grpc.StatusCode.DATA_LOSS
    assert "checksum mismatch" in details_of(error)
    assert pull(daemon) == before  # the stored driver is untouched
    assert stored(daemon) == ["raft/v1.2.0/1.0"]  # and no temporary file is left


@pytest.mark.parametrize("name, version, runtime", [
    ("../x", "1", "1"), ("a/b", "1", "1"), ("raft", "..", "1"), ("raft", "1", "../../etc"),
    ("", "1", "1"), (".hidden", "1", "1"),
])
def test_escaping_names_are_refused(daemon: Daemon, name: str, version: str,
                                    runtime: str) -> None:
    error = rpc_error(lambda: push(daemon, [header(name, version, runtime), trailer(b"")]))
    assert code_of(error) is grpc.StatusCode.INVALID_ARGUMENT
    error = rpc_error(lambda: pull(daemon, name, version, runtime))
    assert code_of(error) is grpc.StatusCode.INVALID_ARGUMENT
    assert stored(daemon) == []


def test_oversize_is_resource_exhausted_and_stores_nothing(daemon: Daemon) -> None:
    data = b"\0" * (LIMIT + 1)
    error = rpc_error(lambda: push(daemon, [header(), *chunks(data), trailer(data)]))
    assert code_of(error) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(LIMIT) in details_of(error)
    assert stored(daemon) == []


def test_pull_of_an_unknown_driver_is_not_found(daemon: Daemon) -> None:
    error = rpc_error(lambda: pull(daemon, "nothing"))
    assert code_of(error) is grpc.StatusCode.NOT_FOUND
    assert "driver nothing v1.2.0" in details_of(error)


def test_store_layout_keeps_similar_names_apart(tmp_path: Path) -> None:
    """Upstream's <name>-<version>.<runtime> would give both the same file."""
    store = DriverStore(str(tmp_path), max_bytes=10)
    source = tmp_path / "f"
    for key, text in ((DriverKey("a-1", "2", "x"), b"one"), (DriverKey("a", "1-2", "x"), b"two"),
                      (DriverKey("a", "1", ""), b"three")):
        source.write_bytes(text)
        store.store_file(key, str(source))
    with store.open(DriverKey("a", "1-2", "x")) as handle:
        assert handle.read() == b"two"
    with pytest.raises(DataLoss):
        store.store_file(DriverKey("a", "1", ""), str(source), sha256="0" * 64)
    source.write_bytes(b"x" * 11)
    with pytest.raises(DriverTooLarge):
        store.store_file(DriverKey("a", "9", ""), str(source))
    with pytest.raises(UnsafeName):
        store.path(DriverKey("a", "..", ""))
    assert store.delete(DriverKey("a-1", "2", "x")) and not store.delete(DriverKey("a-1", "2", "x"))
    assert not (tmp_path / "drivers" / "a-1").exists()  # empty folders go with it
    assert sorted(p.name for p in (tmp_path / "drivers").rglob("*") if p.is_file()) == ["_", "x"]
