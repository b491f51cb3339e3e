"""Reading local OCI image layouts: references, index, manifests and verified blobs.

A local image is a directory in the `OCI image layout`_ format (``oci-layout``,
``index.json``, ``blobs/<alg>/<hex>``), as written by
``skopeo copy docker://... oci:/srv/images/busybox:1.36``, ``umoci`` or
``buildah push ... oci:...``. A reference names one:

- ``oci:<absolute path>[:<tag>]``, or the same without ``oci:``.
- The tag selects the manifest of ``index.json`` whose annotation
  ``org.opencontainers.image.ref.name`` equals it. Without a tag: the only manifest,
  else the ones tagged ``latest``. The path may itself contain ``:``: the longest
  prefix that is a layout wins, then the first one of a ``:`` split.
- Nested image indexes (and Docker manifest lists) are followed; where an index lists
  several platforms, the one of this machine (``linux/<arch>``) is taken.

Every blob read is verified against its descriptor's digest (sha256 or sha512) and
size. :func:`resolve` reads only ``index.json`` and the small JSON blobs on the way to
the image manifest; layers are opened by :func:`open_blob` (verified before they are
handed out) when an image is unpacked.

.. _OCI image layout: https://github.com/opencontainers/image-spec/blob/main/image-layout.md
"""

from __future__ import annotations

import json
import os
import re

from provisioner.errors import FailedPrecondition, InvalidArgument, NotFound
from provisioner.records import field, record

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import IO, Any

__all__ = [
    "CONFIG_TYPES",
    "LAYER_TYPES",
    "Descriptor",
    "Manifest",
    "machine_platform",
    "open_blob",
    "parse_reference",
    "read_json_blob",
    "resolve",
]

NO_REGISTRY = ("a registry name or reference is not a local OCI layout: a layout is "
               "oci:/path/of/the/layout[:tag]; a registry image is "
               "[HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST], pulled by the image store")
REF_NAME = "org.opencontainers.image.ref.name"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({"application/vnd.oci.image.config.v1+json",
                          "application/vnd.docker.container.image.v1+json"})
#: Layer media types and their compression ("" plain tar, "gzip", "zstd").
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": "",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}
_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_MAX_JSON = 4 << 20  # index, manifest and config blobs are small; refuse anything huge
_MAX_DEPTH = 8  # nested indexes
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


@record
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and size."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, Any] = field(default_factory=dict)


@record
class Manifest:
    """An image manifest found by :func:`resolve`."""

    layout: str
    descriptor: Descriptor
    sha256: str  # "sha256:<hex>" of the manifest's bytes, whatever its descriptor uses
    config: Descriptor
    layers: tuple[Descriptor, ...]


def machine_platform() -> tuple[str, str]:
    """(architecture, variant) of this machine in OCI terms, e.g. ("amd64", "")."""
    machine = os.uname().machine.lower()  # (platform.machine(); its module costs ~2 ms)
    variant = {"armv7l": "v7", "armv6l": "v6", "aarch64": "v8", "arm64": "v8"}.get(machine, "")
    return _ARCH.get(machine, machine), variant


def parse_reference(reference: str, registry: str = "") -> tuple[str, str]:
    """(absolute layout path, tag or "") of an ``oci:`` or absolute-path reference."""
    if registry:
        raise FailedPrecondition(f"registry {registry!r}: {NO_REGISTRY}")
    body = reference[4:] if reference.startswith("oci:") else reference
    if not body.startswith("/"):
        if reference.startswith("oci:") or body.startswith((".", "~")) or (
                os.path.isfile(os.path.join(body.rpartition(":")[0] or body, "oci-layout"))):
            raise InvalidArgument(f"image {reference!r}: the path of an OCI layout must be "
                                  "absolute (oci:/path/of/the/layout[:tag])")
        raise FailedPrecondition(f"image {reference!r}: {NO_REGISTRY}")
    if "\0" in body:
        raise InvalidArgument(f"image {reference!r}: NUL in the path")
    if os.path.isfile(os.path.join(body, "oci-layout")):
        return os.path.normpath(body), ""
    colons = [i for i, c in enumerate(body) if c == ":"]
    for i in colons:
        if os.path.isfile(os.path.join(body[:i], "oci-layout")):
            return os.path.normpath(body[:i]), body[i + 1:]
    path, tag = body, ""
    if colons and "/" not in body[colons[-1]:]:
        path, tag = body[:colons[-1]], body[colons[-1] + 1:]
    check_layout(path)  # raises: no layout there
    return os.path.normpath(path), tag


def check_layout(path: str) -> None:
    """Raise NotFound / InvalidArgument unless ``path`` is an OCI image layout."""
    if not os.path.isdir(path):
        raise NotFound(f"OCI layout {path}: no such directory")
    marker = os.path.join(path, "oci-layout")
    try:
        with open(marker, "rb") as f:
            data = json.loads(f.read(_MAX_JSON))
    except FileNotFoundError:
        raise InvalidArgument(f"{path} is not an OCI image layout: {marker} is missing") from None
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"{marker}: unreadable or not JSON: {e}") from None
    if not isinstance(data, dict) or not str(data.get("imageLayoutVersion", "")).startswith("1."):
        raise InvalidArgument(f"{marker}: not an OCI layout version 1.x marker")


def resolve(layout: str, tag: str) -> Manifest:
    """The image manifest that ``tag`` (or the default) names in ``layout``."""
    check_layout(layout)
    index_path = os.path.join(layout, "index.json")
    try:
        with open(index_path, "rb") as f:
            raw = f.read(_MAX_JSON + 1)
    except FileNotFoundError:
        raise InvalidArgument(f"OCI layout {layout}: {index_path} is missing") from None
    index = _parse_json(raw, index_path)
    entries = _descriptors(index.get("manifests"), index_path)
    descriptor = _select_top(entries, tag, layout)
    for _ in range(_MAX_DEPTH):
        data, raw = _read_json_with_bytes(layout, descriptor)
        media_type = descriptor.media_type or str(data.get("mediaType") or (
            OCI_INDEX if "manifests" in data else OCI_MANIFEST))
        if media_type in INDEX_TYPES:
            where = f"image index {descriptor.digest} in {layout}"
            descriptor = _select_platform(_descriptors(data.get("manifests"), where), where)
            continue
        if media_type not in MANIFEST_TYPES:
            raise InvalidArgument(f"{descriptor.digest} in {layout}: unsupported media type "
                                  f"{media_type!r} (not an image index or manifest)")
        where = f"manifest {descriptor.digest} in {layout}"
        config = _descriptors([data.get("config")], where)[0]
        if config.media_type not in CONFIG_TYPES:
            raise InvalidArgument(f"{where}: unsupported config media type "
                                  f"{config.media_type!r}")
        layers = _descriptors(data.get("layers", []), where)
        for layer in layers:
            if layer.media_type not in LAYER_TYPES:
                raise InvalidArgument(f"{where}: layer {layer.digest}: unsupported media "
                                      f"type {layer.media_type!r}")
            if LAYER_TYPES[layer.media_type] == "zstd":
                raise InvalidArgument(f"{where}: layer {layer.digest}: zstd-compressed "
                                      "layers are unsupported (convert it to gzip)")
        from provisioner.digests import sha256_hex  # (no OpenSSL for a small manifest)

        return Manifest(layout, descriptor, "sha256:" + sha256_hex(raw),
                        config, tuple(layers))
    raise InvalidArgument(f"OCI layout {layout}: image indexes nested deeper than "
                          f"{_MAX_DEPTH}")


def blob_path(layout: str, digest: str) -> str:
    if not _DIGEST.match(digest):
        raise InvalidArgument(f"OCI layout {layout}: bad or unsupported digest {digest!r}")
    algorithm, _, hex_ = digest.partition(":")
    return os.path.join(layout, "blobs", algorithm, hex_)


def open_blob(layout: str, descriptor: Descriptor) -> IO[bytes]:
    """The blob opened for reading at offset 0, after its digest and size were verified.

    The caller reads from the same open file that was hashed, so a blob replaced by
    rename meanwhile cannot slip in.
    """
    path = blob_path(layout, descriptor.digest)
    try:
        f = open(path, "rb")  # noqa: SIM115 - returned to the caller
    except FileNotFoundError:
        raise NotFound(f"blob {descriptor.digest} is missing from {layout}: {path}") from None
    try:
        algorithm = descriptor.digest.partition(":")[0]
        from provisioner.digests import file_hexdigest  # (small blobs: no OpenSSL)

        got = file_hexdigest(f, algorithm, descriptor.size)
        size = f.tell()
        if f"{algorithm}:{got}" != descriptor.digest:
            raise InvalidArgument(f"blob {descriptor.digest} ({path}) does not match its "
                                  f"digest: its content hashes to {algorithm}:{got}")
        if size != descriptor.size:
            raise InvalidArgument(f"blob {descriptor.digest} ({path}) is {size} bytes, its "
                                  f"descriptor says {descriptor.size}")
        f.seek(0)
        return f
    except BaseException:
        f.close()
        raise


def read_json_blob(layout: str, descriptor: Descriptor) -> dict[str, Any]:
    """A verified JSON blob (index, manifest, config), parsed into an object."""
    return _read_json_with_bytes(layout, descriptor)[0]


def _read_json_with_bytes(layout: str, descriptor: Descriptor) -> tuple[dict[str, Any], bytes]:
    if descriptor.size > _MAX_JSON:
        raise InvalidArgument(f"blob {descriptor.digest} in {layout}: {descriptor.size} "
                              f"bytes is too large for a JSON document")
    with open_blob(layout, descriptor) as f:
        raw = f.read()
    return _parse_json(raw, f"blob {descriptor.digest} in {layout}"), raw


def _parse_json(raw: bytes, where: str) -> dict[str, Any]:
    if len(raw) > _MAX_JSON:
        raise InvalidArgument(f"{where}: too large for a JSON document")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise InvalidArgument(f"{where}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"{where}: not a JSON object")
    return data


def _descriptors(value: object, where: str) -> list[Descriptor]:
    if not isinstance(value, list):
        raise InvalidArgument(f"{where}: expected a list of descriptors")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise InvalidArgument(f"{where}: a descriptor is not a JSON object: {item!r}")
        digest, size = item.get("digest"), item.get("size")
        media_type = item.get("mediaType", "")
        annotations = item.get("annotations") or {}
        plat = item.get("platform") or {}
        if (not isinstance(digest, str) or not _DIGEST.match(digest)
                or not isinstance(size, int) or isinstance(size, bool) or size < 0
                or not isinstance(media_type, str) or not isinstance(annotations, dict)
                or not isinstance(plat, dict)):
            raise InvalidArgument(f"{where}: malformed descriptor {item!r}")
        out.append(Descriptor(media_type, digest, size,
                              {str(k): str(v) for k, v in annotations.items()}, plat))
    return out


def _select_top(entries: list[Descriptor], tag: str, layout: str) -> Descriptor:
    tags = sorted({d.annotations[REF_NAME] for d in entries if REF_NAME in d.annotations})
    listed = ", ".join(tags) if tags else "none"
    if tag:
        chosen = [d for d in entries if d.annotations.get(REF_NAME) == tag]
        if not chosen:
            raise NotFound(f"OCI layout {layout}: no manifest tagged {tag!r} (tags: {listed})")
    elif len(entries) == 1:
        chosen = entries
    elif any(d.annotations.get(REF_NAME) == "latest" for d in entries):
        chosen = [d for d in entries if d.annotations.get(REF_NAME) == "latest"]
    elif not tags and entries and all(d.platform for d in entries):
        chosen = entries  # one untagged image for several platforms
    elif not entries:
        raise NotFound(f"OCI layout {layout}: index.json lists no manifest")
    else:
        raise InvalidArgument(f"OCI layout {layout} holds {len(entries)} manifests and none "
                              f"is tagged 'latest': name one with oci:{layout}:TAG "
                              f"(tags: {listed})")
    return chosen[0] if len(chosen) == 1 else _select_platform(chosen, f"OCI layout {layout}")


def _select_platform(entries: list[Descriptor], where: str) -> Descriptor:
    """The entry for this machine's platform (the only one if none names a platform)."""
    if len(entries) == 1 and not entries[0].platform:
        return entries[0]
    arch, variant = machine_platform()
    fits = [d for d in entries if d.platform.get("os") == "linux"
            and d.platform.get("architecture") == arch]
    exact = [d for d in fits if d.platform.get("variant", "") in ("", variant)]
    if exact or fits:
        return (exact or fits)[0]
    offered = sorted({f"{d.platform.get('os', '?')}/{d.platform.get('architecture', '?')}"
                      for d in entries})
    raise NotFound(f"{where}: no image for linux/{arch} (offered: {', '.join(offered)})")
