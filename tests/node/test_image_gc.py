"""Image garbage collection on the real image store: registry images pulled from a real
docker-registry on 127.0.0.1, pods run with runc, the prune through the local executor
(under the real writer lock).

list shows references, sizes, blobs and the pods using each image; prune keeps what a
pod uses (running or stopped) and, by default, what a reference still names; --all
removes every unused image; shared layer blobs stay while an image needs them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.errors import LockBusy
from provisioner.executors.local import LocalExecutor
from provisioner.image_state import ImageRecord
from provisioner.model import ContainerSpec, PodSpec, PullPolicy
from provisioner.node.oci.image_info import tree_size
from provisioner.node.runtime.layer import NodeLayer
from provisioner.node.runtime.pods import Pods
from tests.oci_fixture import build_busybox_layout, busybox_image
from tests.registry_fixture import Registry, push, registry

__all__ = ["busybox_image", "registry"]
pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc")]


def sleeper(name: str, image: str) -> PodSpec:
    return PodSpec(name=name, stop_grace_s=0.5, containers=(
        ContainerSpec("c", image, command=("sleep", "1000")),))


def blobs(node: NodeLayer) -> set[str]:
    folder = Path(node.config.state_dir, "images", "blobs", "sha256")
    return {f"sha256:{p.name}" for p in folder.iterdir()} if folder.is_dir() else set()


def blob_sizes(node: NodeLayer, digests: set[str]) -> int:
    folder = Path(node.config.state_dir, "images", "blobs", "sha256")
    return sum((folder / d.partition(":")[2]).stat().st_size for d in digests)


def image_dir(node: NodeLayer, digest: str) -> Path:
    return Path(node.config.state_dir, "images", digest.partition(":")[2])


def listed(node: NodeLayer) -> dict[str, ImageRecord]:
    return {i.digest: i for i in LocalExecutor(node).list_images().images}


def test_list_shows_references_sizes_blobs_and_pods(node: NodeLayer, registry: Registry,
                                                     busybox_image: str,
                                                     tmp_path: Path) -> None:
    base = push(registry, busybox_image, "gclist/base", "1.0")
    bigger_layout = build_busybox_layout(tmp_path / "bigger",
                                         extra_layers=[{"etc/motd": b"hi\n"}])
    bigger = push(registry, bigger_layout, "gclist/bigger", "1.0")
    pods = Pods(node)
    spec = sleeper("web", f"{registry.host}/gclist/base:1.0")
    pods.allocate(spec, "s")
    pods.start(spec, "s")
    pods.images.pull(f"{registry.host}/gclist/bigger:1.0")
    layout = build_busybox_layout(tmp_path / "layout", extra_layers=[{"etc/motd": b"l\n"}])
    from_layout = pods.images.pull(f"oci:{layout}").digest

    everything = LocalExecutor(node).list_images()
    shown = {i.digest: i for i in everything.images}
    assert set(shown) == {base, bigger, from_layout}
    assert shown[base].references == (f"{registry.host}/gclist/base:1.0",)
    assert shown[base].pods == ("web",) and shown[base].in_use
    assert shown[bigger].references == (f"{registry.host}/gclist/bigger:1.0",)
    assert shown[bigger].pods == () and not shown[bigger].dangling
    # A local layout's image is named by the layout while it resolves to it.
    assert shown[from_layout].references == (f"oci:{layout}",)
    assert shown[base].size == tree_size(str(image_dir(node, base) / "rootfs"))
    assert shown[base].size > 500_000  # busybox, unpacked
    # The base layer is shared: each image counts it, the cache holds it once.
    assert everything.blob_bytes == blob_sizes(node, blobs(node))
    assert everything.blob_bytes < shown[base].blob_bytes + shown[bigger].blob_bytes
    assert everything.unused_blob_bytes == 0


def test_prune_keeps_what_pods_and_references_use_and_all_removes_the_rest(
        node: NodeLayer, registry: Registry, busybox_image: str, tmp_path: Path) -> None:
    host = registry.host
    base = push(registry, busybox_image, "gc/base", "1.0")
    bigger = push(registry, build_busybox_layout(
        tmp_path / "bigger", extra_layers=[{"etc/motd": b"bigger\n"}]), "gc/bigger", "1.0")
    old = push(registry, build_busybox_layout(
        tmp_path / "old", extra_layers=[{"etc/motd": b"old\n"}]), "gc/moving", "1")
    pods = Pods(node)
    spec = sleeper("web", f"{host}/gc/base:1.0")
    pods.allocate(spec, "s")
    pods.start(spec, "s")
    pods.images.pull(f"{host}/gc/bigger:1.0")
    pods.images.pull(f"{host}/gc/moving:1")
    new = push(registry, build_busybox_layout(
        tmp_path / "new", extra_layers=[{"etc/motd": b"new\n"}]), "gc/moving", "1")
    assert pods.images.pull(f"{host}/gc/moving:1", policy=PullPolicy.ALWAYS).digest == new
    gone_layout = build_busybox_layout(tmp_path / "gone", extra_layers=[{"gone": b"1"}])
    gone = pods.images.pull(f"oci:{gone_layout}").digest
    shutil.rmtree(gone_layout)  # its layout is gone: nothing names it any more
    before = listed(node)
    assert {d for d, i in before.items() if i.dangling} == {old, gone}
    executor = LocalExecutor(node)

    # --dry-run: says what would go, removes nothing.
    blobs_before = blobs(node)
    dry = executor.prune_images(dry_run=True)
    assert dry.dry_run and {i.digest for i in dry.removed} == {old, gone}
    assert set(listed(node)) == set(before) and blobs(node) == blobs_before

    # The default: the dangling images, and the blobs only they needed.
    sizes = {d: tree_size(str(image_dir(node, d))) for d in (old, gone)}
    blob_bytes = {b: blob_sizes(node, {b}) for b in blobs_before}
    result = executor.prune_images()
    assert {i.digest for i in result.removed} == {old, gone}
    assert {k.digest: k.reason for k in result.kept} == {
        base: "in use by Pod/web",
        bigger: f"the current image of {host}/gc/bigger:1.0 (--all removes it)",
        new: f"the current image of {host}/gc/moving:1 (--all removes it)"}
    gone_blobs = blobs_before - blobs(node)
    assert result.removed_blobs == len(gone_blobs) == 3  # old's manifest, config, layer
    assert old in gone_blobs
    assert result.bytes_freed == dry.bytes_freed == sum(sizes.values()) + sum(
        blob_bytes[b] for b in gone_blobs)
    assert set(listed(node)) == {base, bigger, new}
    assert not image_dir(node, old).exists() and not image_dir(node, gone).exists()

    # --all: every image no pod uses; the in-use one and its (shared) layer stay.
    base_blobs = _blobs_of(node, base)
    result = executor.prune_images(all_unused=True)
    assert {i.digest for i in result.removed} == {bigger, new}
    assert [k.digest for k in result.kept] == [base]
    assert blobs(node) == base_blobs
    assert len(list(Path(node.config.state_dir, "images", "refs").iterdir())) == 1  # base's
    # The pod is untouched and starts again from its image; a stopped pod keeps it too.
    assert [s.state for s in pods.start(spec, "s")] == ["running"]
    pods.stop("web")
    assert [i.digest for i in executor.prune_images(all_unused=True).kept] == [base]
    assert [s.state for s in pods.start(spec, "s")] == ["running"]
    # Freed, nothing uses it: it goes, with every blob and reference.
    pods.free("web")
    result = executor.prune_images(all_unused=True)
    assert [i.digest for i in result.removed] == [base]
    assert blobs(node) == set() and listed(node) == {}
    assert list(Path(node.config.state_dir, "images", "refs").iterdir()) == []


def _blobs_of(node: NodeLayer, digest: str) -> set[str]:
    manifest = json.loads((image_dir(node, digest) / "manifest.json").read_bytes())
    return {digest, manifest["config"]["digest"], *(x["digest"] for x in manifest["layers"])}


HOLDER = """\
import sys, time
from provisioner.node.state.lock import WriterLock
lock = WriterLock(sys.argv[1]).acquire(5.0, "holding it")
print("ready", flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def lock_held_elsewhere(state_dir: str) -> Iterator[subprocess.Popen[str]]:
    """The node's writer lock, held by another process until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, state_dir],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        yield holder
    finally:
        holder.kill()
        holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()


def test_a_prune_while_the_lock_is_held_fails_and_changes_nothing(
        node: NodeLayer, busybox_image: str) -> None:
    Pods(node).images.pull(f"oci:{busybox_image}")
    images = Path(node.config.state_dir, "images")
    before = sorted(p.name for p in images.iterdir())
    executor = LocalExecutor(node, lock_timeout_s=0.3, purpose="test")
    busy = r"(?s)state is locked by pid .* for 'holding it'; waited 0.3s"
    with lock_held_elsewhere(node.config.state_dir), pytest.raises(LockBusy, match=busy):
        executor.prune_images(all_unused=True)
    assert sorted(p.name for p in images.iterdir()) == before
    assert [i.digest for i in executor.prune_images(all_unused=True).removed] != []
