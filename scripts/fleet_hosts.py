"""The mechanics of one test host: a network namespace, a mount namespace, an sshd.

A host is anchored by a *holder* process that lives in the host's network namespace
(``/run/netns/<name>``), its own mount namespace (private propagation) and its own UTS
namespace (hostname = the inventory name). The holder bind-mounts a private directory of
the run over each of :data:`PRIVATE_PATHS`, so the role's default paths
(``/opt/provisioner``, ``/var/lib/provisioner`` ...) belong to that host alone, then
sleeps. ``sshd`` and everything started over SSH join the holder's namespaces with
``nsenter --target``, so stopping sshd never loses the namespace.

The holder is entered with ``nsenter --net=/run/netns/H unshare --mount --uts`` and not
``ip netns exec``: the latter remounts /sys, which hides /sys/fs/cgroup (the node layer
needs the real cgroup tree, which the kernel shares between the hosts; each host gets
its own cgroup root through its host vars instead).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

#: Paths the role writes to, made private to each host by a bind mount.
PRIVATE_PATHS = (
    "/opt/provisioner",
    "/var/lib/provisioner",
    "/run/provisioner",
    "/etc/provisioner",
    "/etc/systemd/system",
    "/var/log/provisioner",
    "/etc/cron.d",  # pull mode without systemd
)
SSHD = "/usr/sbin/sshd"
CGROUP_FS = Path("/sys/fs/cgroup")


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a program (never a shell string); raise with its stderr when it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): "
                           f"{done.stderr.strip() or done.stdout.strip()}")
    return done


def private_dir(host_dir: Path, path: str) -> Path:
    return host_dir / "root" / path.strip("/").replace("/", "_")


def hold(host_dir: Path, hostname: str) -> None:
    """The holder's body (already in the new namespaces): mount, name, then sleep."""
    for path in PRIVATE_PATHS:
        source = private_dir(host_dir, path)
        source.mkdir(parents=True, exist_ok=True)
        run("mount", "--bind", str(source), path)
    socket.sethostname(hostname)
    (host_dir / "holder.ready").write_text(str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


def start_holder(host_dir: Path, netns: str, hostname: str, script: Path) -> int:
    """Start the holder of a host; its pid once its mounts are in place."""
    for path in PRIVATE_PATHS:  # mount points in the root namespace (empty, unused there)
        Path(path).mkdir(parents=True, exist_ok=True)
    ready = host_dir / "holder.ready"
    ready.unlink(missing_ok=True)
    with open(host_dir / "holder.log", "ab") as log:
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", "unshare", "--mount", "--uts",
             "--propagation", "private", sys.executable, str(script), "_hold",
             str(host_dir), hostname],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 10
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the holder of {hostname} did not start; see "
                               f"{host_dir / 'holder.log'}")
        time.sleep(0.02)
    return proc.pid


def write_sshd_config(host_dir: Path, address: str, authorized_keys: Path) -> Path:
    key = host_dir / "ssh_host_ed25519_key"
    if not key.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    config = host_dir / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress {address}",
        "Port 22",
        f"HostKey {key}",
        f"PidFile {host_dir / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",  # the keys live under /tmp
        "MaxStartups 100:30:200",
        "MaxSessions 100",
        "Subsystem sftp internal-sftp",
        "LogLevel ERROR",
        "",
    ]))
    return config


def start_sshd(host_dir: Path, holder_pid: int, address: str) -> None:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    run("nsenter", f"--target={holder_pid}", "--mount", "--uts", "--net", "--",
        SSHD, "-f", str(host_dir / "sshd_config"), "-E", str(host_dir / "sshd.log"))
    wait_for_port(address, 22, 10.0)


def stop_sshd(host_dir: Path, net_inode: int | None) -> None:
    """Stop the host's sshd and every session it serves (Ansible's persistent
    connections included: the host is then really unreachable)."""
    pids = [pid for pid in pids_in_namespaces(net_inode, None) if _comm(pid) == "sshd"]
    kill_and_wait(pids)
    (host_dir / "sshd.pid").unlink(missing_ok=True)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def wait_for_port(address: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {address}:{port}") from None
            time.sleep(0.05)


def ns_inode(pid: int, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def pids_in_namespaces(net_inode: int | None, mnt_inode: int | None) -> list[int]:
    """Every process whose network or mount namespace is one of the host's."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if (net_inode and ns_inode(pid, "net") == net_inode) or \
                (mnt_inode and ns_inode(pid, "mnt") == mnt_inode):
            found.append(pid)
    return found


def cgroup_dirs(cgroup_root: str) -> list[Path]:
    """The host's cgroup root in every hierarchy (v1 controllers and the v2 mount)."""
    found = []
    for hierarchy in CGROUP_FS.iterdir():
        candidate = hierarchy / cgroup_root
        if candidate.is_dir():
            found.append(candidate)
    if (CGROUP_FS / "cgroup.procs").exists() and (CGROUP_FS / cgroup_root).is_dir():
        found.append(CGROUP_FS / cgroup_root)
    return found


def pids_in_cgroups(dirs: Iterable[Path]) -> list[int]:
    pids: set[int] = set()
    for top in dirs:
        for procs in top.rglob("cgroup.procs"):
            try:
                pids.update(int(line) for line in procs.read_text().split())
            except OSError:
                continue
    return sorted(pids)


def remove_cgroups(dirs: Iterable[Path]) -> None:
    for top in dirs:
        for sub in sorted((p for p in top.rglob("*") if p.is_dir()),
                          key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def kill_and_wait(pids: Iterable[int], timeout: float = 5.0) -> None:
    """SIGKILL the processes and wait until they are gone (reaped by their parent)."""
    pids = [p for p in pids if p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
            if time.monotonic() > deadline:
                raise RuntimeError(f"process {pid} did not end after SIGKILL")
            time.sleep(0.02)
        with contextlib.suppress(ChildProcessError):  # our own child: reap it here
            os.waitpid(pid, os.WNOHANG)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat.rsplit(")", 1)[1].split()[0]
