"""The rkt API tells the truth about the node (issue 16, points 1-6): real pods (OCI
layout, runc) and executables, read through a real channel with the stubs generated
from the upstream ``v1alpha/api.proto``, each value checked against the node itself -
/proc/<pid>/cgroup, the signal the test sent, the layout's manifest bytes, ``du``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from provisioner._proto.v1alpha import api_pb2 as rkt
from provisioner._proto.v1alpha import api_pb2_grpc as rkt_grpc
from provisioner.daemon import rkt as rkt_service
from provisioner.daemon.context import DaemonContext
from provisioner.daemon.rkt_pods import NAME_KEY, SIGNAL_KEY, annotation
from provisioner.model import (
    CellSpec,
    ContainerSpec,
    ExecutableSpec,
    PersistentExecutableSpec,
    PodSpec,
)
from provisioner.names import container_process_name
from provisioner.node import persistent
from provisioner.node.runtime.pods import Pods
from tests.daemon.aurae_harness import wait_for
from tests.daemon.node_harness import Daemon, running_daemon
from tests.oci_fixture import build_busybox_layout

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc")]
E = rkt.EventType
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path) as d:
        yield d


def api_of(daemon: Daemon) -> rkt_grpc.PublicAPIStub:
    return rkt_grpc.PublicAPIStub(daemon.channel)  # type: ignore[no-untyped-call]


def pod_spec(name: str, image: str, cell: str = "", grace: float = 1.0,
             **commands: str) -> PodSpec:
    return PodSpec(name=name, cell=cell, stop_grace_s=grace, containers=tuple(
        ContainerSpec(c, image, command=("sh", "-c", cmd)) for c, cmd in commands.items()))


def by_name(api: rkt_grpc.PublicAPIStub, name: str, detail: bool = True) -> rkt.Pod:
    pods = [p for p in api.ListPods(rkt.ListPodsRequest(detail=detail), timeout=10).pods
            if annotation(p.annotations, NAME_KEY) == name]
    assert len(pods) == 1, [annotation(p.annotations, NAME_KEY) for p in pods]
    pod: rkt.Pod = pods[0]
    return pod


def names(pods: Iterator[rkt.Pod] | list[rkt.Pod]) -> set[str]:
    return {annotation(p.annotations, NAME_KEY) for p in pods}


def proc_cgroup(pid: int) -> str:
    """The cgroup of PID where the provisioner's cells live: the cpu hierarchy on
    cgroup v1 / hybrid, the unified one on v2 (read from /proc, not from our code)."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    return next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))


def container_init(daemon: Daemon, pod: str, container: str) -> int:
    """The container's own process (in runc's cgroup below the leaf, once it runs the
    container's command: ``sleep``), not runc nor runc's init."""
    status = daemon.layer.read_shim_status(container_process_name(pod, container))
    assert status is not None
    procs = Path(status.leaf.dirs[0], "ctr", "cgroup.procs")
    found: list[int] = []

    def sleeping() -> bool:
        with contextlib.suppress(OSError):
            for pid in map(int, procs.read_text().split()):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                        found.append(pid)
                        return True
        return False

    wait_for(sleeping, 10, "the container's process")
    return found[0]


def events_since(api: rkt_grpc.PublicAPIStub, since: int, settle: float = 0.7,
                 **filters: object) -> list[rkt.Event]:
    """Every event from ``since`` until now, once the watcher had time to see it."""
    time.sleep(settle)
    request = rkt.ListenEventsRequest(filter=rkt.EventFilter(
        since_time=since, until_time=int(time.time()) + 1, **filters))  # type: ignore[arg-type]
    return [e for r in api.ListenEvents(request, timeout=15) for e in r.events]


def mark() -> int:
    """A since_time after every event so far: the watcher catches up, then the clock
    moves on to the next whole second (events have seconds)."""
    time.sleep(0.5)
    time.sleep(1 - time.time() % 1)
    return int(time.time())


def kinds(events: list[rkt.Event]) -> list[tuple[str, str]]:
    return [(E.Name(e.type).removeprefix("EVENT_TYPE_"), getattr(e, "from")) for e in events]


# -- 1. Pod.cgroup ---------------------------------------------------------------------

def test_pod_cgroup_is_the_pods_own_and_sub_cgroups_name_only_it(daemon: Daemon,
                                                                 tmp_path: Path) -> None:
    image = "oci:" + build_busybox_layout(tmp_path / "busybox")
    pods = Pods(daemon.layer)
    daemon.layer.allocate_cell(CellSpec("shop"))
    pods.start(pod_spec("solo", image, web="exec sleep 1000"))
    pods.start(pod_spec("duo", image, cell="shop", web="exec sleep 1000",
                        worker="exec sleep 1000"))
    daemon.layer.start_executable(ExecutableSpec("other", "exec sleep 1000"))
    api = api_of(daemon)
    solo, duo, other = (by_name(api, n) for n in ("solo", "duo", "other"))
    root = daemon.layer.cgroups.root_name
    # solo: one container - its leaf, where its runc (the pod's pid) really is.
    assert solo.cgroup == proc_cgroup(solo.pid) == f"/{root}/_x.solo.web"
    # other: an executable is a pod of one app, in its own leaf.
    assert other.cgroup == proc_cgroup(other.pid) == f"/{root}/_x.other"
    # duo: two containers, each in a leaf of the cell: the cell holds them both.
    web, worker = (container_init(daemon, "duo", c) for c in ("web", "worker"))
    assert duo.cgroup == os.path.commonpath([proc_cgroup(web), proc_cgroup(worker)]) == (
        f"/{root}/shop")
    assert solo.cgroup != f"/{root}" and duo.cgroup != f"/{root}"

    def matching(*cgroups: str) -> set[str]:
        return names(api.ListPods(rkt.ListPodsRequest(filters=[
            rkt.PodFilter(pod_sub_cgroups=list(cgroups))]), timeout=10).pods)

    # A process's real cgroup names its pod, and only its pod.
    assert matching(proc_cgroup(container_init(daemon, "solo", "web"))) == {"solo"}
    assert matching(proc_cgroup(web)) == {"duo"}
    assert matching(proc_cgroup(worker)) == {"duo"}
    assert matching(proc_cgroup(other.pid)) == {"other"}
    assert matching(f"/{root}/shop/_x.someone-else") == set()  # a neighbour in the cell
    assert matching(f"/{root}") == set()
    assert names(api.ListPods(rkt.ListPodsRequest(filters=[
        rkt.PodFilter(cgroups=[solo.cgroup])]), timeout=10).pods) == {"solo"}
    pods.stop("solo")
    stopped = by_name(api, "solo")
    assert stopped.state == rkt.POD_STATE_EXITED and stopped.cgroup == ""
    assert matching(f"/{root}/_x.solo.web/ctr") == set()


# -- 2. one id per pod -----------------------------------------------------------------

def test_one_id_per_pod_in_list_inspect_and_events_and_across_restarts(
        daemon: Daemon, tmp_path: Path) -> None:
    image = "oci:" + build_busybox_layout(tmp_path / "busybox")
    since = int(time.time())
    api = api_of(daemon)
    Pods(daemon.layer).start(pod_spec("solo", image, web="exec sleep 1000"))
    daemon.layer.allocate_cell(CellSpec("box"))  # a cell is not a pod: no pod events
    listed = by_name(api, "solo")
    assert UUID.match(listed.id)
    inspected = api.InspectPod(rkt.InspectPodRequest(id=listed.id), timeout=10).pod
    assert inspected.id == listed.id
    assert api.InspectPod(rkt.InspectPodRequest(id="solo"), timeout=10).pod.id == listed.id
    events = events_since(api, since)
    assert kinds(events) == [("POD_PREPARED", "solo"), ("POD_STARTED", "solo"),
                             ("APP_STARTED", "web")]
    assert {e.id for e in events} == {listed.id}
    assert api.InspectPod(rkt.InspectPodRequest(id=events[0].id), timeout=10).pod.id == (
        listed.id)
    # A second daemon on the same node (a restart): same ids, and no event sent again.
    ctx = DaemonContext(daemon.ctx.config, daemon.layer, daemon.ctx.executor)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    sock = f"/tmp/rkt-restart-{os.getpid()}.sock"
    rkt_service.register(server, ctx)
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    try:
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            again = rkt_grpc.PublicAPIStub(channel)  # type: ignore[no-untyped-call]
            assert by_name(again, "solo").id == listed.id
            assert kinds(events_since(again, since)) == kinds(events)
    finally:
        ctx.stopping.set()
        server.stop(grace=1).wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock)
    # Freed and made again under the same name: another pod, another id.
    Pods(daemon.layer).free("solo")
    Pods(daemon.layer).allocate(pod_spec("solo", image, web="exec sleep 1000"))
    assert by_name(api, "solo").id != listed.id
    gone = events_since(api, since, types=[E.EVENT_TYPE_POD_GARBAGE_COLLECTED])
    assert [(e.id, getattr(e, "from")) for e in gone] == [(listed.id, "solo")]


# -- 3. events from transitions, once each ---------------------------------------------

def test_events_follow_real_transitions_exactly_once(daemon: Daemon, tmp_path: Path) -> None:
    image = "oci:" + build_busybox_layout(tmp_path / "busybox")
    api = api_of(daemon)
    pods = Pods(daemon.layer)
    spec = pod_spec("duo", image, grace=0.5, web="exec sleep 1000", worker="exec sleep 1000")
    since = int(time.time())
    pods.start(spec)
    duo = by_name(api, "duo").id
    assert kinds(events_since(api, since, ids=[duo])) == [
        ("POD_PREPARED", "duo"), ("POD_STARTED", "duo"), ("APP_STARTED", "web"),
        ("APP_STARTED", "worker")]
    step = mark()
    pods.start(spec)  # changes nothing
    pods.stop("duo", "worker")  # one container of a still-running pod
    worker_gone = events_since(api, step, ids=[duo])
    assert kinds(worker_gone) == [("APP_EXITED", "worker")]  # no POD_EXITED
    pods.stop("duo", "worker")  # again: nothing changes
    pods.stop("duo")
    assert kinds(events_since(api, step, ids=[duo])) == [
        ("APP_EXITED", "worker"), ("APP_EXITED", "web"), ("POD_EXITED", "duo")]
    pods.stop("duo")
    assert len(events_since(api, step, ids=[duo])) == 3  # stopping a stopped pod: nothing
    # A persistent executable killed by hand: the supervisor restarts it, and that shows.
    persistent.enable(daemon.layer, PersistentExecutableSpec("keeper", "exec sleep 1000"))
    keeper = by_name(api, "keeper")
    status = daemon.layer.read_shim_status("keeper")
    assert status is not None and status.child_pid
    step = mark()
    os.kill(status.child_pid, signal.SIGKILL)
    wait_for(lambda: by_name(api, "keeper").pid not in (0, keeper.pid), 10, "a restart")
    restarted = kinds(events_since(api, step, ids=[keeper.id]))
    # The supervisor waits out its back-off (50 ms here) before the restart: a look at
    # the pod in that moment sees it stopped, and the pod's own events say so (the
    # watcher looks when a status is written, so that moment is often seen).
    assert restarted in ([("APP_EXITED", "keeper"), ("APP_STARTED", "keeper")],
                         [("APP_EXITED", "keeper"), ("POD_EXITED", "keeper"),
                          ("POD_STARTED", "keeper"), ("APP_STARTED", "keeper")])
    persistent.destroy(daemon.layer, "keeper")


# -- 4. exit codes ---------------------------------------------------------------------

def test_exit_code_of_a_signalled_app_is_the_signal_number_as_in_rkt(
        daemon: Daemon, tmp_path: Path) -> None:
    image = "oci:" + build_busybox_layout(tmp_path / "busybox")
    api = api_of(daemon)
    pods = Pods(daemon.layer)
    pods.start(pod_spec("victim", image, web="exec sleep 1000"))
    pods.start(pod_spec("stubborn", image, grace=0.3,
                        web="trap '' TERM; echo deaf; while true; do sleep 0.1; done"))
    daemon.layer.start_executable(ExecutableSpec("three", "exit 3"))
    daemon.layer.start_executable(ExecutableSpec("shot", "exec sleep 1000"))
    running = by_name(api, "victim")
    assert [a.exit_code for a in running.apps] == [-1]  # rkt: -1 until the app exited
    os.kill(container_init(daemon, "victim", "web"), signal.SIGKILL)
    shot = daemon.layer.read_shim_status("shot")
    assert shot is not None and shot.child_pid
    os.kill(shot.child_pid, signal.SIGKILL)
    stubborn = by_name(api, "stubborn").id

    def deaf() -> bool:  # its trap is set: SIGTERM is ignored from now on
        reply = api.GetLogs(rkt.GetLogsRequest(pod_id=stubborn), timeout=10)
        return any("deaf" in line for r in reply for line in r.lines)

    wait_for(deaf, 10, "the trap")
    pods.stop("stubborn")  # ignores SIGTERM: killed after its grace period

    def app(name: str) -> rkt.App:
        return by_name(api, name).apps[0]

    def exited(name: str) -> bool:
        return app(name).state == rkt.APP_STATE_EXITED

    for name in ("victim", "shot", "stubborn", "three"):
        wait_for(lambda n=name: exited(n), 10, f"{name} exits")  # type: ignore[misc]
    for name in ("victim", "shot", "stubborn"):
        assert (app(name).exit_code, annotation(app(name).annotations, SIGNAL_KEY)) == (
            signal.SIGKILL.value, "SIGKILL"), name
    assert app("three").exit_code == 3
    assert annotation(app("three").annotations, SIGNAL_KEY) == ""
    exits = events_since(api, int(time.time()) - 30, types=[E.EVENT_TYPE_APP_EXITED],
                          names=["web"], settle=0.3)
    assert [dict((kv.Key, kv.value) for kv in e.data)["exit_code"] for e in exits] == [
        "9", "9"]


# -- 5. images ---------------------------------------------------------------------------

def test_image_data_comes_from_the_oci_manifest_and_the_store(daemon: Daemon,
                                                              tmp_path: Path) -> None:
    layout = Path(build_busybox_layout(tmp_path / "busybox"))
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = (layout / "blobs" / "sha256" / digest.partition(":")[2]).read_bytes()
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == digest
    before = int(time.time())
    Pods(daemon.layer).allocate(pod_spec("solo", f"oci:{layout}", web="exec sleep 1000"))
    after = int(time.time())
    api = api_of(daemon)
    [image] = api.ListImages(rkt.ListImagesRequest(detail=True), timeout=10).images
    assert image.id == digest and image.manifest == manifest
    rootfs = Path(daemon.layer.config.state_dir).resolve() / "images" / digest[7:] / "rootfs"
    du = subprocess.run(["du", "-sb", str(rootfs)], capture_output=True, text=True,
                        check=True).stdout.split()[0]
    assert image.size == int(du) > 1_000_000  # busybox itself is over a megabyte
    assert before <= image.import_timestamp <= after
    assert image.name == f"oci:{layout}"
    brief = api.ListImages(rkt.ListImagesRequest(), timeout=10).images[0]
    assert brief.id == digest and brief.manifest == b"" and brief.size == image.size
    assert api.InspectImage(rkt.InspectImageRequest(id=digest), timeout=10).image == image

    def imported(**bounds: int) -> list[str]:
        return [i.id for i in api.ListImages(rkt.ListImagesRequest(
            filters=[rkt.ImageFilter(**bounds)]), timeout=10).images]  # type: ignore[arg-type]

    assert imported(imported_after=before - 1) == [digest]
    assert imported(imported_after=after) == []
    assert imported(imported_before=after + 1) == [digest]
    app_image = by_name(api, "solo").apps[0].image
    assert (app_image.id, app_image.manifest) == (digest, manifest)
    assert by_name(api, "solo", detail=False).apps[0].image.manifest == b""
    assert names(api.ListPods(rkt.ListPodsRequest(filters=[
        rkt.PodFilter(image_ids=[digest])]), timeout=10).pods) == {"solo"}


# -- 6. logs of every app ---------------------------------------------------------------

def test_get_logs_without_app_name_returns_every_apps_lines(daemon: Daemon,
                                                            tmp_path: Path) -> None:
    image = "oci:" + build_busybox_layout(tmp_path / "busybox")
    Pods(daemon.layer).start(pod_spec(
        "duo", image, web="echo from web; exec sleep 1000",
        worker="echo from worker; while true; do echo tick; sleep 0.2; done"))
    api = api_of(daemon)
    duo = by_name(api, "duo").id

    def lines(**request: object) -> list[str]:
        reply = api.GetLogs(rkt.GetLogsRequest(pod_id=duo, **request),  # type: ignore[arg-type]
                            timeout=10)
        return [line for r in reply for line in r.lines]

    wait_for(lambda: {"from web", "from worker"} <= set(lines()), 10, "both apps' lines")
    assert "from worker" not in lines(app_name="web")
    assert "from web" not in lines(app_name="worker")
    ticks = lines().count("tick")
    followed = lines(follow=True, until_time=int(time.time()) + 2)
    assert {"from web", "from worker", "tick"} <= set(followed)
    assert followed.count("tick") > ticks  # and the lines written meanwhile
