"""Containers run with real runc under the compiled shim: bundles (an overlay root file
system and config.json), the command, stop and restart, and cleaning up.

The image is busybox-static copied into a temporary directory with applet symlinks.
Every test works on a cgroup root of its own and removes every process, runc
container, mount and cgroup directory it made, also when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import FailedPrecondition, InvalidArgument, NotFound, UnsafeName
from provisioner.node.cgroups.layout import CgroupDriver, detect_layout, make_driver
from provisioner.node.oci.containers import (
    bundle_dir,
    check_container_id,
    container_command,
    prepare_bundle,
    remove_bundle,
    remove_pod_dir,
    remove_runc_cgroups,
    runc_root,
    runtime_config,
)
from provisioner.node.process import leaf as leafops
from provisioner.node.process.logs import STDERR, STDOUT, LogReader
from provisioner.node.process.procs import process_alive
from provisioner.node.process.shimspec import ShimSpec, ShimStatus, read_status
from provisioner.node.process.supervise import launch, request_stop, shim_alive
from provisioner.node.types import LeafCgroup

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
RUNC = shutil.which("runc") or shutil.which("runc", path="/usr/sbin:/sbin")
APPLETS = ("sh", "echo", "sleep", "cat", "hostname", "ps", "id", "ip", "ls", "touch", "mkdir",
           "rm", "true")
ENV = ["PATH=/bin", "GREETING=hello there"]

needs_runc = pytest.mark.skipif(
    os.geteuid() != 0 or RUNC is None or not os.path.exists(BUSYBOX),
    reason="needs root, runc and busybox-static")


def wait_until(pred: Callable[[], Any], what: str, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def mounted_at_or_below(path: str) -> list[str]:
    real = os.path.realpath(path)
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == real or p.startswith(real + "/")]


def runc(state_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert RUNC is not None
    return subprocess.run([RUNC, "--root", runc_root(state_dir), *args],
                          capture_output=True, text=True, timeout=30, check=False)


def runc_containers(state_dir: str) -> list[dict[str, Any]]:
    if not os.path.isdir(runc_root(state_dir)):
        return []
    return json.loads(runc(state_dir, "list", "--format", "json").stdout) or []


def make_image(path: Path) -> str:
    (path / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    for applet in APPLETS:
        (path / "bin" / applet).symlink_to("busybox")
    path.chmod(0o755)
    return str(path)


def tree(path: str) -> dict[str, tuple[int, int]]:
    """Every entry below PATH with its mode and size: to see that nothing changed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), path)] = (st.st_mode, st.st_size)
    return out


class Env:
    """A cgroup root, a state directory and an image of its own; cleans up everything."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.state = str(tmp_path / "state")
        self.image = make_image(tmp_path / "image")
        self.root = f"ptest-{uuid.uuid4().hex[:8]}"
        self.driver: CgroupDriver = make_driver(detect_layout(), self.root)
        self.statuses: list[str] = []
        self.bundles: list[tuple[str, str]] = []

    def cgroups_path(self, pod: str, name: str) -> str:
        return f"/{self.root}/_x.{pod}.{name}/ctr"

    def leaf(self, pod: str, name: str) -> LeafCgroup:
        return self.driver.create_leaf("", f"_x.{pod}.{name}")

    def bundle(self, name: str, args: list[str], pod: str = "p", **kw: Any) -> str:
        self.bundles.append((pod, name))
        kw.setdefault("rootfs_lower", self.image)
        kw.setdefault("env", ENV)
        kw.setdefault("cwd", "/")
        kw.setdefault("hostname", "box")
        return prepare_bundle(self.state, pod, name, args=args,
                              cgroups_path=self.cgroups_path(pod, name), **kw)

    def spec(self, name: str, bundle: str, pod: str = "p", **kw: Any) -> ShimSpec:
        process = f"{pod}.{name}"
        status_file = str(self.tmp / "run" / f"{process}.json")
        self.statuses.append(status_file)
        kw.setdefault("stop_grace_s", 0.3)
        return ShimSpec(name=process, command=container_command(self.state, bundle, process),
                        leaf=self.leaf(pod, name), log_dir=str(self.tmp / "logs" / process),
                        status_file=status_file, **kw)

    def start(self, name: str, args: list[str], pod: str = "p",
              bundle_kw: dict[str, Any] | None = None, **kw: Any) -> tuple[ShimSpec, ShimStatus]:
        spec = self.spec(name, self.bundle(name, args, pod, **(bundle_kw or {})), pod, **kw)
        return spec, launch(spec)

    def cleanup(self) -> None:
        for status_file in self.statuses:
            with contextlib.suppress(Exception):
                st = read_status(status_file)
                if shim_alive(st):
                    os.kill(st.shim_pid, signal.SIGKILL)
        self._kill_tree()
        for ctr in runc_containers(self.state):
            runc(self.state, "delete", "--force", ctr["id"])
        for pod, name in self.bundles:
            with contextlib.suppress(Exception):
                remove_bundle(self.state, pod, name)
        for mount_point in sorted(mounted_at_or_below(str(self.tmp)), key=len, reverse=True):
            subprocess.run(["umount", "-l", mount_point], check=False)
        with contextlib.suppress(Exception):
            remove_runc_cgroups(self.root)
        # Every hierarchy, not only the driver's: runc makes its cgroups in all of them.
        for top in (os.path.join("/sys/fs/cgroup", h, self.root)
                    for h in os.listdir("/sys/fs/cgroup")):
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)

    def _kill_tree(self) -> None:
        tops = [os.path.join("/sys/fs/cgroup", h, self.root) for h in os.listdir("/sys/fs/cgroup")]
        for _ in range(100):
            pids = {int(p) for top in tops for dirpath, _, files in os.walk(top)
                    if "cgroup.procs" in files
                    for p in Path(dirpath, "cgroup.procs").read_text().split()}
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def root_dirs(self) -> list[str]:
        """Every directory below the test's root in every hierarchy."""
        return [dirpath for h in os.listdir("/sys/fs/cgroup")
                for dirpath, _, _ in os.walk(os.path.join("/sys/fs/cgroup", h, self.root))
                if dirpath != os.path.join("/sys/fs/cgroup", h, self.root)]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    made = Env(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


def lines(spec: ShimSpec, channel: str | None = None) -> list[str]:
    return [x.text for x in LogReader(spec.log_dir).read(channel=channel)]


def wait_output(spec: ShimSpec, text: str, channel: str | None = None) -> list[str]:
    return wait_until(lambda: text in lines(spec, channel) and lines(spec, channel),
                      f"{text!r} in the output of {spec.name}")


def container_pid(state_dir: str, container_id: str) -> int:
    done = runc(state_dir, "state", container_id)
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert state["status"] == "running", state
    return int(state["pid"])


# --- without runc: the config and the names ------------------------------------------

def config(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(args=["sh"], env=ENV, cwd="/", cgroups_path="/r/_x.a/ctr",
                                hostname="box")
    return runtime_config(**{**base, **kw})


def test_the_config_is_runc_specs_with_a_supervised_process(tmp_path: Path) -> None:
    c = config(args=["sh", "-c", "echo hi"], uid=7, gid=8, hostname="web-1.local")
    assert c["ociVersion"] == "1.0.2"
    assert c["process"]["terminal"] is False
    assert c["process"]["args"] == ["sh", "-c", "echo hi"] and c["process"]["env"] == ENV
    assert c["process"]["user"] == {"uid": 7, "gid": 8} and c["process"]["cwd"] == "/"
    assert "rlimits" not in c["process"]  # none can exceed the host's hard limits
    assert c["root"] == {"path": "rootfs", "readonly": False}
    assert c["hostname"] == "web-1.local"
    assert c["linux"]["cgroupsPath"] == "/r/_x.a/ctr"
    assert {n["type"] for n in c["linux"]["namespaces"]} == {
        "pid", "mount", "ipc", "uts", "network", "cgroup"}
    assert "seccomp" not in c["linux"]
    if RUNC is None:
        return
    # The rest is what `runc spec` writes.
    subprocess.run([RUNC, "spec", "--bundle", str(tmp_path)], check=True)
    ref = json.loads((tmp_path / "config.json").read_text())
    assert c["mounts"] == ref["mounts"]
    assert c["process"]["capabilities"] == ref["process"]["capabilities"]
    assert c["process"]["noNewPrivileges"] == ref["process"]["noNewPrivileges"]
    assert c["linux"]["maskedPaths"] == ref["linux"]["maskedPaths"]
    assert c["linux"]["readonlyPaths"] == ref["linux"]["readonlyPaths"]
    assert c["linux"]["resources"] == ref["linux"]["resources"]


@pytest.mark.parametrize("kw", [
    {"args": []}, {"args": ["a\0b"]}, {"args": [""]}, {"env": ["NOEQUALS"]}, {"env": ["=x"]},
    {"cwd": "relative"}, {"uid": -1}, {"gid": 2**32}, {"uid": True},
    {"hostname": ""}, {"hostname": "a_b"}, {"hostname": "x" * 65}, {"hostname": "-a"},
    {"cgroups_path": "rel/ctr"}, {"cgroups_path": "/a/../b"}, {"cgroups_path": "/a//b"},
    {"cgroups_path": "/"}, {"cgroups_path": "/a/./b"},
])
def test_bad_config_values_are_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        config(**kw)


@pytest.mark.parametrize("pod, container", [
    ("..", "c"), ("p", ".."), ("a/b", "c"), ("p", "c/../../x"), ("", "c"), ("p", ""),
    ("-p", "c"), ("p", "x" * 64), ("p.q", "c"), ("/abs", "c"),
])
def test_names_that_could_escape_are_refused(tmp_path: Path, pod: str, container: str) -> None:
    state = str(tmp_path / "state")
    with pytest.raises(UnsafeName):
        bundle_dir(state, pod, container)
    with pytest.raises(UnsafeName):
        prepare_bundle(state, pod, container, rootfs_lower=str(tmp_path), args=["sh"],
                       env=[], cwd="/", cgroups_path="/r/_x.a/ctr", hostname="box")
    with pytest.raises(UnsafeName):
        remove_bundle(state, pod, container)
    assert not os.path.exists(state)


def test_paths_and_ids(tmp_path: Path) -> None:
    assert runc_root("/var/lib/p") == "/var/lib/p/runc"
    assert bundle_dir("/var/lib/p", "web", "nginx") == "/var/lib/p/pods/web/nginx"
    for good in ("web.nginx", "a", "a_b+c-d.e"):
        assert check_container_id(good) == good
    for bad in ("", ".", "..", "a/b", "a b", "a,b", "x" * 1025, "a\nb", "$(x)"):
        with pytest.raises(InvalidArgument):
            check_container_id(bad)
        with pytest.raises(InvalidArgument):
            container_command(str(tmp_path), str(tmp_path / "b"), bad)
    with pytest.raises(InvalidArgument):
        container_command(str(tmp_path), "relative/bundle", "p.c")


@needs_runc
def test_the_command_quotes_every_path(tmp_path: Path) -> None:
    state = str(tmp_path / "it's state")
    cmd = container_command(state, f"{state}/pods/p/c", "p.c")
    done = subprocess.run(["sh", "-c", f"set -- {cmd.split(';')[2].removeprefix(' exec ')}; "
                           'for a; do echo "$a"; done'], capture_output=True, text=True,
                          check=True)
    assert done.stdout.splitlines()[1:] == ["--root", f"{state}/runc", "--log",
                                            f"{state}/pods/p/c/runc.log", "--log-format",
                                            "json", "run", "--bundle", f"{state}/pods/p/c",
                                            "p.c"]


# --- bundles ---------------------------------------------------------------------------

@needs_runc
def test_bad_rootfs_is_refused_before_anything_is_made(env: Env, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        env.bundle("c", ["sh"], rootfs_lower=str(tmp_path / "missing"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArgument, match="not a directory"):
        env.bundle("c", ["sh"], rootfs_lower=str(tmp_path / "file"))
    with pytest.raises(InvalidArgument, match="absolute"):
        env.bundle("c", ["sh"], rootfs_lower="image")
    (tmp_path / "a,b").mkdir()
    with pytest.raises(InvalidArgument, match="overlay"):
        env.bundle("c", ["sh"], rootfs_lower=str(tmp_path / "a,b"))
    assert not os.path.exists(bundle_dir(env.state, "p", "c"))


@needs_runc
def test_prepare_again_starts_from_a_clean_bundle(env: Env) -> None:
    bundle = env.bundle("c", ["sh"])
    rootfs = os.path.join(bundle, "rootfs")
    assert mounted_at_or_below(bundle) == [rootfs]
    assert sorted(os.listdir(bundle)) == ["config.json", "rootfs", "upper", "work"]
    Path(rootfs, "scribble").write_text("left by a crashed run")
    # A leftover mounted twice over (a crash between two prepares, say).
    subprocess.run(["mount", "--bind", rootfs, rootfs], check=True)
    assert mounted_at_or_below(bundle) == [rootfs, rootfs]
    again = env.bundle("c", ["sh", "-c", "true"], hostname="other")
    assert again == bundle
    assert mounted_at_or_below(bundle) == [rootfs]
    assert not os.path.exists(os.path.join(rootfs, "scribble"))
    assert os.path.exists(os.path.join(rootfs, "bin", "busybox"))
    cfg = json.loads(Path(bundle, "config.json").read_text())
    assert cfg["hostname"] == "other" and cfg["process"]["args"] == ["sh", "-c", "true"]
    remove_bundle(env.state, "p", "c")
    assert mounted_at_or_below(bundle) == [] and not os.path.exists(bundle)
    remove_bundle(env.state, "p", "c")  # missing is fine
    assert remove_pod_dir(env.state, "p") and not os.path.exists(os.path.dirname(bundle))
    assert remove_pod_dir(env.state, "p")


# --- running containers ----------------------------------------------------------------

@needs_runc
def test_a_container_runs_isolated_below_the_leaf_and_writes_to_its_own_layer(env: Env) -> None:
    image_before = tree(env.image)
    script = ('echo pid=$$; hostname; ls /sys/class/net; echo "$GREETING"; echo oops >&2; '
              'echo data > /written; mkdir -p /var/new; touch /bin/added; rm /bin/cat; '
              'echo written; exec sleep 1000')
    spec, st = env.start("c", ["sh", "-c", script])
    assert st.state == "running"
    wait_output(spec, "written")
    assert lines(spec, STDOUT) == ["pid=1", "box", "lo", "hello there", "written"]
    assert lines(spec, STDERR) == ["oops"]
    # The container's processes are one cgroup below the leaf, in every hierarchy.
    pid = container_pid(env.state, "p.c")
    cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    for d in spec.leaf.dirs:
        controller = d.split("/")[4]
        line = next(x for x in cgroups.splitlines() if controller in x.split(":")[1].split(","))
        assert line.split(":", 2)[2] == f"/{env.root}/_x.p.c/ctr"
    assert pid in leafops.pids(spec.leaf)
    assert pid not in {int(x) for d in spec.leaf.dirs
                       for x in Path(d, "cgroup.procs").read_text().split()}
    # Writes land in the container's upper layer; the image is untouched.
    bundle = bundle_dir(env.state, "p", "c")
    assert Path(bundle, "upper", "written").read_text() == "data\n"
    assert Path(bundle, "upper", "var", "new").is_dir()
    assert Path(bundle, "upper", "bin", "added").exists()
    assert not os.path.lexists(os.path.join(bundle, "rootfs", "bin", "cat"))
    assert tree(env.image) == image_before
    # pid 1 (sleep) has no SIGTERM handler: killed after the grace period.
    started = time.monotonic()
    final = request_stop(st)
    assert final.state == "stopped" and time.monotonic() - started >= spec.stop_grace_s
    assert leafops.pids(spec.leaf) == set()
    assert not process_alive(pid)


@needs_runc
def test_a_polite_container_stops_at_once_and_runc_cleans_up(env: Env) -> None:
    script = "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done"
    spec, st = env.start("c", ["sh", "-c", script], stop_grace_s=5.0)
    wait_output(spec, "up")
    started = time.monotonic()
    final = request_stop(st)
    assert time.monotonic() - started < 3.0
    assert final.state == "stopped" and final.exit_code == 0
    # (pid 1 may get two: one forwarded by runc, one from the shim's leaf-wide SIGTERM)
    assert lines(spec, STDOUT)[:2] == ["up", "bye"]
    assert runc_containers(env.state) == []  # runc deleted it on its way out
    assert not any(os.path.exists(os.path.join(d, "ctr")) for d in spec.leaf.dirs)
    assert env.driver.remove_leaf("", "_x.p.c")


@needs_runc
def test_a_container_ignoring_sigterm_is_killed_and_everything_is_removed(env: Env) -> None:
    # Every process ignores SIGTERM (sleep inherits the ignored disposition).
    script = "trap '' TERM; echo up; sleep 1000 & sleep 1000 & while :; do sleep 0.05; done"
    spec, st = env.start("c", ["sh", "-c", script])
    wait_output(spec, "up")
    wait_until(lambda: len(leafops.pids(spec.leaf)) >= 4, "the container's processes")
    inside = leafops.pids(spec.leaf)
    started = time.monotonic()
    final = request_stop(st)
    assert time.monotonic() - started >= spec.stop_grace_s
    assert final.state == "stopped" and final.exit_signal == signal.SIGKILL
    assert leafops.pids(spec.leaf) == set()
    assert not any(process_alive(p) for p in inside)
    # runc was killed too: its state and the container's (empty) cgroups are left ...
    assert [c["status"] for c in runc_containers(env.state)] == ["stopped"]
    assert all(os.path.isdir(os.path.join(d, "ctr")) for d in spec.leaf.dirs)
    # ... and the leaf goes anyway, sub-cgroups first.
    assert env.driver.remove_leaf("", "_x.p.c")
    assert not any(os.path.exists(d) for d in spec.leaf.dirs)
    bundle = bundle_dir(env.state, "p", "c")
    remove_bundle(env.state, "p", "c")
    assert runc_containers(env.state) == []
    assert mounted_at_or_below(bundle) == [] and not os.path.exists(bundle)
    # Nothing of the container is left in any hierarchy (runc made it in all of them),
    # only the (empty) root-level directories in those the driver does not manage ...
    assert env.root_dirs() == []
    managed = {os.path.dirname(d) for d in spec.leaf.dirs}
    others = [os.path.join("/sys/fs/cgroup", h, env.root) for h in os.listdir("/sys/fs/cgroup")]
    others = [d for d in others if os.path.isdir(d) and d not in managed]
    assert others  # devices, blkio, ... here
    # ... which go with remove_runc_cgroups; the driver's own (marked) root stays.
    remove_runc_cgroups(env.root)
    assert not any(os.path.exists(d) for d in others)
    assert all(os.path.isdir(d) for d in managed)


@needs_runc
def test_free_order_bundle_first_then_leaf(env: Env) -> None:
    spec, st = env.start("c", ["sh", "-c", "trap '' TERM; echo up; exec sleep 1000"])
    wait_output(spec, "up")
    bundle = bundle_dir(env.state, "p", "c")
    with pytest.raises(FailedPrecondition, match="running"):
        env.bundle("c", ["sh"])  # its rootfs is in use
    assert mounted_at_or_below(bundle) == [os.path.join(bundle, "rootfs")]
    request_stop(st)
    remove_bundle(env.state, "p", "c")
    assert runc_containers(env.state) == [] and not os.path.exists(bundle)
    assert not any(os.path.exists(os.path.join(d, "ctr")) for d in spec.leaf.dirs)
    assert env.driver.remove_leaf("", "_x.p.c")
    assert not [d for d in env.root_dirs() if "_x.p.c" in d]


@needs_runc
def test_restart_after_a_sigkilled_runc(env: Env) -> None:
    spec, st = env.start("c", ["sh", "-c", "echo start; exec sleep 1000"],
                         restart_policy="always", backoff_base_s=0.05)
    wait_output(spec, "start")
    first = container_pid(env.state, "p.c")
    assert st.child_pid is not None
    os.kill(st.child_pid, signal.SIGKILL)  # runc itself: its container is left to the shim
    again = wait_until(lambda: (s := read_status(spec.status_file)).restart_count >= 1
                       and s.state == "running" and s, "the restart")
    wait_until(lambda: lines(spec).count("start") == 2, "the second start")
    assert not process_alive(first)
    second = container_pid(env.state, "p.c")  # the stale state was deleted, a new one runs
    assert second != first
    assert set(leafops.pids(spec.leaf)) >= {second, again.child_pid}
    assert request_stop(again).state == "stopped"
    assert leafops.pids(spec.leaf) == set()


@needs_runc
def test_a_non_root_user_can_use_the_root_file_system(env: Env) -> None:
    spec, _ = env.start("u", ["sh", "-c", "id; ls /bin/busybox; echo x > /nope || echo denied"],
                        bundle_kw={"uid": 1000, "gid": 1000})
    wait_output(spec, "denied")
    assert lines(spec, STDOUT) == ["uid=1000 gid=1000", "/bin/busybox", "denied"]


@needs_runc
@pytest.mark.parametrize("args, message", [
    (["/nonexistent"], "/nonexistent"),
    (["no-such-command"], "no-such-command"),
])
def test_a_bad_command_is_a_failed_start_with_runcs_reason(env: Env, args: list[str],
                                                         message: str) -> None:
    spec, _ = env.start("c", args)
    final = wait_until(lambda: (s := read_status(spec.status_file)).state == "exited" and s,
                       "the exit")
    assert final.exit_code not in (None, 0)
    errors = "\n".join(lines(spec, STDERR))
    assert message in errors and ("no such file" in errors or "not found" in errors)
    assert leafops.pids(spec.leaf) == set()


@needs_runc
def test_an_empty_image_fails_with_runcs_reason(env: Env, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    spec, _ = env.start("c", ["sh"], bundle_kw={"rootfs_lower": str(empty)})
    final = wait_until(lambda: (s := read_status(spec.status_file)).state == "exited" and s,
                       "the exit")
    assert final.exit_code not in (None, 0)
    assert "sh" in "\n".join(lines(spec, STDERR))
    assert os.listdir(empty) == []
