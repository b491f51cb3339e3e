"""Pods of OCI containers through the node layer: real images, real runc, real cgroups."""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from provisioner.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from provisioner.model import CellSpec, ContainerSpec, Kind, PodSpec, PullPolicy, RestartPolicy
from provisioner.names import container_process_name
from provisioner.node.oci.containers import runc_root
from provisioner.node.process.logs import LogReader
from provisioner.node.runtime.layer import NodeLayer
from provisioner.node.runtime.observe import observe
from provisioner.node.runtime.pods import Pods
from provisioner.state import ProcessPhase
from tests.oci_fixture import BUSYBOX_CONFIG, build_busybox_layout, busybox_layer, write_layout

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc")]


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> str:
    return "oci:" + str(build_busybox_layout(tmp_path_factory.mktemp("busybox")))


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def lines(node: NodeLayer, pod: str, container: str) -> list[str]:
    return [x.text for x in LogReader(node.log_dir(container_process_name(pod, container))
                                      ).read()]


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def shop(image: str, **kw: object) -> PodSpec:
    return PodSpec(name="shop", containers=(
        ContainerSpec("web", image, command=("sh", "-c",
                                              "hostname; echo $$; echo $GREETING; "
                                              "echo made > /made; exec sleep 1000"),
                      env=(("GREETING", "hello"),)),
        ContainerSpec("worker", image, command=("sleep", "1000"))),
        stop_grace_s=2.0, **kw)  # type: ignore[arg-type]


def test_a_pod_runs_its_containers_and_goes_away_without_a_trace(node: NodeLayer,
                                                                busybox: str) -> None:
    pods = Pods(node)
    spec = shop(busybox)
    assert pods.allocate(spec, "s") is True
    assert pods.allocate(spec, "s") is False  # the same again changes nothing
    started = pods.start(spec, "s")
    assert [s.state for s in started] == ["running", "running"]
    wait_for(lambda: len(lines(node, "shop", "web")) >= 3)
    hostname, pid, greeting = lines(node, "shop", "web")[:3]
    assert (hostname, pid, greeting) == ("shop", "1", "hello")  # own uts and pid ns
    # The container's processes live below the executable-like leaf of the container.
    runc_pid = started[0].child_pid
    assert runc_pid is not None
    leaf = node.cgroups.leaf("", "_x.shop.web")
    inside = {p for d in leaf.dirs for p in _procs_below(d)}
    assert len(inside) >= 2  # runc and the container's sleep
    state = {r.ref.name: r for r in observe(node).resources}
    assert state["shop"].process is not None
    assert state["shop"].process.phase is ProcessPhase.RUNNING
    # Writes go to the container's own overlay, never into the image.
    bundle = os.path.join(node.config.state_dir, "pods", "shop", "web")
    wait_for(lambda: os.path.exists(os.path.join(bundle, "rootfs", "made")))
    image_root = pods.images.pull(busybox).rootfs
    assert not os.path.exists(os.path.join(image_root, "made"))

    finals = pods.stop("shop")
    assert [f.state for f in finals] == ["stopped", "stopped"]
    assert not {p for d in leaf.dirs for p in _procs_below(d)}
    pods.free("shop")
    assert node.store.get_resource(Kind.POD, "shop") is None
    assert node.store.list_processes() == []
    assert not os.path.exists(os.path.join(node.config.state_dir, "pods", "shop"))
    assert mounts_under(os.path.join(node.config.state_dir, "pods")) == []
    assert not any(os.path.exists(d) for d in leaf.dirs)
    assert lines(node, "shop", "web") == []  # retired: a later pod "shop" logs afresh
    retired = os.path.join(node.config.state_dir, "logs", "_deleted", "shop.web")
    assert LogReader(retired).read()[0].text == "shop"  # kept for a post-mortem


def test_a_pod_made_again_under_its_name_shows_only_its_own_output(node: NodeLayer,
                                                                    busybox: str) -> None:
    pods = Pods(node)

    def run(word: str) -> None:
        spec = PodSpec(name="again", containers=(ContainerSpec(
            "c", busybox, command=("sh", "-c", f"echo {word}; exec sleep 1000")),),
            stop_grace_s=1.0)
        pods.allocate(spec, "s")
        pods.start(spec, "s")
        wait_for(lambda: word in lines(node, "again", "c"))

    run("first")
    pods.free("again")
    run("second")
    assert lines(node, "again", "c") == ["second"]
    pods.free("again")


def _procs_below(directory: str) -> set[int]:
    found: set[int] = set()
    for root, _dirs, _files in os.walk(directory):
        with open(os.path.join(root, "cgroup.procs")) as f:
            found.update(int(x) for x in f.read().split())
    return found


def test_the_containers_of_a_pod_share_its_network(node: NodeLayer, busybox: str) -> None:
    serve = ("mkdir -p /www && echo hello-from-server > /www/hi.txt && "
             "exec httpd -f -p 127.0.0.1:8080 -h /www")
    fetch = ("while ! wget -q -O- http://127.0.0.1:8080/hi.txt; do sleep 0.1; done; "
             "ip addr 2>/dev/null | grep -c 'inet ' ; exec sleep 1000")
    spec = PodSpec(name="net", stop_grace_s=0.5, containers=(
        ContainerSpec("server", busybox, command=("sh", "-c", serve)),
        ContainerSpec("client", busybox, command=("sh", "-c", fetch))))
    pods = Pods(node)
    pods.start(spec, "s")
    wait_for(lambda: "hello-from-server" in lines(node, "net", "client"))
    namespaces = {os.readlink(f"/proc/{pid}/ns/net")  # the containers' own processes
                  for name in ("server", "client")
                  for pid in _procs_below(node.cgroups.leaf("", f"_x.net.{name}").dirs[0]
                                          + "/ctr")}
    assert len(namespaces) == 1  # httpd, the client's shell and sleep: one namespace
    assert namespaces != {os.readlink("/proc/self/ns/net")}  # and it is not the host's
    netns = f"/run/netns/prov-{node.cgroups.root_name}-net"
    assert os.path.exists(netns)
    pods.free("net")
    assert not os.path.exists(netns)


def test_one_container_stops_alone_and_start_brings_it_back(node: NodeLayer,
                                                           busybox: str) -> None:
    pods = Pods(node)
    spec = shop(busybox)
    before = pods.start(spec, "s")  # start allocates a pod that is not yet
    pods.stop("shop", "worker")
    statuses = dict((c.name, s) for c, s in pods.statuses(spec))
    assert statuses["worker"] is not None and statuses["worker"].state == "stopped"
    assert statuses["web"] is not None and statuses["web"].state == "running"
    again = pods.start(spec, "s")
    assert again[0].child_pid == before[0].child_pid  # the running one was left alone
    assert again[1].state == "running" and again[1].child_pid != before[1].child_pid
    with pytest.raises(NotFound, match="no container 'db'"):
        pods.stop("shop", "db")


def test_a_container_ignoring_sigterm_is_killed_after_the_grace(node: NodeLayer,
                                                               busybox: str) -> None:
    spec = PodSpec(name="stubborn", containers=(ContainerSpec(
        "c", busybox, command=("sh", "-c", "trap '' TERM; sleep 1000 & wait; sleep 1000")),),
        stop_grace_s=0.5)
    pods = Pods(node)
    pods.start(spec, "s")
    wait_for(lambda: len({p for d in node.cgroups.leaf("", "_x.stubborn.c").dirs
                          for p in _procs_below(d)}) >= 3)
    started = time.monotonic()
    final = pods.stop("stubborn")[0]
    assert final.state == "stopped" and time.monotonic() - started < 5
    leaf = node.cgroups.leaf("", "_x.stubborn.c")
    assert not {p for d in leaf.dirs for p in _procs_below(d)}
    # the container was killed first and runc, left to exit, deleted it itself: no
    # state for a `runc delete` to clear, no container cgroup left
    assert not os.path.exists(os.path.join(runc_root(node.config.state_dir), "stubborn.c"))
    assert not any(os.path.exists(os.path.join(d, "ctr")) for d in leaf.dirs)
    pods.free("stubborn")


def test_restart_policy_restarts_a_failing_container(node: NodeLayer, busybox: str) -> None:
    spec = PodSpec(name="flaky", containers=(ContainerSpec(
        "c", busybox, command=("sh", "-c", "echo try; exit 3")),),
        restart_policy=RestartPolicy.ON_FAILURE, stop_grace_s=0.5)
    Pods(node).start(spec, "s")
    wait_for(lambda: lines(node, "flaky", "c").count("try") >= 2)

    def backing_off_after_a_restart() -> bool:  # between runs: the last exit is known
        status = Pods(node).statuses(spec)[0][1]
        return (status is not None and status.state == "backoff"
                and status.restart_count >= 1 and status.exit_code == 3)

    wait_for(backing_off_after_a_restart)


def test_pods_live_in_their_cell_and_free_cell_takes_them(node: NodeLayer,
                                                         busybox: str) -> None:
    """The node layer alone refuses to free a cell that runs pods (it does not know
    them); Pods.free_cell frees the pods, then the cell."""
    node.allocate_cell(CellSpec("apps"), "s")
    spec = PodSpec(name="inside", cell="apps",
                   containers=(ContainerSpec("c", busybox, command=("sleep", "1000")),),
                   stop_grace_s=0.5)
    status = Pods(node).start(spec, "s")[0]
    assert status.child_pid is not None
    with open(f"/proc/{status.child_pid}/cgroup") as f:
        assert "/apps/_x.inside.c" in f.read()
    with pytest.raises(FailedPrecondition, match=r"still runs pod.*inside"):
        node.free_cell("apps")
    assert node.store.get_resource(Kind.POD, "inside") is not None
    assert node.is_running("inside.c")
    Pods(node).free_cell("apps")
    assert node.store.get_resource(Kind.POD, "inside") is None
    assert node.store.get_resource(Kind.CELL, "apps") is None
    assert node.store.list_processes() == []


def test_bad_pods_are_refused_and_leave_nothing(node: NodeLayer, busybox: str,
                                               tmp_path: Path) -> None:
    pods = Pods(node)
    bad_image = PodSpec(name="p", containers=(ContainerSpec("c", f"oci:{tmp_path}/none"),))
    with pytest.raises((InvalidArgument, NotFound)):
        pods.allocate(bad_image, "s")
    # (No network here: an image never pulled, with policy Never; test_pull_cli.py
    # pulls from a real local registry.)
    registry = PodSpec(name="p", containers=(ContainerSpec(
        "c", "docker.io/library/nginx", pull_policy=PullPolicy.NEVER),))
    with pytest.raises(FailedPrecondition, match="pullPolicy is Never"):
        pods.allocate(registry, "s")
    with pytest.raises(NotFound, match="cell 'nowhere'"):
        pods.allocate(PodSpec(name="p", cell="nowhere",
                              containers=(ContainerSpec("c", busybox),)), "s")
    twice = PodSpec(name="p", containers=(ContainerSpec("c", busybox),
                                          ContainerSpec("c", busybox)))
    with pytest.raises(InvalidArgument, match="twice"):
        pods.allocate(twice, "s")
    assert node.store.list_resources() == [] and node.store.list_processes() == []
    pods.allocate(shop(busybox), "s")
    with pytest.raises(AlreadyExists):
        pods.allocate(PodSpec(name="shop", containers=(ContainerSpec("x", busybox),)), "s")
    missing = PodSpec(name="nocmd", containers=(ContainerSpec(
        "c", busybox, command=("/no/such/program",)),), stop_grace_s=0.5)
    status = pods.start(missing, "s")[0]  # runc itself starts; the container fails
    wait_for(lambda: (st := pods.statuses(missing)[0][1]) is not None
             and st.state == "exited")
    assert status.child_pid is not None
    assert any("no such file" in line.lower() for line in lines(node, "nocmd", "c"))


def test_the_images_user_is_the_containers_user(node: NodeLayer, tmp_path: Path) -> None:
    def image_as(user: str) -> str:
        layout = tmp_path / user.replace(":", "_")
        return "oci:" + write_layout(layout, [busybox_layer()], {**BUSYBOX_CONFIG,
                                                                  "User": user})

    pods = Pods(node)
    spec = PodSpec(name="who", stop_grace_s=0.5, containers=(
        ContainerSpec("named", image_as("nobody"), command=("sh", "-c", "id -u; id -g")),
        ContainerSpec("numeric", image_as("123:45"), command=("sh", "-c", "id -u; id -g"))))
    pods.start(spec, "s")
    wait_for(lambda: len(lines(node, "who", "named")) == 2
             and len(lines(node, "who", "numeric")) == 2)
    assert lines(node, "who", "named") == ["65534", "65534"]
    assert lines(node, "who", "numeric") == ["123", "45"]
    pods.free("who")
    unknown = PodSpec(name="ghost", containers=(ContainerSpec("c", image_as("ghost")),))
    with pytest.raises(InvalidArgument, match="user 'ghost'"):
        pods.start(unknown, "s")
    assert node.store.list_processes() == []
    assert node.store.get_resource(Kind.POD, "ghost") is None  # refused at allocate


def test_a_pods_containers_stop_together(node: NodeLayer, busybox: str) -> None:
    stubborn = ("sh", "-c", "trap '' TERM; sleep 1000 & wait")
    spec = PodSpec(name="slow", stop_grace_s=1.0, containers=tuple(
        ContainerSpec(f"c{i}", busybox, command=stubborn) for i in range(3)))
    pods = Pods(node)
    pods.start(spec, "s")
    started = time.monotonic()
    assert [f.state for f in pods.stop("slow")] == ["stopped"] * 3
    assert time.monotonic() - started < 2.5  # one grace period, not three


def test_a_pod_starts_from_its_unpacked_image_when_the_layout_is_gone(
        node: NodeLayer, tmp_path: Path) -> None:
    layout = build_busybox_layout(tmp_path / "short-lived")
    spec = PodSpec(name="boot", stop_grace_s=0.5, containers=(
        ContainerSpec("c", f"oci:{layout}", command=("echo", "still here")),))
    pods = Pods(node)
    pods.allocate(spec, "s")
    shutil.rmtree(layout)  # a bootstrap script's temporary layout, say
    pods.start(spec, "s")
    wait_for(lambda: lines(node, "boot", "c") == ["still here"])
    pods.free("boot")
    assert not os.path.exists(os.path.join(node.config.state_dir, "pods", "boot"))
    with pytest.raises((NotFound, InvalidArgument)):
        pods.allocate(spec, "s")  # a new allocation needs the layout


def test_a_host_network_pod_serves_on_the_hosts_ports(node: NodeLayer, busybox: str) -> None:
    with socket.socket() as probe:  # a port free on this host now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve = (f"mkdir -p /www && echo from-the-pod > /www/hi.txt && "
             f"exec httpd -f -p 127.0.0.1:{port} -h /www")
    spec = PodSpec(name="edge", host_network=True, stop_grace_s=0.5, containers=(
        ContainerSpec("web", busybox, command=("sh", "-c", serve)),))
    pods = Pods(node)
    pods.start(spec, "s")
    assert not os.path.exists(f"/run/netns/prov-{node.cgroups.root_name}-edge")

    def served() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hi.txt", timeout=1) as r:
                return bool(r.read() == b"from-the-pod\n")
        except OSError:
            return False

    wait_for(served)
    pods.free("edge")
    assert not served()
