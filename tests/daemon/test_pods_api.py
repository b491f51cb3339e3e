"""Pods through the daemon: aurae.runtime.v0.PodService and the rkt API, on a real pod
(OCI image layout, runc), through a real channel."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from provisioner._proto.aurae.runtime.v0 import runtime_pb2 as pb
from provisioner._proto.aurae.runtime.v0 import runtime_pb2_grpc as pb_grpc
from provisioner._proto.v1alpha import api_pb2 as rkt
from provisioner._proto.v1alpha import api_pb2_grpc as rkt_grpc
from provisioner.model import ContainerSpec, Kind, PodSpec
from provisioner.node.runtime.pods import Pods
from tests.daemon.aurae_harness import Daemon, code_of, details_of, running_daemon, wait_for
from tests.oci_fixture import build_busybox_layout

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc")]
C = grpc.StatusCode


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path) as d:
        yield d


def declare(daemon: Daemon, image: str) -> PodSpec:
    """What a Pod manifest applied through the daemon would record."""
    spec = PodSpec(name="shop", stop_grace_s=1.0, containers=(
        ContainerSpec("web", image, command=("sh", "-c", "echo hello from web; "
                                                         "exec sleep 1000")),
        ContainerSpec("worker", image, command=("sleep", "1000"))))
    daemon.layer.record(spec, "shopping")
    return spec


def pod_of(api: rkt_grpc.PublicAPIStub, pod_id: str) -> rkt.Pod:
    return api.InspectPod(rkt.InspectPodRequest(id=pod_id), timeout=5).pod


def test_declared_pods_are_driven_by_name(daemon: Daemon, tmp_path: Path) -> None:
    image = "oci:" + build_busybox_layout(tmp_path / "busybox")
    pods = pb_grpc.PodServiceStub(daemon.channel)
    api = rkt_grpc.PublicAPIStub(daemon.channel)
    declare(daemon, image)
    assert pod_of(api, "shop").state == rkt.POD_STATE_PREPARED
    pods.Allocate(pb.PodServiceAllocateRequest(pod=pb.Pod(name="shop")))
    assert daemon.layer.store.get_resource(Kind.POD, "shop").manifest_set == "shopping"
    pods.Start(pb.PodServiceStartRequest(name="shop"))
    pod = pod_of(api, "shop")
    assert pod.state == rkt.POD_STATE_RUNNING and pod.pid > 0
    assert [(a.name, a.state) for a in pod.apps] == [
        ("web", rkt.APP_STATE_RUNNING), ("worker", rkt.APP_STATE_RUNNING)]
    listed = api.ListPods(rkt.ListPodsRequest(), timeout=5).pods
    assert [p.id for p in listed] == [pod.id]  # a UUID; InspectPod also takes the name
    assert len(api.ListImages(rkt.ListImagesRequest(), timeout=5).images) == 1

    def web_said_hello() -> bool:
        reply = api.GetLogs(rkt.GetLogsRequest(pod_id="shop", app_name="web"), timeout=5)
        return any("hello from web" in line for r in reply for line in r.lines)

    wait_for(web_said_hello)
    pods.Stop(pb.PodServiceStopRequest(pod_name="shop", container_name="worker"))
    assert [a.state for a in pod_of(api, "shop").apps] == [
        rkt.APP_STATE_RUNNING, rkt.APP_STATE_EXITED]
    no_such = lambda: pods.Stop(  # noqa: E731
        pb.PodServiceStopRequest(pod_name="shop", container_name="db"))
    assert code_of(no_such) is C.NOT_FOUND and "no container 'db'" in details_of(no_such)
    pods.Stop(pb.PodServiceStopRequest(pod_name="shop"))
    assert pod_of(api, "shop").state == rkt.POD_STATE_EXITED
    Pods(daemon.layer).free("shop")
    assert api.ListPods(rkt.ListPodsRequest(), timeout=5).pods == []
