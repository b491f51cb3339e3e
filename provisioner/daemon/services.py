"""Every servicer of the node daemon, registered on one server, and the start hook.

``server.py`` calls :func:`register_all` once while building the server and
:func:`on_start` once the node is reconciled, before calls are accepted.

The Aurae APIs (current and first generation) are registered here directly. The rkt
API, the Atomix registry and the provisioner's own API live in modules written
separately, each with a ``register(server, ctx)``; a module not written yet is skipped
(and logged), while one that exists but fails to import is an error.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, cast

import grpc

from provisioner._proto.aurae.discovery.v0 import discovery_pb2_grpc
from provisioner._proto.aurae.observe.v0 import observe_pb2_grpc
from provisioner._proto.aurae.runtime.pod.v0 import pod_pb2_grpc
from provisioner._proto.aurae.runtime.v0 import runtime_pb2_grpc
from provisioner._proto.observe import observe_pb2_grpc as legacy_observe_grpc
from provisioner._proto.runtime import runtime_pb2_grpc as legacy_runtime_grpc
from provisioner._proto.schedule import schedule_pb2_grpc
from provisioner.daemon import aurae_pods, aurae_runtime, legacy
from provisioner.daemon.aurae_observe import (
    DEFAULT_RING_LINES,
    LegacyObserveService,
    LogHub,
    ObserveService,
)
from provisioner.daemon.context import DaemonContext
from provisioner.daemon.discovery import DiscoveryService
from provisioner.node import cleanup_exec_leaves, restart_enabled

__all__ = ["OPTIONAL_MODULES", "on_start", "register_all"]

log = logging.getLogger("provisioner.daemon")

#: Modules with ``register(server, ctx)`` that may not exist yet.
OPTIONAL_MODULES = ("provisioner.daemon.rkt", "provisioner.daemon.registry",
                    "provisioner.daemon.node_service")

_Adder = Callable[[Any, grpc.Server], None]


def _add(adder: object, servicer: object, server: grpc.Server) -> None:
    # The generated add_*_to_server functions are untyped; call them through one cast.
    cast(_Adder, adder)(servicer, server)


def register_all(server: grpc.Server, ctx: DaemonContext, *,
                 ring_lines: int = DEFAULT_RING_LINES) -> None:
    """Register every servicer on ``server``, and the optional modules that exist.

    ``ring_lines``: how many lines of one executable's output a log stream keeps for
    its followers (the backlog a new follower gets, and the slack of a slow one).
    """
    hub = LogHub(ring_lines)
    servicers: list[tuple[object, object]] = [
        (runtime_pb2_grpc.add_CellServiceServicer_to_server, aurae_runtime.CellService(ctx)),
        (runtime_pb2_grpc.add_PodServiceServicer_to_server, aurae_pods.PodService(ctx)),
        (runtime_pb2_grpc.add_InstanceServiceServicer_to_server,
         aurae_runtime.InstanceService()),
        (runtime_pb2_grpc.add_SpawnServiceServicer_to_server, aurae_runtime.SpawnService()),
        (pod_pb2_grpc.add_PodServiceServicer_to_server, aurae_pods.PodServiceV0(ctx)),
        (discovery_pb2_grpc.add_DiscoveryServiceServicer_to_server, DiscoveryService(ctx)),
        (observe_pb2_grpc.add_ObserveServiceServicer_to_server, ObserveService(ctx, hub)),
        (legacy_observe_grpc.add_ObserveServicer_to_server, LegacyObserveService(ctx, hub)),
        (legacy_runtime_grpc.add_RuntimeServicer_to_server, legacy.RuntimeService(ctx)),
        (schedule_pb2_grpc.add_ScheduleServicer_to_server, legacy.ScheduleService(ctx)),
        (schedule_pb2_grpc.add_ScheduleExecutableServicer_to_server,
         legacy.ScheduleExecutableService(ctx)),
    ]
    for adder, servicer in servicers:
        _add(adder, servicer, server)
    registered: list[str] = []
    for name in OPTIONAL_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but something it imports does not
                raise
            log.info("%s is not available yet: its services are not served", name)
            continue
        module.register(server, ctx)
        registered.append(name)
    log.info("registered the Aurae services and %s",
             ", ".join(registered) if registered else "no optional modules")



def on_start(ctx: DaemonContext) -> None:
    """At daemon start: remove what a crashed Exec left, then bring persistent
    executables to their recorded state (start the enabled ones not running)."""
    for leaf in cleanup_exec_leaves(ctx.layer):
        log.warning("removed leftover Exec leaf %s (and killed what it held)", leaf)
    for line in restart_enabled(ctx.layer):
        log.info("persistent executable %s", line)
