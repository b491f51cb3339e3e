"""A pod's ``/etc/hosts`` and ``/etc/resolv.conf``, bind-mounted into its containers.

Written once per pod into ``<state>/pods/<pod>/etc/`` and bind-mounted read-only over
the image's files by every container of the pod (as podman and Kubernetes do; runc
resolves the mount destination inside the container's root, so an image whose
``/etc/hosts`` is a symlink cannot redirect it onto the host):

- ``hosts``: localhost for IPv4 and IPv6, and the pod's name on its bridge address
  (on 127.0.1.1 for a loopback pod, on the node's hosts file for a host-network pod,
  which gets a copy of the node's file with its own name added when missing);
- ``resolv.conf``: the node's, without the loopback name servers a pod cannot reach
  from its own namespace (systemd-resolved's 127.0.0.53, a local dnsmasq); when that
  leaves none and ``/run/systemd/resolve/resolv.conf`` exists, that file's upstream
  servers instead. A host-network pod gets the node's file unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

HOST_RESOLV = "/etc/resolv.conf"
HOST_HOSTS = "/etc/hosts"
SYSTEMD_RESOLV = "/run/systemd/resolve/resolv.conf"
_LOCAL_HOSTS = ("127.0.0.1\tlocalhost\n"
                "::1\tlocalhost ip6-localhost ip6-loopback\n"
                "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n"
                "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def etc_dir(pod_dir: str) -> str:
    """Where a pod's hosts and resolv.conf live."""
    return os.path.join(pod_dir, "etc")


def hosts_text(pod: str, address: str | None, host_network: bool,
               host_hosts: str = HOST_HOSTS) -> str:
    """The pod's /etc/hosts (see the module docstring)."""
    if host_network:
        text = _read(host_hosts) or _LOCAL_HOSTS
        names = {word for line in text.splitlines()
                 for word in line.split("#", 1)[0].split()[1:]}
        return text if pod in names else text.rstrip("\n") + f"\n127.0.1.1\t{pod}\n"
    return _LOCAL_HOSTS + f"{address or '127.0.1.1'}\t{pod}\n"


def resolv_text(host_network: bool, host_resolv: str = HOST_RESOLV,
                systemd_resolv: str = SYSTEMD_RESOLV) -> str:
    """The pod's /etc/resolv.conf (see the module docstring)."""
    text = _read(host_resolv)
    if host_network:
        return text
    kept, dropped = _without_loopback(text)
    if dropped and not any(line.split()[:1] == ["nameserver"] for line in kept):
        upstream, _ = _without_loopback(_read(systemd_resolv))
        servers = [line for line in upstream if line.split()[:1] == ["nameserver"]]
        kept = [line for line in kept if line.split()[:1] != ["nameserver"]] + servers
    return "".join(line + "\n" for line in kept)


def _without_loopback(text: str) -> tuple[list[str], bool]:
    kept, dropped = [], False
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1 and _is_loopback(words[1]):
            dropped = True
            continue
        kept.append(line)
    return kept, dropped


def _is_loopback(text: str) -> bool:
    address = text.split("%", 1)[0]
    if ":" not in address and not address.startswith("127."):
        # Not IPv6, and no IPv4 address in 127.0.0.0/8 (whose first octet is spelt
        # "127": ipaddress refuses leading zeros), so without importing it (~1.5 ms).
        return False
    import ipaddress

    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


def write_etc_files(pod_dir: str, pod: str, address: str | None,
                    host_network: bool) -> list[dict[str, Any]]:
    """Write the pod's hosts and resolv.conf (atomically); the OCI mounts that put
    them in a container."""
    directory = etc_dir(pod_dir)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    mounts = []
    for name, text in (("hosts", hosts_text(pod, address, host_network)),
                       ("resolv.conf", resolv_text(host_network))):
        path = os.path.join(directory, name)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": path,
                       "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]})
    return mounts


def remove_etc_files(pod_dir: str) -> None:
    """Remove the pod's /etc files and their folder (missing is fine)."""
    directory = etc_dir(pod_dir)
    for name in ("hosts", "resolv.conf", "hosts.tmp", "resolv.conf.tmp"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(directory)


def add_mounts(bundle: str, mounts: list[dict[str, Any]]) -> None:
    """Add ``mounts`` to a bundle's ``config.json`` (replacing mounts with the same
    destination), atomically."""
    path = os.path.join(bundle, "config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    wanted = {m["destination"] for m in mounts}
    config["mounts"] = [m for m in config.get("mounts", [])
                        if m.get("destination") not in wanted] + mounts
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)
    os.replace(tmp, path)
