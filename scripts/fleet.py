#!/usr/bin/env python3
"""A fleet of test hosts on this machine, reachable over SSH, for the Ansible collection.

    python scripts/fleet.py create 3 [--run-dir DIR]   # prints the run directory
    python scripts/fleet.py stop-sshd h2 / start-sshd h2 [--run-dir DIR]
    python scripts/fleet.py remove [--run-dir DIR]

Each host is a network namespace with its own address on a private /24 (10.213.K.0/24,
K chosen free) behind a bridge in the root namespace, its own mount and UTS namespaces
(the role's default paths are private bind mounts, see scripts/fleet_hosts.py) and its
own sshd (key auth only, with a key made here). The run directory holds the state
(``fleet.json``), the key, an ``ansible.cfg`` and an inventory with per-host cgroup
roots: ``ANSIBLE_CONFIG=DIR/ansible.cfg ansible-playbook ...`` reaches the fleet.
``remove`` closes Ansible's SSH connections, kills every process of the hosts
(namespaces and cgroup roots), removes the cgroups, namespaces, bridge and run directory.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import random
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fleet_hosts as hosts

SUBNET_PREFIX = "10.213"
SCRIPT = Path(__file__).resolve()
LOCK_FILE = "/run/lock/provisioner-fleet.lock"


@dataclass
class Host:
    name: str
    netns: str
    veth: str
    address: str
    cgroup_root: str
    holder_pid: int = 0
    net_inode: int | None = None
    mnt_inode: int | None = None


@dataclass
class Fleet:
    run_dir: str
    subnet: int
    bridge: str
    hosts: list[Host] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet}.1"

    def save(self) -> None:
        Path(self.run_dir, "fleet.json").write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, run_dir: str) -> Fleet:
        data = json.loads(Path(run_dir, "fleet.json").read_text())
        data["hosts"] = [Host(**h) for h in data["hosts"]]
        return cls(**data)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        names = ", ".join(h.name for h in self.hosts)
        names = ", ".join(h.name for h in self.hosts)
        raise SystemExit(f"no host {name!r} in this fleet ({names})")

    def host_dir(self, host: Host) -> Path:
        return Path(self.run_dir, "hosts", host.name)


def _free_subnet() -> int:
    used = hosts.run("ip", "-o", "-4", "addr").stdout
    candidates = list(range(2, 250))
    random.shuffle(candidates)
    for k in candidates:
        if f" {SUBNET_PREFIX}.{k}." not in used and \
                not Path(f"/sys/class/net/pfb{k}").exists():
            return k
    raise RuntimeError(f"no free {SUBNET_PREFIX}.K.0/24 subnet")


def create(count: int, run_dir: str | None) -> Fleet:
    if not 1 <= count <= 200:
        raise SystemExit("a fleet has 1 to 200 hosts")
    with open(LOCK_FILE, "w") as lock:  # two fleets made at once must not pick one subnet
        fcntl.flock(lock, fcntl.LOCK_EX)
        subnet = _free_subnet()
        bridge = f"pfb{subnet}"
        hosts.run("ip", "link", "add", bridge, "type", "bridge")
    base = Path(run_dir or f"/tmp/provisioner-fleet-{subnet}")
    base.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(run_dir=str(base), subnet=subnet, bridge=bridge)
    fleet.save()
    try:
        hosts.run("ip", "addr", "add", f"{fleet.gateway}/24", "dev", bridge)
        hosts.run("ip", "link", "set", bridge, "up")
        key = base / "id_ed25519"
        hosts.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet", "-f", str(key))
        authorized = base / "authorized_keys"
        shutil.copy(f"{key}.pub", authorized)
        tag = uuid.uuid4().hex[:6]
        for i in range(1, count + 1):
            _add_host(fleet, i, tag, authorized)
            fleet.save()
        write_ansible_files(fleet)
    except BaseException:
        remove(fleet)
        raise
    return fleet


def _add_host(fleet: Fleet, index: int, tag: str, authorized: Path) -> None:
    host = Host(name=f"h{index}", netns=f"pfleet-{fleet.subnet}-{index}",
                veth=f"pfv{fleet.subnet}x{index}",
                address=f"{SUBNET_PREFIX}.{fleet.subnet}.{10 + index}",
                cgroup_root=f"fleet-{tag}-h{index}")
    host_dir = fleet.host_dir(host)
    host_dir.mkdir(parents=True, exist_ok=True)
    hosts.run("ip", "netns", "add", host.netns)
    fleet.hosts.append(host)  # recorded before anything else can fail, for remove()
    hosts.run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
              "netns", host.netns)
    hosts.run("ip", "link", "set", host.veth, "master", fleet.bridge, "up")
    inside = ("ip", "-n", host.netns)
    hosts.run(*inside, "link", "set", "lo", "up")
    hosts.run(*inside, "addr", "add", f"{host.address}/24", "dev", "eth0")
    hosts.run(*inside, "link", "set", "eth0", "up")
    hosts.run(*inside, "route", "add", "default", "via", fleet.gateway)
    host.holder_pid = hosts.start_holder(host_dir, host.netns, host.name, SCRIPT)
    host.net_inode = hosts.ns_inode(host.holder_pid, "net")
    host.mnt_inode = hosts.ns_inode(host.holder_pid, "mnt")
    hosts.write_sshd_config(host_dir, host.address, authorized)
    hosts.start_sshd(host_dir, host.holder_pid, host.address)


def write_ansible_files(fleet: Fleet) -> None:
    base = Path(fleet.run_dir)
    inventory = base / "inventory"
    (inventory / "group_vars").mkdir(parents=True, exist_ok=True)
    lines = ["[nodes]"]
    lines += [f"{h.name} ansible_host={h.address} daemon_cgroup_root={h.cgroup_root}"
              for h in fleet.hosts]
    (inventory / "hosts.ini").write_text("\n".join(lines) + "\n")
    (inventory / "group_vars" / "nodes.yml").write_text(
        "# Written by scripts/fleet.py. After the bootstrap, modules run in the node's\n"
        "# virtualenv, where the provisioner package is installed.\n"
        "ansible_user: root\n"
        f"ansible_ssh_private_key_file: {base / 'id_ed25519'}\n"
        "ansible_python_interpreter: /opt/provisioner/bin/python\n")
    (base / "ansible.cfg").write_text("\n".join([
        "[defaults]",
        f"inventory = {inventory / 'hosts.ini'}",
        f"forks = {max(5, len(fleet.hosts))}",
        "host_key_checking = False",
        "retry_files_enabled = False",
        "",
        "[ssh_connection]",
        "pipelining = True",
        f"control_path_dir = {base / 'cp'}",
        "ssh_args = -o ControlMaster=auto -o ControlPersist=120s "
        f"-o UserKnownHostsFile={base / 'known_hosts'} -o StrictHostKeyChecking=no",
        "",
    ]))


def close_ssh_connections(fleet: Fleet) -> None:
    """Ask every SSH control master Ansible left (ControlPersist) to exit."""
    control_dir = Path(fleet.run_dir, "cp")
    if not control_dir.is_dir():
        return
    for sock in control_dir.iterdir():
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "fleet-host"],
                       capture_output=True, check=False, timeout=10)


def remove(fleet: Fleet) -> None:
    """Remove everything of the fleet; a host that resists does not stop the others
    from being removed (the first error is raised at the end, the run dir then kept)."""
    close_ssh_connections(fleet)
    errors: list[Exception] = []
    for host in fleet.hosts:
        try:
            _remove_host(host)
        except (RuntimeError, OSError) as error:
            errors.append(error)
    if Path(f"/sys/class/net/{fleet.bridge}").exists():
        hosts.run("ip", "link", "del", fleet.bridge)
    if errors:
        raise errors[0]
    shutil.rmtree(fleet.run_dir, ignore_errors=True)


def _remove_host(host: Host) -> None:
    cgroups = hosts.cgroup_dirs(host.cgroup_root)
    pids = hosts.pids_in_namespaces(host.net_inode, host.mnt_inode)
    hosts.kill_and_wait(pids + hosts.pids_in_cgroups(cgroups))
    hosts.remove_cgroups(cgroups)
    if Path(f"/run/netns/{host.netns}").exists():
        hosts.run("ip", "netns", "del", host.netns)
    # deleting the namespace deletes the veth pair too, a moment later
    deadline = time.monotonic() + 5
    while Path(f"/sys/class/net/{host.veth}").exists():
        if time.monotonic() > deadline:
            hosts.run("ip", "link", "del", host.veth, check=False)
            break
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("create", help="make N hosts; print the run directory")
    make.add_argument("count", type=int)
    make.add_argument("--run-dir")
    for name in ("remove", "stop-sshd", "start-sshd"):
        cmd = sub.add_parser(name)
        if name != "remove":
            cmd.add_argument("host")
        cmd.add_argument("--run-dir", required=True)
    hold = sub.add_parser("_hold")  # internal: the body of a host's holder process
    hold.add_argument("host_dir", type=Path)
    hold.add_argument("hostname")
    args = parser.parse_args()
    if args.command == "_hold":
        hosts.hold(args.host_dir, args.hostname)
    elif args.command == "create":
        print(create(args.count, args.run_dir).run_dir)
    else:
        fleet = Fleet.load(args.run_dir)
        if args.command == "remove":
            remove(fleet)
        else:
            host = fleet.host(args.host)
            if args.command == "stop-sshd":
                hosts.stop_sshd(fleet.host_dir(host), host.net_inode)
            else:
                hosts.start_sshd(fleet.host_dir(host), host.holder_pid, host.address)
    return 0


if __name__ == "__main__":
    sys.exit(main())
