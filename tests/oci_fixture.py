"""Real OCI image layouts for tests, built from Debian's busybox-static (no registry here).

API (import from ``tests.oci_fixture``):

- ``busybox_image`` - a session-scoped pytest fixture: the absolute path (``str``) of
  a busybox layout built once per test session, tagged ``latest``. The path is itself
  a valid image reference (``"oci:" + busybox_image`` is the same image). Skips the
  test when ``/bin/busybox`` is missing or not static (``apt-get install
  busybox-static``). Import it into the test module (``from tests.oci_fixture import
  busybox_image``) and list it in the module's ``__all__`` so that ruff takes the
  import as used and the test parameter as no redefinition.
- ``build_busybox_layout(dest, tag="latest", extra_layers=None) -> str``: write the
  busybox image into the layout ``dest`` (created if needed; an existing layout gains
  or re-points the tag) and return ``dest`` as an absolute path string. Layer 1
  (gzip tar): ``/bin/busybox`` plus symlinks ``/bin/<applet> -> busybox`` for
  ``APPLETS``, ``/etc/passwd`` and ``/etc/group`` (root, nobody), ``/tmp`` (1777),
  ``/root``, empty ``/proc /sys /dev /usr/bin``. Config: ``Env ["PATH=/bin:/usr/bin"]``,
  ``Cmd ["sh"]``, ``WorkingDir "/"``. Each of ``extra_layers`` is one more layer
  (``files_layer``): ``{"path": bytes}`` writes a file (0644), ``{"path": None}`` a
  whiteout of it, ``{"dir/.wh..wh..opq": b""}`` makes ``dir`` opaque.
- Lower level, for odd images: ``tar_layer(members)`` (a gzip or plain tar of
  ``(TarInfo, data)`` pairs, for symlinks, hardlinks, devices...), ``files_layer``,
  ``write_layout(dest, layers, config, tag, layer_type, docker)``, ``add_blob``,
  ``busybox_layer()``, ``is_static(path)``.

Everything is deterministic (fixed times, owners, gzip headers): the same inputs give
the same digests.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import platform
import tarfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

BUSYBOX = "/bin/busybox"
MTIME = 1_700_000_000
APPLETS = ("sh", "ash", "echo", "sleep", "cat", "ls", "httpd", "hostname", "id", "ps",
           "true", "false", "env", "pwd", "mkdir", "rm", "touch", "test", "[", "kill",
           "grep", "head", "tail", "wc", "date", "uname", "whoami", "wget", "nc", "mount",
           "ip", "ifconfig", "nslookup", "seq", "printf", "sed", "awk", "stat", "readlink",
           "chmod", "chown", "cp", "mv", "ln", "sort", "tr", "cut", "xargs", "timeout",
           "nproc", "free", "top", "du", "df", "find", "vi", "tee", "yes", "usleep")
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"
BUSYBOX_CONFIG: dict[str, Any] = {"Env": ["PATH=/bin:/usr/bin"], "Cmd": ["sh"],
                                  "WorkingDir": "/"}


def oci_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, *, linkname: str = "",
         uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    """A tar header: ``kind`` tarfile.REGTYPE, DIRTYPE, SYMTYPE, LNKTYPE, CHRTYPE..."""
    member = tarfile.TarInfo(name)
    member.type, member.mode, member.linkname = kind, mode, linkname
    member.uid, member.gid, member.mtime = uid, gid, MTIME
    member.uname = member.gname = ""
    return member


def tar_layer(members: Iterable[tuple[tarfile.TarInfo, bytes | None]], gzipped: bool = True,
              ) -> bytes:
    """A layer: a tar (gzip-compressed unless not ``gzipped``) of ``(header, data)``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members:
            if data is not None:
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0) if gzipped else raw.getvalue()


def files_layer(files: Mapping[str, bytes | None]) -> bytes:
    """A gzip layer: ``bytes`` are files (0644, parents made 0755), ``None`` whiteouts."""
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    dirs: set[str] = set()
    for path, data in files.items():
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in dirs:
                dirs.add(parent)
                members.append((info(parent, tarfile.DIRTYPE, 0o755), None))
        if data is None:
            parts[-1] = ".wh." + parts[-1]
            data = b""
        members.append((info("/".join(parts)), data))
    return tar_layer(members)


def is_static(path: str) -> bool:
    """Whether the ELF executable ``path`` has no program interpreter (runs anywhere)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only: enough for the tests
            return False
        phoff = int.from_bytes(head[32:40], "little")
        phentsize, phnum = (int.from_bytes(head[i:i + 2], "little") for i in (54, 56))
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(int.from_bytes(table[i:i + 4], "little") != 3  # PT_INTERP
               for i in range(0, len(table), phentsize))


@functools.cache
def busybox_layer() -> bytes:
    """The busybox base layer (gzip tar); built once per process."""
    with open(BUSYBOX, "rb") as f:
        binary = f.read()
    members: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (info(d, tarfile.DIRTYPE, 0o755), None)
        for d in ("bin", "etc", "root", "proc", "sys", "dev", "usr", "usr/bin")]
    members.append((info("tmp", tarfile.DIRTYPE, 0o1777), None))
    members.append((info("bin/busybox", mode=0o755), binary))
    members += [(info(f"bin/{applet}", tarfile.SYMTYPE, 0o777, linkname="busybox"), None)
                for applet in APPLETS]
    members += [(info("etc/passwd"), PASSWD), (info("etc/group"), GROUP)]
    return tar_layer(members)


def add_blob(dest: Path, data: bytes) -> str:
    """Store ``data`` as a blob of the layout ``dest``; its digest."""
    digest = hashlib.sha256(data).hexdigest()
    path = dest / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return f"sha256:{digest}"


def _descriptor(media_type: str, dest: Path, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": add_blob(dest, data), "size": len(data)}


def _uncompressed(layer: bytes) -> bytes:
    """The tar of a layer (as it is when not gzip, or broken on purpose by a test)."""
    try:
        return gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer
    except (EOFError, OSError, zlib.error):
        return layer


def write_layout(dest: Path, layers: Sequence[bytes], config: Mapping[str, Any],
                 tag: str = "latest", layer_type: str = LAYER_GZIP, docker: bool = False,
                 ) -> str:
    """Write an image (``layers`` in order, image ``config``) into the layout ``dest``.

    The manifest is added to ``index.json`` with ``tag`` (replacing an entry of the same
    tag; no annotation when ``tag`` is ""). ``layer_type`` is every layer's media type;
    ``docker`` uses the Docker v2 manifest, config and layer media types instead of
    OCI's. Returns ``dest`` as an absolute path.
    """
    manifest_type, config_type = ((DOCKER_MANIFEST, DOCKER_CONFIG) if docker
                                  else (OCI_MANIFEST, OCI_CONFIG))
    layer_type = DOCKER_LAYER if docker else layer_type
    dest = Path(dest).absolute()
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    diff_ids = [hashlib.sha256(_uncompressed(layer)).hexdigest() for layer in layers]
    image_config = {"architecture": oci_arch(), "os": "linux", "config": dict(config),
                    "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]}}
    manifest = {"schemaVersion": 2, "mediaType": manifest_type,
                "config": _descriptor(config_type, dest, json.dumps(image_config).encode()),
                "layers": [_descriptor(layer_type, dest, layer) for layer in layers]}
    entry = _descriptor(manifest_type, dest, json.dumps(manifest).encode())
    if tag:
        entry["annotations"] = {REF_NAME: tag}
    index_path = dest / "index.json"
    index: dict[str, Any] = (json.loads(index_path.read_text()) if index_path.exists()
                             else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    index["manifests"] = [m for m in index["manifests"]
                          if not tag or m.get("annotations", {}).get(REF_NAME) != tag]
    index["manifests"].append(entry)
    tmp = dest / "index.json.tmp"
    tmp.write_text(json.dumps(index))
    os.replace(tmp, index_path)
    return str(dest)


def build_busybox_layout(dest: Path, tag: str = "latest",
                         extra_layers: Sequence[Mapping[str, bytes | None]] | None = None,
                         ) -> str:
    """Write the busybox image (plus ``extra_layers``) as ``tag`` into the layout ``dest``.

    Returns the layout's absolute path (also a valid image reference).
    """
    layers = [busybox_layer(), *(files_layer(files) for files in extra_layers or ())]
    return write_layout(dest, layers, BUSYBOX_CONFIG, tag)


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The absolute path of a busybox OCI layout (tag ``latest``), built once a session."""
    if not os.path.isfile(BUSYBOX) or not is_static(BUSYBOX):
        pytest.skip(f"{BUSYBOX} is missing or not static (apt-get install busybox-static)")
    return build_busybox_layout(tmp_path_factory.mktemp("busybox-oci"))
