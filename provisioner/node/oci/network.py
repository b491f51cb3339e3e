"""The network namespace the containers of one pod share.

A pod's containers reach each other on 127.0.0.1, as in any pod: each container's
runtime config joins one *named* network namespace (``ip netns``), made when the pod is
allocated and deleted when it is freed. A named namespace is a bind mount of the
namespace at ``/run/netns/<name>``, so it needs no process to hold it (unlike a cell's
namespace holder: a pod's containers come and go, the pod's network stays), survives a
daemon restart, and is listed by ``ip netns``. Only loopback is in it, up.

Names are ``prov-<cgroup root>-<pod>``: the cgroup root keeps two provisioner
instances on one host (tests, say) apart, and both parts are DNS labels, so the name is
a safe file name.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from provisioner.errors import NodeError, Unavailable
from provisioner.names import check_dns_label
from provisioner.node.oci.containers import run_program

NETNS_DIR = "/run/netns"


def netns_name(root_name: str, pod: str) -> str:
    return (f"prov-{check_dns_label(root_name, 'cgroup root name')}-"
            f"{check_dns_label(pod, 'pod name')}")


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def _ip() -> str:
    found = shutil.which("ip")
    if found is None:
        raise Unavailable("ip is not installed (apt-get install iproute2): pods need it")
    return found


def is_live(name: str) -> bool:
    """The namespace file is there and a namespace is mounted on it (after a reboot on
    a /run that is not a tmpfs, only the empty file is left)."""
    path = netns_path(name)
    try:
        return os.stat(path).st_dev != os.stat(NETNS_DIR).st_dev
    except FileNotFoundError:
        return False


def ensure_netns(name: str) -> str:
    """Make the pod's namespace (loopback up) unless it is live; its path."""
    if is_live(name):
        return netns_path(name)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(netns_path(name))  # a stale file: ip netns add would refuse it
    ip = _ip()
    run_program([ip, "netns", "add", name], f"creating network namespace {name}")
    try:
        run_program([ip, "-n", name, "link", "set", "lo", "up"],
                    f"bringing up loopback in {name}")
    except NodeError:
        remove_netns(name)
        raise
    return netns_path(name)


def remove_netns(name: str) -> None:
    """Delete the namespace (missing is fine)."""
    if is_live(name):
        run_program([_ip(), "netns", "delete", name], f"deleting network namespace {name}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(netns_path(name))
