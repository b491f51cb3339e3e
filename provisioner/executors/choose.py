"""Which executor acts on a node: the one choice shared by the CLI and the Ansible module.

A ``--target`` daemon; else the daemon at the default socket when it answers (only with
the default state directory and cgroup root, which are the daemon's); else this machine
in-process.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING

from provisioner.daemon.context import DEFAULT_SOCKET
from provisioner.executors.local import LocalExecutor
from provisioner.node import DEFAULT_STATE_DIR, NodeConfig, NodeLayer
from provisioner.podnet import DEFAULT_POD_SUBNET

if TYPE_CHECKING:
    from provisioner.executors.remote import RemoteExecutor

    NodeExecutor = LocalExecutor | RemoteExecutor

DEFAULT_CGROUP_ROOT = "provisioner"
#: How long the default daemon socket may take to answer before acting locally.
PROBE_TIMEOUT_S = 2.0


@contextlib.contextmanager
def open_executor(target: str | None, state_dir: str = DEFAULT_STATE_DIR,
                  cgroup_root: str = DEFAULT_CGROUP_ROOT, lock_timeout: float = 10.0, *,
                  tls_ca: str | None = None, tls_cert: str | None = None,
                  tls_key: str | None = None, insecure: bool = False,
                  purpose: str = "", read_only: bool = False,
                  pod_subnet: str = DEFAULT_POD_SUBNET) -> Iterator[NodeExecutor]:
    """The executor to act through, closed afterwards: the daemon at ``target``; else
    the daemon at the default socket when it answers (only with the default state
    directory and cgroup root, which are the daemon's); else this machine in-process.

    The one place that makes this choice, for the CLI and the Ansible module alike.
    ``purpose`` is what the writer lock tells other processes (default: the command line).
    ``read_only`` (plan, status, check mode): acting on this machine creates nothing,
    not even the state directory, and a node never used looks empty. ``pod_subnet``:
    the pod bridge's subnet when acting on this machine (a daemon has its own).
    """
    remote = find_daemon(target, state_dir, cgroup_root, tls_ca=tls_ca, tls_cert=tls_cert,
                         tls_key=tls_key, insecure=insecure)
    if remote is not None:
        try:
            yield remote
        finally:
            remote.close()
        return
    config = NodeConfig(state_dir=state_dir, cgroup_root=cgroup_root, pod_subnet=pod_subnet)
    local = LocalExecutor(NodeLayer(config, read_only=read_only), lock_timeout_s=lock_timeout,
                          purpose=purpose)
    try:
        yield local
    finally:
        local.close()


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
