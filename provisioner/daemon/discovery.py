"""``aurae.discovery.v0.DiscoveryService``: is this a working node daemon, which version.

``healthy`` is the result of a real self-check (:func:`self_check`), not a constant:

* the store answers a read (the generation) from ``state.db``;
* the state directory takes a write: a small file is created, written, and removed
  (this catches a read-only or full file system, which a read would not);
* the database file is writable (it lives in that directory);
* the cgroup root of this daemon exists in every hierarchy and carries our ownership
  mark, so cells can be made under it.

The check never takes the store's write lock, so Discover stays fast while an apply
holds it, and its result is reused for ``DaemonConfig.health_ttl_s`` (1 s) so that a
Discover costs about as much as any small RPC. ``observe.Observe.Status`` reports the
same problems in words.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid

import grpc

import provisioner
from provisioner._proto.aurae.discovery.v0 import discovery_pb2 as pb
from provisioner._proto.aurae.discovery.v0 import discovery_pb2_grpc as pb_grpc
from provisioner.daemon.context import DaemonContext
from provisioner.daemon.status import handles_errors
from provisioner.errors import ProvisionerError
from provisioner.node import NodeLayer

__all__ = ["DiscoveryService", "self_check"]


def _check_store(layer: NodeLayer) -> list[str]:
    try:
        layer.store.generation()
    except ProvisionerError as exc:
        return [f"state database unreadable: {exc}"]
    if not os.access(layer.store.path, os.R_OK | os.W_OK):
        return [f"state database {layer.store.path} is not writable"]
    return []


def _check_state_dir(state_dir: str) -> list[str]:
    probe = os.path.join(state_dir, f".health-{uuid.uuid4().hex}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"ok\n")
        finally:
            os.close(fd)
    except OSError as exc:
        return [f"state directory {state_dir} is not writable: {exc.strerror}"]
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)
    return []


def _check_cgroups(layer: NodeLayer) -> list[str]:
    try:
        dirs = layer.cgroups.cell_dirs("")
        missing = [d for d in dirs if not os.path.isdir(d)]
        if missing:
            return [f"cgroup root {missing[0]} is missing"]
        if not layer.cgroups.is_owned(""):
            return [f"cgroup root {dirs[0]} is not marked as the provisioner's"]
        if not all(os.access(d, os.W_OK) for d in dirs):
            return [f"cgroup root {dirs[0]} is not writable"]
    except (ProvisionerError, OSError) as exc:
        return [f"cgroup root unusable: {exc}"]
    return []


def self_check(layer: NodeLayer) -> list[str]:
    """What is wrong with this node daemon's store and cgroups; empty when healthy."""
    return [*_check_store(layer), *_check_state_dir(layer.config.state_dir),
            *_check_cgroups(layer)]


class CachedCheck:
    """``self_check`` at most once per ``ttl_s`` seconds, shared by concurrent callers."""

    def __init__(self, layer: NodeLayer, ttl_s: float) -> None:
        self.layer, self.ttl_s = layer, ttl_s
        self._lock = threading.Lock()
        self._checked_at = -float("inf")
        self._problems: list[str] = []

    def problems(self) -> list[str]:
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at >= self.ttl_s:
                self._problems = self_check(self.layer)
                self._checked_at = now
            return list(self._problems)


class DiscoveryService(pb_grpc.DiscoveryServiceServicer):
    """``aurae.discovery.v0.DiscoveryService``: is the node healthy, and which version."""

    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx
        self.check = CachedCheck(ctx.layer, ctx.config.health_ttl_s)

    @handles_errors
    def Discover(self, request: pb.DiscoverRequest,
                 context: grpc.ServicerContext) -> pb.DiscoverResponse:
        """Healthy when the node layer reports no problem (cached for a short TTL)."""
        return pb.DiscoverResponse(healthy=not self.check.problems(),
                                   version=provisioner.__version__)
