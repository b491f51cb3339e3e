"""Which images the node's pods use, and the image cache listed and pruned around them.

An image is **in use** when a container of a pod the node has uses it: every pod the
store records (allocated, running or stopped - a stopped pod starts again from the
image its allocate unpacked), and every pod that has an ``images.json`` under
``<state>/pods/`` (an allocate that unpacked its images but died before recording the
pod; the next reconcile frees it). For each container the digest comes from the pod's
``images.json`` (what its allocate unpacked) and, besides, from what its reference
names in the image store now (a registry reference's last pull, a layout's current
manifest), so an image a pod may start from is never taken for unused.

:func:`list_node_images` and :func:`prune_node_images` hand that to
:mod:`provisioner.node.oci.image_gc`. A prune runs under the node's writer lock (the
caller's: the local executor's ``locked()``, as an apply), so no allocate, start or pull
of this node interleaves with it.
"""

from __future__ import annotations

import contextlib
import json
import os

from provisioner.errors import ProvisionerError
from provisioner.image_state import ImageList, ImagePrune
from provisioner.model import Kind, PodSpec
from provisioner.model_json import loads
from provisioner.node.oci.image_gc import list_images, prune_images
from provisioner.node.oci.images import ImageStore
from provisioner.node.oci.layout import parse_reference, resolve
from provisioner.node.oci.registry_images import find_pulled
from provisioner.node.runtime.layer import NodeLayer

__all__ = ["images_in_use", "list_node_images", "prune_node_images"]


def images_in_use(layer: NodeLayer, store: ImageStore | None = None) -> dict[str, list[str]]:
    """Image digest -> the names of the pods whose containers use it."""
    store = store or ImageStore(layer.config.state_dir, layer.config.registries)
    use: dict[str, set[str]] = {}
    pods_dir = os.path.join(layer.config.state_dir, "pods")
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for pod in sorted(os.listdir(pods_dir)):
            for digest in _remembered(os.path.join(pods_dir, pod, "images.json")):
                use.setdefault(digest, set()).add(pod)
    for record in layer.store.list_resources(Kind.POD):
        spec = loads(record.spec_json)
        if not isinstance(spec, PodSpec):
            continue
        for container in spec.containers:
            digest = _current_digest(store, container.image, container.registry)
            if digest:
                use.setdefault(digest, set()).add(spec.name)
    return {digest: sorted(pods) for digest, pods in use.items()}


def list_node_images(layer: NodeLayer) -> ImageList:
    """The node's image cache, each image with the pods using it."""
    store = ImageStore(layer.config.state_dir, layer.config.registries)
    return list_images(store, images_in_use(layer, store))


def prune_node_images(layer: NodeLayer, all_unused: bool = False,
                      dry_run: bool = False) -> ImagePrune:
    """Remove the images no pod uses (dangling ones; every unused one with
    ``all_unused``) and the blobs no remaining image needs. Under the writer lock."""
    store = ImageStore(layer.config.state_dir, layer.config.registries)
    return prune_images(store, images_in_use(layer, store), all_unused, dry_run)


def _remembered(path: str) -> list[str]:
    """The digests a pod's ``images.json`` names (empty when there is none)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return []
    return [str(v) for v in data.values()] if isinstance(data, dict) else []


def _current_digest(store: ImageStore, image: str, registry: str) -> str:
    """The digest ``image`` names in the store now ("" when none is known)."""
    try:
        if image.startswith(("oci:", "/")):
            layout, tag = parse_reference(image, registry)
            return resolve(layout, tag).sha256
        found = find_pulled(store, image, registry)
    except (ProvisionerError, OSError, ValueError):
        return ""
    return found.digest if found is not None else ""
