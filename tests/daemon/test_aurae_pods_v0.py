"""``aurae.runtime.pod.v0.PodService`` end to end (issue 16, point 9): a client generated
from the upstream proto (every message empty) drives a real pod (OCI layout, runc)
through a real channel; the pod is named by request metadata or is the node's only one.
Each step is checked on the node: the container processes and their leaf cgroups."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.model import ContainerSpec, Kind, PodSpec
from provisioner.names import container_process_name
from provisioner.node.process.procs import process_alive
from tests.daemon.aurae_harness import Daemon, running_daemon
from tests.daemon.upstream_client import generate, run_client
from tests.oci_fixture import build_busybox_layout

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc")]


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("upstream"))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path) as d:
        yield d


def declare(daemon: Daemon, name: str, image: str) -> PodSpec:
    """What a Pod manifest applied through the daemon would record."""
    spec = PodSpec(name=name, stop_grace_s=1.0, containers=(
        ContainerSpec("web", image, command=("sh", "-c", "exec sleep 1000")),
        ContainerSpec("worker", image, command=("sleep", "1000"))))
    daemon.layer.record(spec, "shopping")
    return spec


def call(stubs: Path, daemon: Daemon, method: str, **metadata: str) -> list[str] | None:
    """One pod.v0 call with empty messages; None, or [code, details] of its error."""
    request = {"Allocate": "PodServiceAllocateRequest", "Start": "PodServiceStartRequest",
               "Stop": "PodServiceStopRequest", "Free": "PodServiceFreeRequest"}[method]
    snippet = (f"out(error(lambda: pods_v0.{method}(podv0.{request}(), "
               f"metadata={tuple(metadata.items())!r}, timeout=60)))")
    result: list[str] | None = run_client(stubs, daemon.socket, snippet, timeout=90)
    return result


def running(daemon: Daemon, pod: str) -> dict[str, bool]:
    """Each container: does its process (runc, under its shim) run now, in its leaf?"""
    out = {}
    for container in ("web", "worker"):
        process = container_process_name(pod, container)
        status = daemon.layer.read_shim_status(process)
        alive = (status is not None and status.child_pid is not None
                 and status.state == "running" and process_alive(status.child_pid))
        if alive:
            assert status is not None and status.child_pid is not None
            cgroups = Path(f"/proc/{status.child_pid}/cgroup").read_text()
            assert f"/_x.{process}" in cgroups  # in the container's leaf, on the node
        out[container] = alive
    return out


def test_the_only_pod_is_driven_end_to_end(stubs: Path, daemon: Daemon,
                                           tmp_path: Path) -> None:
    image = "oci:" + build_busybox_layout(tmp_path / "busybox")
    declare(daemon, "shop", image)
    assert call(stubs, daemon, "Allocate") is None  # no name: the node's only pod
    assert running(daemon, "shop") == {"web": False, "worker": False}
    assert call(stubs, daemon, "Start") is None
    assert running(daemon, "shop") == {"web": True, "worker": True}
    assert call(stubs, daemon, "Stop", container="worker") is None
    assert running(daemon, "shop") == {"web": True, "worker": False}
    assert call(stubs, daemon, "Stop") is None
    assert running(daemon, "shop") == {"web": False, "worker": False}
    assert call(stubs, daemon, "Start", pod="shop") is None  # named: the same pod
    assert running(daemon, "shop") == {"web": True, "worker": True}
    leaves = [d for c in ("web", "worker") for d in daemon.layer.cgroups.leaf(
        "", f"_x.{container_process_name('shop', c)}").dirs]
    assert call(stubs, daemon, "Free") is None
    assert daemon.layer.store.get_resource(Kind.POD, "shop") is None
    assert daemon.layer.store.list_processes() == []
    assert not any(Path(d).exists() for d in leaves)


def test_with_several_pods_the_metadata_names_one(stubs: Path, daemon: Daemon,
                                                  tmp_path: Path) -> None:
    image = "oci:" + build_busybox_layout(tmp_path / "busybox")
    declare(daemon, "shop", image)
    declare(daemon, "cafe", image)
    refused = call(stubs, daemon, "Start")
    assert refused is not None and refused[0] == "FAILED_PRECONDITION"
    assert "declares 2 (cafe, shop)" in refused[1] and "'pod: <name>'" in refused[1]
    assert running(daemon, "shop") == running(daemon, "cafe") == {
        "web": False, "worker": False}  # nothing was started
    assert call(stubs, daemon, "Start", pod="cafe") is None
    assert running(daemon, "cafe") == {"web": True, "worker": True}
    assert running(daemon, "shop") == {"web": False, "worker": False}
    unknown = call(stubs, daemon, "Stop", pod="diner")
    assert unknown is not None and unknown[0] == "NOT_FOUND"
    bad = call(stubs, daemon, "Stop", pod="cafe", container="db")
    assert bad is not None and bad[0] == "NOT_FOUND" and "no container 'db'" in bad[1]
    assert running(daemon, "cafe") == {"web": True, "worker": True}  # unchanged
    assert call(stubs, daemon, "Free", pod="cafe") is None
    assert daemon.layer.store.get_resource(Kind.POD, "cafe") is None
    assert daemon.layer.store.get_resource(Kind.POD, "shop") is not None
