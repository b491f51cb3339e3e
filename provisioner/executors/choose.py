"""Which executor acts on a node: the one choice shared by the CLI and the Ansible module.

A ``--target`` daemon; else the daemon at the default socket when it answers (only with
the default state directory and cgroup root, which are the daemon's); else this machine
in-process. Callers get an :class:`~provisioner.executors.base.Executor` and never ask
which one it is.

Imports stay lazy: choosing (and using) a remote executor loads neither the local
executor nor the node layer, so ``provisioner --target ...`` never imports
``provisioner.node``.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator

from provisioner.defaults import (
    DAEMON_PROBE_TIMEOUT_S,
    DEFAULT_CGROUP_ROOT,
    DEFAULT_LOCK_TIMEOUT_S,
    DEFAULT_POD_SUBNET,
    DEFAULT_SOCKET,
    DEFAULT_STATE_DIR,
)
from provisioner.executors.base import Executor

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from provisioner.executors.remote import RemoteExecutor

__all__ = ["DEFAULT_CGROUP_ROOT", "PROBE_TIMEOUT_S", "find_daemon", "open_executor"]

#: How long the default daemon socket may take to answer before acting locally.
PROBE_TIMEOUT_S = DAEMON_PROBE_TIMEOUT_S


@contextlib.contextmanager
def open_executor(target: str | None, state_dir: str = DEFAULT_STATE_DIR,
                  cgroup_root: str = DEFAULT_CGROUP_ROOT,
                  lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S, *,
                  tls_ca: str | None = None, tls_cert: str | None = None,
                  tls_key: str | None = None, insecure: bool = False,
                  purpose: str = "", read_only: bool = False,
                  pod_subnet: str = DEFAULT_POD_SUBNET, registry_ca: str = "",
                  insecure_registries: tuple[str, ...] = (),
                  registry_auth_file: str = "") -> Iterator[Executor]:
    """The executor to act through, closed afterwards: the daemon at ``target``; else
    the daemon at the default socket when it answers (only with the default state
    directory and cgroup root, which are the daemon's); else this machine in-process.

    The one place that makes this choice, for the CLI and the Ansible module alike.
    ``purpose`` is what the writer lock tells other processes (default: the command line).
    ``read_only`` (plan, status, check mode): acting on this machine creates nothing,
    not even the state directory, and a node never used looks empty. ``pod_subnet``:
    the pod bridge's subnet when acting on this machine (a daemon has its own); so
    are ``registry_ca``, ``insecure_registries`` and ``registry_auth_file``, how
    registry images are pulled (docs/pods.md).
    """
    remote = find_daemon(target, state_dir, cgroup_root, tls_ca=tls_ca, tls_cert=tls_cert,
                         tls_key=tls_key, insecure=insecure)
    executor = remote if remote is not None else open_local(
        state_dir, cgroup_root, lock_timeout, purpose=purpose, read_only=read_only,
        pod_subnet=pod_subnet, registry_ca=registry_ca,
        insecure_registries=insecure_registries, registry_auth_file=registry_auth_file)
    with executor:
        yield executor


def open_local(state_dir: str = DEFAULT_STATE_DIR, cgroup_root: str = DEFAULT_CGROUP_ROOT,
               lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S, *, purpose: str = "",
               read_only: bool = False, pod_subnet: str = DEFAULT_POD_SUBNET,
               registry_ca: str = "", insecure_registries: tuple[str, ...] = (),
               registry_auth_file: str = "") -> Executor:
    """A local executor on this machine's node layer (imported only now)."""
    from provisioner.executors.local import LocalExecutor
    from provisioner.node import NodeConfig, NodeLayer, RegistryOptions

    registries = RegistryOptions(ca_file=registry_ca, insecure=insecure_registries,
                                 auth_file=registry_auth_file)
    config = NodeConfig(state_dir=state_dir, cgroup_root=cgroup_root, pod_subnet=pod_subnet,
                        registries=registries)
    return LocalExecutor(NodeLayer(config, read_only=read_only), lock_timeout_s=lock_timeout,
                         purpose=purpose)


def find_daemon(target: str | None, state_dir: str, cgroup_root: str, *,
                tls_ca: str | None = None, tls_cert: str | None = None,
                tls_key: str | None = None, insecure: bool = False,
                socket: str = DEFAULT_SOCKET) -> RemoteExecutor | None:
    """The daemon to use, or None to act on this machine (see :func:`open_executor`)."""
    if target:
        from provisioner.executors.remote import RemoteExecutor

        return RemoteExecutor(target, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
                              insecure=insecure)
    if (state_dir, cgroup_root) != (DEFAULT_STATE_DIR, DEFAULT_CGROUP_ROOT):
        return None
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.stat(socket).st_mode):
            from provisioner.executors.remote import RemoteExecutor

            daemon = RemoteExecutor(f"unix://{socket}")
            if daemon.ping(PROBE_TIMEOUT_S):
                return daemon
            daemon.close()
    return None
