"""What every servicer shares: configuration, the node layer, the executor, logs.

Defaults (state directory, cgroup root, socket, limits) come from
:mod:`provisioner.defaults`, which the CLI and the executors share.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from provisioner.defaults import (
    DEFAULT_CGROUP_ROOT,
    DEFAULT_MAX_CONCURRENT_RPCS,
    DEFAULT_MAX_MESSAGE_MB,
    DEFAULT_POD_SUBNET,
    DEFAULT_SOCKET,
    DEFAULT_STATE_DIR,
)
from provisioner.records import field, record

if TYPE_CHECKING:
    from provisioner.executors.local import LocalExecutor
    from provisioner.node import LogRing, NodeLayer

MiB = 1024 * 1024
#: The most calls in flight (and so worker threads) a daemon may be configured for.
MAX_CONCURRENT_RPCS_LIMIT = 1024


@record
class DaemonConfig:
    """How a daemon is set up: where the node is, how it listens, its limits."""

    state_dir: str = DEFAULT_STATE_DIR
    cgroup_root: str = DEFAULT_CGROUP_ROOT
    #: Unix socket (mode 0600, owner root, group ``socket_group`` when given).
    socket: str | None = DEFAULT_SOCKET
    socket_group: str | None = None
    #: host:port to listen on with mutual TLS (needs tls_cert, tls_key, client_ca).
    tcp: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    #: Plain TCP without TLS: only with this explicit flag, with a warning.
    insecure_tcp: bool = False
    #: Authorization policy file (YAML); None: the documented default policy.
    policy_file: str | None = None
    #: Stop executables when the daemon exits (default: leave them for adoption).
    stop_on_exit: bool = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_MB * MiB
    #: Calls in flight (streams included); one worker thread each, made lazily. Threads
    #: hold no files (the store's connections are a pool), so this bounds threads only.
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS
    workers: int = 32
    #: The pod bridge's IPv4 subnet (docs/pods.md, Network).
    pod_subnet: str = DEFAULT_POD_SUBNET
    #: Registry pulls: extra CA file, registries without verified TLS, auth.json.
    registry_ca: str = ""
    insecure_registries: tuple[str, ...] = ()
    registry_auth_file: str = ""
    #: Discover reuses a self-check result this long (seconds): a health probe must be
    #: cheap enough to call in a loop; 0 checks on every call.
    health_ttl_s: float = 1.0
    #: GetState reuses an observation this long (seconds) while the store's generation
    #: and the shim status folder are unchanged (see ``state_cache.py``); 0: never.
    state_ttl_s: float = 1.0
    #: Registry: largest driver accepted, in bytes.
    max_driver_bytes: int = 512 * MiB


@record(frozen=False)
class DaemonContext:
    """The daemon's shared state, handed to every servicer."""

    config: DaemonConfig
    layer: NodeLayer
    executor: LocalExecutor
    #: The daemon's own log records (fed by a logging handler), for
    #: GetAuraeDaemonLogStream.
    daemon_log: LogRing = field(default_factory=lambda: _log_ring(10_000))
    started_at: float = field(default_factory=time.time)
    #: Set when the daemon is shutting down: long-lived streams end.
    stopping: threading.Event = field(default_factory=threading.Event)


def _log_ring(capacity: int) -> LogRing:
    """An in-memory ring of ``capacity`` lines (the node layer loads only now)."""
    from provisioner.node import LogRing

    return LogRing(capacity)
