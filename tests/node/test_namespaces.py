"""Namespace holders of isolated cells, against the real kernel.

Each test runs under its own cgroup root ``provisioner-test-<random>`` and state dir;
teardown stops the holders (killing the holder kills its pid namespace) and removes
the root even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.errors import FailedPrecondition, InvalidArgument, UnsafeName
from provisioner.model import CellLimits
from provisioner.node.cgroups.layout import (
    HOLDER_LEAF,
    CgroupDriver,
    detect_layout,
    executable_leaf,
    make_driver,
)
from provisioner.node.process.namespaces import (
    cell_hostname,
    holder_alive,
    nsenter_prefix,
    start_holder,
    stop_holder,
)
from provisioner.node.types import NamespaceTarget
from provisioner.records import replace

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.fixture
def driver() -> Iterator[CgroupDriver]:
    drv = make_driver(detect_layout(), f"provisioner-test-{secrets.token_hex(4)}")
    try:
        yield drv
    finally:
        for _ in range(100):
            pids = drv.pids("") if drv.exists("") else set()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        for top in drv.cell_dirs(""):
            for dirpath, _d, _f in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)


def holder_for(driver: CgroupDriver, cell: str, tmp_path: Path, *, process: bool = True,
               network: bool = True) -> NamespaceTarget:
    parts = cell.split("/")
    for i in range(1, len(parts) + 1):
        driver.create("/".join(parts[:i]), CellLimits())
    leaf = driver.create_leaf(cell, HOLDER_LEAF)
    return start_holder(cell, leaf, process, network, str(tmp_path))


def run_in(target: NamespaceTarget, *argv: str) -> str:
    done = subprocess.run([*nsenter_prefix(target), "--", *argv], capture_output=True,
                          text=True, timeout=10, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_isolated_cell_has_its_own_hostname_pid1_proc_and_loopback(
        driver: CgroupDriver, tmp_path: Path) -> None:
    target = holder_for(driver, "web", tmp_path)
    try:
        assert target.namespaces == ("pid", "mount", "ipc", "uts", "net")
        assert holder_alive(target)
        assert run_in(target, "hostname").strip() == "web"
        assert socket.gethostname() != "web"  # the host kept its name
        links = run_in(target, "ip", "-o", "link").splitlines()
        assert len(links) == 1 and links[0].split(":")[1].strip() == "lo"
        flags = links[0].split("<", 1)[1].split(">", 1)[0].split(",")
        assert "LOOPBACK" in flags and "UP" in flags
        ps = run_in(target, "ps", "-eo", "pid=,args=").splitlines()
        first = ps[0].split(None, 1)
        assert first[0] == "1" and "provisioner.node.process.holder" in first[1]
        assert "provisioner.node.process.holder" in run_in(target, "cat", "/proc/1/cmdline")
        # The fresh /proc shows only the cell's processes: the holder and this ls.
        entries = run_in(target, "ls", "/proc").split()
        assert sorted(int(e) for e in entries if e.isdigit())[0] == 1
        assert len([e for e in entries if e.isdigit()]) <= 3
        # The holder sits in the cell's _holder leaf (it joined before unsharing).
        with open(f"/proc/{target.holder_pid}/cgroup") as fh:
            assert f"cpu:/{driver.root_name}/web/_holder\n" in fh.read()
        assert target.holder_pid in driver.pids("web")
    finally:
        began = time.monotonic()
        assert stop_holder(target, driver.leaf("web", HOLDER_LEAF))
    assert time.monotonic() - began < 4  # SIGTERM sufficed: no SIGKILL after 5 s
    assert not holder_alive(target)
    log = (tmp_path / "run" / "_cells" / "web" / "holder.log").read_text()
    assert "Traceback" not in log and "holder:" not in log, log
    assert driver.pids("web") == set()
    assert driver.remove("web")
    assert stop_holder(target) is False  # already gone


def test_nested_cell_hostname_and_shared_namespaces(driver: CgroupDriver,
                                                    tmp_path: Path) -> None:
    assert cell_hostname("shop/cache") == "cache"
    target = holder_for(driver, "shop/cache", tmp_path)
    try:
        assert run_in(target, "hostname").strip() == "cache"
        # Two commands of the cell share its namespaces: a file system change made in
        # one (a tmpfs mounted privately) is seen by the next, and not by the host.
        run_in(target, "mount", "-t", "tmpfs", "cellonly", "/mnt")
        assert "cellonly" in run_in(target, "cat", "/proc/self/mounts")
        with open("/proc/self/mounts") as fh:
            assert "cellonly" not in fh.read()
    finally:
        stop_holder(target)


def test_holder_reaps_orphans_and_survives_them(driver: CgroupDriver,
                                                tmp_path: Path) -> None:
    target = holder_for(driver, "reaper", tmp_path, network=False)
    try:
        assert "net" not in target.namespaces
        assert (os.readlink(f"/proc/{target.holder_pid}/ns/net")
                == os.readlink("/proc/self/ns/net"))
        # The shell exits at once; its background sleeps become orphans of pid 1.
        run_in(target, "sh", "-c", "sleep 0.1 & sleep 0.1 & exit 0")
        time.sleep(0.4)
        states = run_in(target, "ps", "-eo", "pid=,stat=").split("\n")
        assert not [s for s in states if s.strip().endswith("Z")], states
        assert holder_alive(target)
    finally:
        stop_holder(target)


def test_network_only_isolation(driver: CgroupDriver, tmp_path: Path) -> None:
    target = holder_for(driver, "netonly", tmp_path, process=False, network=True)
    try:
        assert target.namespaces == ("net",)
        assert run_in(target, "hostname").strip() == socket.gethostname()
        assert [ln.split(":")[1].strip() for ln in
                run_in(target, "ip", "-o", "link").splitlines()] == ["lo"]
    finally:
        stop_holder(target)


def test_identity_and_refusals(driver: CgroupDriver, tmp_path: Path) -> None:
    driver.create("iso", CellLimits())
    leaf = driver.create_leaf("iso", HOLDER_LEAF)
    with pytest.raises(InvalidArgument, match="not isolated"):
        start_holder("iso", leaf, False, False, str(tmp_path))
    with pytest.raises(UnsafeName):
        start_holder("../iso", leaf, True, False, str(tmp_path))
    target = start_holder("iso", leaf, True, False, str(tmp_path))
    try:
        with pytest.raises(FailedPrecondition, match="already holds"):
            start_holder("iso", leaf, True, False, str(tmp_path))
        # A pid with another start time is some other process, never "our" holder.
        impostor = replace(target, holder_start_time=target.holder_start_time + 1)
        assert not holder_alive(impostor)
        assert stop_holder(impostor) is False
        assert holder_alive(target)
        # An executable joins its own leaf first, then enters the namespaces (as the
        # shim does), so the command nsenter forks is inside the leaf too.
        exe = driver.create_leaf("iso", executable_leaf("probe"))
        join = ("import os, sys\n"
                "for d in sys.argv[1].split(':'):\n"
                "    fd = os.open(d + '/cgroup.procs', os.O_WRONLY)\n"
                "    os.write(fd, b'0'); os.close(fd)\n"
                "os.execvp(sys.argv[2], sys.argv[2:])\n")
        proc = subprocess.Popen([sys.executable, "-c", join, ":".join(exe.dirs),
                                 *nsenter_prefix(target), "--", "sleep", "30"])
        try:
            inside: set[int] = set()
            procs_file = os.path.join(exe.dirs[0], "cgroup.procs")
            deadline = time.monotonic() + 5
            while len(Path(procs_file).read_text().split()) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            inside = {int(p) for p in Path(procs_file).read_text().split()}
            assert proc.pid in inside and len(inside) == 2  # nsenter and its sleep
            assert run_in(target, "pgrep", "-x", "sleep").strip() != ""
        finally:
            # Kill the command before nsenter: a child whose nsenter died is reparented
            # to the *host's* reaper (nsenter lives outside the pid namespace), and the
            # holder cannot finish exiting until that reaper has collected it.
            for pid in inside - {proc.pid}:
                os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=5)
    finally:
        stop_holder(target)
