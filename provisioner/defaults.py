"""Default values shared across the layers: one place, imported by everyone.

The CLI, the Ansible code, the executors, the daemon and the node layer all need the
same state directory, cgroup root, daemon socket and timeouts. They take them from here
rather than from each other, so that no layer reaches up (the CLI into ``node/`` for the
state directory, the executors into ``daemon/`` for the socket). This module imports
nothing of the package: every layer may import it.

The Ansible collection's argument specs repeat a few of these values (modules run
without this package on the controller); ``tests/ansible/test_support.py`` checks that
they agree.
"""

from __future__ import annotations

#: Where a node keeps its SQLite store, lock, logs, shim status files and drivers.
DEFAULT_STATE_DIR = "/var/lib/provisioner"
#: The cgroup subtree (under every hierarchy) that holds the cells.
DEFAULT_CGROUP_ROOT = "provisioner"
#: The daemon's unix socket (mode 0600, owner root).
DEFAULT_SOCKET = "/run/provisioner/provisioner.sock"
#: The same socket as a ``--target``: what the CLI and the Ansible modules try first.
DEFAULT_TARGET = f"unix://{DEFAULT_SOCKET}"
#: The pod bridge's IPv4 subnet (``--pod-subnet``); podman's default is 10.88.0.0/16.
DEFAULT_POD_SUBNET = "10.89.0.0/24"

#: Environment variables that override the defaults of the command line.
ENV_TARGET = "PROVISIONER_TARGET"
ENV_STATE_DIR = "PROVISIONER_STATE_DIR"
ENV_CGROUP_ROOT = "PROVISIONER_CGROUP_ROOT"
ENV_POD_SUBNET = "PROVISIONER_POD_SUBNET"
#: ``--registry-ca``: a PEM file of CAs trusted for registry pulls besides the system's.
ENV_REGISTRY_CA = "PROVISIONER_REGISTRY_CA"
#: ``--insecure-registry``, comma-separated: registries pulled from without verified TLS.
ENV_INSECURE_REGISTRIES = "PROVISIONER_INSECURE_REGISTRIES"

#: How long to wait for another process's (or thread's) writer lock, in seconds.
DEFAULT_LOCK_TIMEOUT_S = 10.0
#: How long the daemon at the default socket may take to answer before the CLI and
#: the modules act on this machine in-process instead.
DAEMON_PROBE_TIMEOUT_S = 2.0
#: Deadline of one unary call to a daemon (GetState, Plan, a non-follow GetLogs).
RPC_TIMEOUT_S = 120.0

#: Steps an apply runs at once when the caller says 0.
DEFAULT_PARALLELISM = 8
#: The manifest set of a Plan request that names none.
DEFAULT_MANIFEST_SET = "default"

#: The daemon's largest request or response message, in MiB.
DEFAULT_MAX_MESSAGE_MB = 8
#: Calls a daemon serves at once (one worker thread each).
DEFAULT_MAX_CONCURRENT_RPCS = 128
