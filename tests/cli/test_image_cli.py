"""``provisioner images list`` and ``images prune`` on this machine and through a daemon:
a real docker-registry on 127.0.0.1, real skopeo pulls, runc pods, the real writer lock
(held by other processes), a real daemon on a unix socket - and one without the RPCs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from provisioner.cli import main
from tests.cli.test_node_cli import Node, node  # noqa: F401 - the fixture
from tests.daemon.node_harness import running_daemon
from tests.node.test_image_gc import lock_held_elsewhere
from tests.oci_fixture import build_busybox_layout, busybox_image
from tests.registry_fixture import Registry, push, registry

__all__ = ["busybox_image", "registry"]
pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc")]

POD = """\
apiVersion: provisioner/v1
kind: Pod
metadata: {name: NAME}
spec:
  stopGracePeriod: 1s
  containers:
    - name: c
      image: IMAGE
      command: ["sleep", "1000"]
"""


@pytest.fixture(scope="module")
def images(registry: Registry, busybox_image: str,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two images in the registry, sharing busybox's layer: reference -> digest."""
    other = build_busybox_layout(tmp_path_factory.mktemp("other"),
                                 extra_layers=[{"etc/motd": b"other\n"}])
    return {f"{registry.host}/cli/base:1.0": push(registry, busybox_image, "cli/base", "1.0"),
            f"{registry.host}/cli/other:1.0": push(registry, other, "cli/other", "1.0")}


def manifest(directory: Path, name: str, image: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(POD.replace("NAME", name).replace("IMAGE", image))
    return path


def as_json(capsys: pytest.CaptureFixture[str], code: int) -> dict[str, object]:
    out, err = capsys.readouterr()
    assert code == 0, out + err
    result: dict[str, object] = json.loads(out)
    return result


def digests(listing: dict[str, object], key: str = "images") -> list[str]:
    entries = listing[key]
    assert isinstance(entries, list)
    return sorted(entry["digest"] for entry in entries)


def test_list_and_prune_on_this_machine(node: Node, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                        images: dict[str, str]) -> None:
    (base, base_digest), (other, other_digest) = images.items()
    used = manifest(node.tmp / "used", "used", base)
    gone = manifest(node.tmp / "gone", "gone", other)
    assert node.run(capsys, "apply", str(used))[0] == 0
    assert node.run(capsys, "apply", str(gone))[0] == 0
    assert node.run(capsys, "destroy", str(gone))[0] == 0  # its image stays cached
    listing = as_json(capsys, main(["images", "list", "--json", *node.args()]))
    shown = {i["digest"]: i for i in listing["images"]}  # type: ignore[attr-defined]
    assert set(shown) == {base_digest, other_digest}
    assert shown[base_digest]["pods"] == ["used"] and shown[base_digest]["in_use"]
    assert shown[other_digest]["pods"] == [] and shown[other_digest]["references"] == [other]
    assert all(i["size"] > 500_000 and i["blob_bytes"] > 0 for i in shown.values())
    code, out, _ = node.run(capsys, "images", "list")
    assert code == 0
    header, *rows, summary = out.splitlines()
    assert header.split() == ["IMAGE", "REFERENCES", "SIZE", "BLOBS", "IN", "USE", "BY"]
    assert any(base in row and row.endswith("used") for row in rows), out
    assert summary.startswith("2 images (1 in use, 0 dangling)"), summary
    # The default keeps an image a reference still names; --all does not.
    code, out, _ = node.run(capsys, "images", "prune")
    assert code == 0 and out.splitlines()[-1] == "Pruned 0 images and 0 blobs: 0 B freed.", out
    assert "in use by Pod/used" in out and f"the current image of {other}" in out
    pruned = as_json(capsys, main(["images", "prune", "--all", "--json", *node.args()]))
    assert digests(pruned, "removed") == [other_digest]
    assert pruned["removed_blobs"] == 3  # other's manifest, config and own layer
    assert isinstance(pruned["bytes_freed"], int) and pruned["bytes_freed"] > 500_000
    assert pruned["kept"] == [{"digest": base_digest, "reason": "in use by Pod/used"}]
    assert node.status(capsys)["Pod/used"]["state"] == "running"
    # Bad input changes nothing (exit 64).
    for argv in (["images"], ["images", "list", "--all"], ["images", "remove"],
                 ["images", "prune", "--all", "--force"]):
        code, _, err = node.run(capsys, *argv)
        assert code == 64, (argv, err)
    listing = as_json(capsys, main(["images", "list", "--json", *node.args()]))
    assert digests(listing) == [base_digest]


def test_a_prune_waits_for_the_lock_and_gives_up_cleanly(
        node: Node, capsys: pytest.CaptureFixture[str],  # noqa: F811
        images: dict[str, str]) -> None:
    image = next(iter(images))
    path = manifest(node.tmp / "m", "once", image)
    assert node.run(capsys, "apply", str(path))[0] == 0
    assert node.run(capsys, "destroy", str(path))[0] == 0
    cached = sorted(os.listdir(Path(node.state_dir, "images")))
    with lock_held_elsewhere(node.state_dir) as holder:
        code, _, err = node.run(capsys, "images", "prune", "--all", "--lock-timeout", "0.3")
        assert code == 1, err
        assert f"state is locked by pid {holder.pid}" in err and "waited 0.3s" in err, err
        assert sorted(os.listdir(Path(node.state_dir, "images"))) == cached
        # One that waits long enough runs once the holder lets go, not before.
        waiting = subprocess.Popen(
            [sys.executable, "-m", "provisioner", "images", "prune", "--all", "--json",
             "--lock-timeout", "60", *node.args()], stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert waiting.poll() is None
        assert sorted(os.listdir(Path(node.state_dir, "images"))) == cached
    out, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 0
    assert digests(json.loads(out), "removed") == [images[image]]


def test_a_prune_racing_applies_never_removes_what_they_use(
        node: Node, capsys: pytest.CaptureFixture[str],  # noqa: F811
        images: dict[str, str]) -> None:
    """An apply (pull, unpack, start) and a prune --all started together: whichever takes
    the writer lock first, the pod ends up running from an image that is still there."""
    image = next(iter(images))
    path = manifest(node.tmp / "race", "race", image)
    base = [sys.executable, "-m", "provisioner"]
    for delay in (0.0, 0.15, 0.3, 0.6):
        apply = subprocess.Popen([*base, "apply", str(path), "--lock-timeout", "60",
                                  *node.args()], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        prune = subprocess.Popen([*base, "images", "prune", "--all", "--json",
                                  "--lock-timeout", "60", *node.args()],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        applied, pruned = apply.communicate(timeout=120), prune.communicate(timeout=120)
        assert apply.returncode == 0, applied
        assert prune.returncode == 0, pruned
        assert node.status(capsys)["Pod/race"]["state"] == "running"
        listing = as_json(capsys, main(["images", "list", "--json", *node.args()]))
        assert listing["images"][0]["pods"] == ["race"]  # type: ignore[index]
        assert Path(node.state_dir, "images", images[image].partition(":")[2],
                    "rootfs", "bin", "busybox").is_file()
        assert node.run(capsys, "destroy", str(path))[0] == 0


def test_images_through_a_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 images: dict[str, str]) -> None:
    (base, base_digest), (other, other_digest) = images.items()
    with running_daemon(tmp_path / "daemon", lock_timeout_s=0.5) as daemon:
        where = ["--target", daemon.target]
        used, gone = manifest(tmp_path, "used", base), manifest(tmp_path, "gone", other)
        for argv in (["apply", str(used)], ["apply", str(gone)], ["destroy", str(gone)]):
            assert main([*argv, *where]) == 0
        capsys.readouterr()
        listing = as_json(capsys, main(["images", "list", "--json", *where]))
        assert digests(listing) == sorted([base_digest, other_digest])
        assert main(["images", "list", *where]) == 0
        assert "2 images (1 in use, 0 dangling)" in capsys.readouterr().out
        # The daemon's writer lock, held elsewhere: refused after its lock timeout.
        with lock_held_elsewhere(daemon.layer.config.state_dir):
            assert main(["images", "prune", "--all", *where]) == 1
            assert "state is locked by pid" in capsys.readouterr().err
        dry = as_json(capsys, main(["images", "prune", "--all", "--dry-run", "--json", *where]))
        assert dry["dry_run"] and digests(dry, "removed") == [other_digest]
        pruned = as_json(capsys, main(["images", "prune", "--all", "--json", *where]))
        assert digests(pruned, "removed") == [other_digest]
        assert pruned["bytes_freed"] == dry["bytes_freed"]
        assert pruned["kept"] == [{"digest": base_digest, "reason": "in use by Pod/used"}]
        listing = as_json(capsys, main(["images", "list", "--json", *where]))
        assert digests(listing) == [base_digest]
        assert main(["destroy", str(used), *where]) == 0


def test_a_daemon_without_the_image_rpcs_is_told_apart(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A server that does not know ListImages / PruneImages (an older daemon): a clear
    error, exit 1, nothing else tried."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    directory = tempfile.mkdtemp(prefix="pn", dir="/tmp")
    socket = os.path.join(directory, "old.sock")
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    try:
        for argv in (["images", "list"], ["images", "prune", "--all"]):
            assert main([*argv, "--target", f"unix://{socket}"]) == 1
            err = capsys.readouterr().err
            assert f"the daemon at unix://{socket} does not offer image collection" in err
            assert "is not implemented there" in err
    finally:
        server.stop(grace=0).wait()
        shutil.rmtree(directory, ignore_errors=True)
