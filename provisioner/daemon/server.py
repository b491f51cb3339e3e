"""The daemon's gRPC server: listeners, authorization, health, reflection, lifecycle.

``serve(config)`` is ``provisioner daemon``: it opens the node layer, starts a
:class:`Daemon` and blocks until SIGTERM or SIGINT, then shuts down gracefully. Tests
start a :class:`Daemon` on a context of their own with :func:`start`.

Start: take the daemon lock of the state directory (one daemon per node), bind the
listeners (refusing a socket another daemon listens on), reconcile the store with the
kernel, run the services' start hook (persistent executables), then accept calls.
Stop: health says NOT_SERVING, ``ctx.stopping`` ends long-lived streams, no new calls are
accepted and calls in flight get a grace period; executables keep running for the next
start to adopt, unless ``stop_on_exit``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import logging
import os
import pkgutil
import signal
import time
from collections.abc import Callable
from concurrent import futures
from types import FrameType, ModuleType
from typing import Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import provisioner._proto
from provisioner.daemon.authz import AuthorizationInterceptor, Policy, load_policy
from provisioner.daemon.context import MAX_CONCURRENT_RPCS_LIMIT, DaemonConfig, DaemonContext
from provisioner.daemon.listen import UnixSocket, listen_tcp, listen_unix
from provisioner.errors import FailedPrecondition, InvalidArgument, NodeError
from provisioner.executors.local import LocalExecutor
from provisioner.node import STDOUT, LogLine, LogRing, NodeConfig, NodeLayer, RegistryOptions

log = logging.getLogger("provisioner.daemon")

SERVICES_MODULE = "provisioner.daemon.services"
SHUTDOWN_GRACE_S = 10.0
DAEMON_LOCK_FILE = "daemon.lock"


def service_names() -> list[str]:
    """Every service the generated descriptors define."""
    names: set[str] = set()
    prefix = provisioner._proto.__name__ + "."
    for info in pkgutil.walk_packages(provisioner._proto.__path__, prefix):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(info.name)
            names.update(s.full_name for s in module.DESCRIPTOR.services_by_name.values())
    return sorted(names)


class _Recorder:
    """Stands in for the server while the services register: notes each service's name
    (for health and reflection, which then list exactly what is served)."""

    def __init__(self, server: grpc.Server) -> None:
        self._server = server
        self.names: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        for handler in handlers:
            name = getattr(handler, "service_name", None)
            if callable(name):
                self.names.append(name())
        self._server.add_generic_rpc_handlers(handlers)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._server, attr)


def _services_module() -> ModuleType | None:
    """The servicers' module, or None while it is not written yet. A module that
    exists but fails to import is an error, not silently skipped."""
    try:
        return importlib.import_module(SERVICES_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != SERVICES_MODULE:
            raise
        return None


class _Health(health.HealthServicer):
    """The standard health servicer, blocking (so Watch counts as a call in flight),
    and able to end its Watch streams at shutdown instead of holding the grace period."""

    def __init__(self) -> None:
        super().__init__(experimental_non_blocking=False)

    def end_watches(self) -> None:
        # Private state of grpc_health; without it, watches end when the grace ends.
        callbacks = getattr(self, "_send_response_callbacks", {})
        with self._lock:
            pending = [cb for group in callbacks.values() for cb in group]
        for callback in pending:
            callback(None)


class DaemonLogHandler(logging.Handler):
    """Copies the daemon's log records into ``ctx.daemon_log`` (GetAuraeDaemonLogStream)."""

    def __init__(self, ring: LogRing) -> None:
        super().__init__(logging.INFO)
        self.ring = ring
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        """Append the formatted record to the daemon's own log ring."""
        try:
            self.ring.append(LogLine(int(record.created * 1e9), STDOUT, self.format(record)))
        except Exception:
            self.handleError(record)


def build_server(ctx: DaemonContext, policy: Policy | None = None) -> grpc.Server:
    """A server with every servicer, health, reflection and authorization, its listeners
    bound but not started."""
    return _build(ctx, policy)[0]


def _build(ctx: DaemonContext, policy: Policy | None
           ) -> tuple[grpc.Server, _Health, list[UnixSocket], int | None]:
    config = ctx.config
    policy = policy or load_policy(config.policy_file)
    # One thread for every call admitted: with fewer, long streams (log follows, health
    # watches) would queue other calls silently instead of the limit answering
    # RESOURCE_EXHAUSTED. Threads are made lazily, so an idle daemon stays small, and
    # hold no files of their own (the store shares a few connections among them).
    threads = config.max_concurrent_rpcs
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc"),
        interceptors=[AuthorizationInterceptor(policy)],
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            # A second daemon on the same port must fail, not share it (Linux default).
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )
    names: list[str] = []
    services = _services_module()
    if services is not None:
        recorder = _Recorder(server)
        services.register_all(cast(grpc.Server, recorder), ctx)
        names = sorted(set(recorder.names))
        missing = sorted(set(service_names()) - set(names))
        if missing:
            log.warning("not served (no servicer registered): %s", ", ".join(missing))
    else:
        log.warning("%s is not available: serving health and reflection only",
                    SERVICES_MODULE)
    checker = _Health()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    names += [health.SERVICE_NAME, reflection.SERVICE_NAME]
    for name in [health.OVERALL_HEALTH, *names]:
        checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(names, server)
    sockets: list[UnixSocket] = []
    try:
        if config.socket:
            sockets.append(listen_unix(server, config.socket, config.socket_group))
        port = listen_tcp(server, config) if config.tcp else None
    except BaseException:
        for sock in sockets:
            sock.remove()
        server.stop(None)
        raise
    log.info("authorization: %s", policy.source)
    return server, checker, sockets, port


class Daemon:
    """A started daemon. :meth:`stop` is the graceful shutdown (idempotent)."""

    def __init__(self, ctx: DaemonContext, policy: Policy | None = None) -> None:
        self.ctx = ctx
        policy = policy or check_config(ctx.config)
        self._lock_fd = _take_daemon_lock(ctx.config.state_dir)
        self._handler = DaemonLogHandler(ctx.daemon_log)
        package_log = logging.getLogger("provisioner")
        self._saved_level = package_log.level
        if package_log.getEffectiveLevel() > logging.INFO:
            package_log.setLevel(logging.INFO)  # the daemon log stream shows INFO records
        package_log.addHandler(self._handler)
        self._stopped = False
        try:
            self.server, self.health, self.sockets, self.tcp_port = _build(ctx, policy)
            self._reconcile()
            self._start_hook()
            self.server.start()
        except BaseException:
            self._release()
            raise
        where = [s.path for s in self.sockets]
        if ctx.config.tcp:
            where.append(f"{ctx.config.tcp} (port {self.tcp_port})")
        log.info("serving on %s", ", ".join(where))

    def _reconcile(self) -> None:
        started = time.monotonic()
        with self.ctx.executor.locked():
            found = list(self.ctx.executor.found)
        for item in found:
            log.info("reconcile: %s", item)
        log.info("reconciled with the store in %.2f s: %s", time.monotonic() - started,
                 f"{len(found)} change(s)" if found else "nothing changed behind our back")

    def _start_hook(self) -> None:
        services = _services_module()
        hook: Callable[[DaemonContext], Any] | None = getattr(services, "on_start", None)
        if hook is None:
            return
        try:
            hook(self.ctx)
        except Exception:
            # A daemon that serves can be asked what went wrong and fix it; one that
            # refuses to start because one persistent executable cannot cannot.
            log.exception("the start hook %s.on_start failed; serving anyway",
                          SERVICES_MODULE)

    def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop taking calls and give calls in flight ``grace_s`` seconds; then stop
        every executable (``--stop-on-exit``) or leave them for the next start to adopt,
        and release the socket and the node layer. A second call does nothing.
        """
        if self._stopped:
            return
        self._stopped = True
        log.info("stopping: no new calls, %.0f s for calls in flight", grace_s)
        self.health.enter_graceful_shutdown()
        self.ctx.stopping.set()
        self.health.end_watches()
        self.server.stop(grace_s).wait()
        if self.ctx.config.stop_on_exit:
            self._stop_executables()
        else:
            running = [p.name for p in self.ctx.layer.store.list_processes()
                       if self.ctx.layer.is_running(p.name)]
            log.info("leaving %d executable(s) running for the next start to adopt",
                     len(running))
        self._release()
        log.info("stopped")

    def _stop_executables(self) -> None:
        layer = self.ctx.layer
        with self.ctx.executor.locked():
            for process in layer.store.list_processes():
                if not layer.is_running(process.name):
                    continue
                try:
                    layer.stop_executable(process.name)
                    log.info("stopped executable %s (--stop-on-exit)", process.name)
                except Exception as exc:
                    log.error("could not stop executable %s: %s", process.name, exc)

    def _release(self) -> None:
        for sock in getattr(self, "sockets", []):
            sock.remove()
        package_log = logging.getLogger("provisioner")
        package_log.removeHandler(self._handler)
        package_log.setLevel(self._saved_level)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def _take_daemon_lock(state_dir: str) -> int | None:
    """Hold ``<state_dir>/daemon.lock`` while the daemon runs: two daemons serving one
    node would each restart its persistent executables. Close-on-exec, so executables
    started by the daemon never inherit (and keep) it."""
    path = os.path.join(state_dir, DAEMON_LOCK_FILE)
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise NodeError(f"cannot open {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise FailedPrecondition(f"another daemon (pid {holder}) serves the state directory "
                                 f"{state_dir}; stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def start(ctx: DaemonContext, policy: Policy | None = None) -> Daemon:
    """Start a daemon on ``ctx`` (its layer and executor are the caller's to close)."""
    return Daemon(ctx, policy)


def check_config(config: DaemonConfig) -> Policy:
    """Refuse a configuration that cannot work before anything is touched; returns the
    authorization policy it names."""
    if not config.socket and not config.tcp:
        raise InvalidArgument("nothing to listen on: give a unix socket or a TCP address")
    tls = (config.tls_cert, config.tls_key, config.client_ca)
    if config.tcp and not config.insecure_tcp and not all(tls):
        raise InvalidArgument(f"TCP {config.tcp} needs a server certificate, its key and a "
                              "client CA (mutual TLS), or the explicit insecure_tcp")
    if config.insecure_tcp and any(tls):
        raise InvalidArgument("insecure TCP and TLS files exclude each other")
    if config.max_message_bytes < 1024 or not (
            1 <= config.max_concurrent_rpcs <= MAX_CONCURRENT_RPCS_LIMIT):
        raise InvalidArgument("max_message_bytes must be >= 1024 and max_concurrent_rpcs "
                              f"between 1 and {MAX_CONCURRENT_RPCS_LIMIT}")
    return load_policy(config.policy_file)


def serve(config: DaemonConfig) -> None:
    """Run the daemon until SIGTERM or SIGINT (``provisioner daemon``)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    policy = check_config(config)
    layer = NodeLayer(NodeConfig(state_dir=config.state_dir, cgroup_root=config.cgroup_root,
                                 pod_subnet=config.pod_subnet,
                                 registries=RegistryOptions(
                                     ca_file=config.registry_ca,
                                     insecure=config.insecure_registries,
                                     auth_file=config.registry_auth_file)))
    try:
        executor = LocalExecutor(layer, purpose="provisioner daemon")
        ctx = DaemonContext(config, layer, executor)
        signals: list[int] = []

        # The handler only records the signal: taking locks (Event.set) inside a signal
        # handler can deadlock against the interrupted main thread.
        def on_signal(signum: int, frame: FrameType | None) -> None:
            signals.append(signum)

        previous = {sig: signal.signal(sig, on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            daemon = start(ctx, policy)
            try:
                while not signals:
                    time.sleep(0.2)
                log.info("received %s", signal.Signals(signals[0]).name)
            finally:
                daemon.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        with contextlib.suppress(Exception):
            layer.close()  # executables and their shims go on
