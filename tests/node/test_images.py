"""The image store on real OCI layouts: unpacking, caching, tags, whiteouts, and escapes."""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from provisioner.errors import FailedPrecondition, InvalidArgument, NotFound
from provisioner.model import PullPolicy
from provisioner.node.oci.images import Image, ImageConfig, ImageStore
from provisioner.node.oci.layout import machine_platform
from tests.oci_fixture import (
    APPLETS,
    BUSYBOX,
    OCI_INDEX,
    REF_NAME,
    add_blob,
    build_busybox_layout,
    busybox_image,
    files_layer,
    info,
    tar_layer,
    write_layout,
)

__all__ = ["busybox_image"]  # a fixture, used by name (this keeps ruff quiet)
AS_ROOT = os.geteuid() == 0
Members = list[tuple[tarfile.TarInfo, bytes | None]]


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(str(tmp_path / "state"))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A host directory no image may touch, with one file in it."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret").write_bytes(b"host secret")
    return path


def layout(tmp_path: Path, *layers: bytes, tag: str = "latest", name: str = "img") -> str:
    return write_layout(tmp_path / name, layers, {"Cmd": ["sh"]}, tag)


def leftovers(store: ImageStore) -> list[str]:
    return sorted(n for n in os.listdir(store.dir) if n.startswith(".")) \
        if os.path.isdir(store.dir) else []


def untouched(outside: Path) -> None:
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"host secret"
    assert os.stat(outside / "secret").st_nlink == 1


def inside(image: Image, host_path: Path) -> Path:
    """Where a host path lands in the image when it is resolved inside the rootfs."""
    return Path(image.rootfs) / str(host_path).lstrip("/")


def manifest_digest(path: str, tag: str = "latest") -> str:
    index = json.loads(Path(path, "index.json").read_text())
    return str(next(m["digest"] for m in index["manifests"]
                    if m.get("annotations", {}).get(REF_NAME) == tag))


# -- busybox, the cache, digests and remove --------------------------------------------
def test_pull_unpacks_busybox_with_its_config(store: ImageStore, busybox_image: str) -> None:
    image = store.pull("oci:" + busybox_image)
    assert image.reference == "oci:" + busybox_image
    assert image.digest == manifest_digest(busybox_image)
    assert image.rootfs == os.path.join(store.dir, image.digest[7:], "rootfs")
    assert os.path.isabs(image.rootfs)
    root = Path(image.rootfs)
    busybox = root / "bin" / "busybox"
    assert busybox.read_bytes() == Path(BUSYBOX).read_bytes()
    assert stat.S_IMODE(busybox.stat().st_mode) == 0o755
    for applet in APPLETS:
        assert os.readlink(root / "bin" / applet) == "busybox"
    echo = subprocess.run([root / "bin" / "echo", "hello"], capture_output=True, check=True)
    assert echo.stdout == b"hello\n"
    shell = subprocess.run([root / "bin" / "sh", "-c", "echo $((6 * 7))"], capture_output=True,
                           check=True)
    assert shell.stdout == b"42\n"
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert (root / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    if AS_ROOT:
        assert busybox.stat().st_uid == 0 and (root / "tmp").stat().st_gid == 0
    expected = ImageConfig(cmd=("sh",), env=("PATH=/bin:/usr/bin",), working_dir="/")
    assert image.config == expected
    saved = json.loads(Path(image.rootfs).with_name("config.json").read_text())
    assert ImageConfig.from_json(saved, "config.json") == expected
    assert store.digests() == {image.digest}
    assert leftovers(store) == []
    assert stat.S_IMODE(os.stat(store.dir).st_mode) == 0o700


def test_a_second_pull_reads_no_layer(store: ImageStore, tmp_path: Path) -> None:
    path = build_busybox_layout(tmp_path / "bb")
    first = store.pull(f"oci:{path}")
    busybox = Path(first.rootfs, "bin", "busybox").stat()
    for blob in Path(path, "blobs", "sha256").iterdir():  # the layers go; the cache stays
        if blob.stat().st_size > 100_000:
            blob.unlink()
    for reference in (path, f"{path}:latest", f"oci:{path}:latest"):
        again = ImageStore(str(tmp_path / "state")).pull(reference)
        assert (again.digest, again.rootfs, again.config) == (first.digest, first.rootfs,
                                                              first.config)
        assert again.reference == reference
        now = Path(again.rootfs, "bin", "busybox").stat()
        assert (now.st_ino, now.st_mtime_ns, now.st_ctime_ns) == (
            busybox.st_ino, busybox.st_mtime_ns, busybox.st_ctime_ns)
    assert store.digests() == {first.digest}
    other = ImageStore(str(tmp_path / "elsewhere"))
    with pytest.raises(NotFound, match=r"blob sha256:.* is missing"):
        other.pull(path)


def test_remove_and_digests(store: ImageStore, tmp_path: Path) -> None:
    assert store.digests() == set()
    a = store.pull(layout(tmp_path, files_layer({"a": b"a"}), name="a"))
    b = store.pull(layout(tmp_path, files_layer({"b": b"b"}), name="b"))
    assert store.digests() == {a.digest, b.digest}
    assert store.remove(a.digest) is True
    assert not os.path.exists(os.path.dirname(a.rootfs))
    assert store.digests() == {b.digest}
    assert store.remove(a.digest) is False
    assert leftovers(store) == []
    for bad in ("", "sha256:abc", a.digest[7:], "md5:" + "0" * 32):
        with pytest.raises(InvalidArgument, match="sha256:<64 hex digits>"):
            store.remove(bad)
    assert store.pull(a.reference).rootfs == a.rootfs  # unpacked again
    assert store.digests() == {a.digest, b.digest}


def test_concurrent_pulls_of_one_image_agree(tmp_path: Path) -> None:
    path = build_busybox_layout(tmp_path / "bb")
    images: list[Image] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def pull() -> None:
        try:
            barrier.wait()
            images.append(ImageStore(str(tmp_path / "state")).pull(path))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({(i.digest, i.rootfs) for i in images}) == 1
    store = ImageStore(str(tmp_path / "state"))
    assert sorted(os.listdir(store.dir)) == [images[0].digest[7:]]
    assert Path(images[0].rootfs, "bin", "busybox").stat().st_size == os.stat(BUSYBOX).st_size


def test_dead_pulls_are_swept_live_ones_kept(store: ImageStore, tmp_path: Path) -> None:
    path = layout(tmp_path, files_layer({"f": b"x"}))
    store.pull(path)
    dead = Path(store.dir, ".staging-dead", "rootfs", "usr")
    dead.mkdir(parents=True)
    live = Path(store.dir, ".staging-live")
    live.mkdir()
    store.stale_after_s = 0.0
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        store.remove(store.pull(path).digest)  # a pull that hits the cache does not sweep
        assert leftovers(store) == [".staging-live"]
    finally:
        os.close(fd)


# -- references, tags and platforms ---------------------------------------------------
def test_tags_select_the_manifest(store: ImageStore, tmp_path: Path) -> None:
    path = layout(tmp_path, files_layer({"version": b"1"}))
    write_layout(Path(path), [files_layer({"version": b"2"})], {"Cmd": ["v2"]}, "v2")
    assert Path(store.pull(path).rootfs, "version").read_bytes() == b"1"  # latest
    v2 = store.pull(f"oci:{path}:v2")
    assert Path(v2.rootfs, "version").read_bytes() == b"2"
    assert v2.config.cmd == ("v2",)
    assert v2.digest == manifest_digest(path, "v2")
    with pytest.raises(NotFound, match=r"no manifest tagged 'v3' \(tags: latest, v2\)"):
        store.pull(f"{path}:v3")


def test_without_a_tag_several_manifests_need_latest(store: ImageStore,
                                                     tmp_path: Path) -> None:
    path = layout(tmp_path, files_layer({"a": b""}), tag="alpha")
    layout(tmp_path, files_layer({"b": b""}), tag="beta")
    with pytest.raises(InvalidArgument, match=r"none is tagged 'latest'.*tags: alpha, beta"):
        store.pull(path)
    assert Path(store.pull(f"{path}:beta").rootfs, "b").exists()


def test_a_path_with_a_colon(store: ImageStore, tmp_path: Path) -> None:
    path = layout(tmp_path, files_layer({"a": b""}), name="with:colon", tag="t")
    assert Path(store.pull(f"oci:{path}").rootfs, "a").exists()  # the only manifest
    assert Path(store.pull(f"oci:{path}:t").rootfs, "a").exists()


def test_nested_index_picks_this_machines_platform(store: ImageStore, tmp_path: Path) -> None:
    arch, _ = machine_platform()
    other_arch = "s390x" if arch != "s390x" else "amd64"
    path = layout(tmp_path, files_layer({"arch": arch.encode()}), tag="ours")
    layout(tmp_path, files_layer({"arch": other_arch.encode()}), tag="other")
    index_path = Path(path, "index.json")
    entries = json.loads(index_path.read_text())["manifests"]
    for entry in entries:
        tag = entry.pop("annotations")[REF_NAME]
        entry["platform"] = {"os": "linux", "architecture": arch if tag == "ours" else other_arch}
    entries.reverse()  # the other platform first
    nested = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    top = {"mediaType": OCI_INDEX, "digest": add_blob(Path(path), nested.encode()),
           "size": len(nested), "annotations": {REF_NAME: "latest"}}
    index_path.write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    image = store.pull(path)
    assert Path(image.rootfs, "arch").read_text() == arch
    assert image.digest == next(e["digest"] for e in entries
                                if e["platform"]["architecture"] == arch)
    for entry in entries:
        entry["platform"]["architecture"] = other_arch
    nested = json.dumps({"schemaVersion": 2, "manifests": entries})
    top.update(digest=add_blob(Path(path), nested.encode()), size=len(nested))
    index_path.write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    with pytest.raises(NotFound, match=f"no image for linux/{arch}"):
        store.pull(path)


def test_docker_media_types_and_plain_tar_layers(store: ImageStore, tmp_path: Path) -> None:
    plain = tar_layer([(info("plain"), b"p")], gzipped=False)
    path = write_layout(tmp_path / "d", [files_layer({"gz": b"g"}), plain],
                        {"Entrypoint": ["/bin/x"], "User": "65534", "Env": None}, docker=True)
    image = store.pull(path)
    assert {p.name for p in Path(image.rootfs).iterdir()} == {"gz", "plain"}
    assert image.config == ImageConfig(entrypoint=("/bin/x",), user="65534")
    path = write_layout(tmp_path / "o", [plain], {}, layer_type="application/vnd.oci.image"
                        ".layer.v1.tar")
    assert Path(store.pull(path).rootfs, "plain").read_bytes() == b"p"


def test_zstd_layers_are_unsupported(store: ImageStore, tmp_path: Path) -> None:
    path = write_layout(tmp_path / "z", [files_layer({"a": b""})], {},
                        layer_type="application/vnd.oci.image.layer.v1.tar+zstd")
    with pytest.raises(InvalidArgument, match=r"zstd.*unsupported"):
        store.pull(path)
    path = write_layout(tmp_path / "m", [b"\x28\xb5\x2f\xfd" + b"\0" * 60], {},
                        layer_type="application/vnd.oci.image.layer.v1.tar")
    with pytest.raises(InvalidArgument, match="zstd-compressed layers are unsupported"):
        store.pull(path)
    assert store.digests() == set() and leftovers(store) == []


@pytest.mark.parametrize("reference", ["docker.io/library/busybox", "busybox:1.36", "busybox",
                                       "ghcr.io/org/app@sha256:" + "0" * 64])
def test_registry_references_never_pulled_are_refused_with_policy_never(
        store: ImageStore, reference: str) -> None:
    # No network: Never uses only what this node pulled before (tests/node/test_pull.py
    # pulls from a real local registry).
    with pytest.raises(FailedPrecondition, match=r"is not on this node and its pullPolicy "
                                                 r"is Never"):
        store.pull(reference, policy=PullPolicy.NEVER)
    assert store.digests() == set()


def test_a_registry_is_refused_with_a_layout(store: ImageStore, tmp_path: Path) -> None:
    path = layout(tmp_path, files_layer({"a": b""}))
    with pytest.raises(FailedPrecondition, match="not a local OCI layout"):
        store.pull(path, registry="docker.io")


@pytest.mark.parametrize("reference", ["oci:relative/layout", "oci:./x", "./layout", "../x:tag",
                                       "oci:"])
def test_relative_paths_are_refused(store: ImageStore, reference: str) -> None:
    with pytest.raises(InvalidArgument, match="must be absolute"):
        store.pull(reference)


def test_broken_layouts(store: ImageStore, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(NotFound, match=re.escape(f"{missing}: no such directory")):
        store.pull(f"oci:{missing}:v1")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidArgument, match=re.escape(f"{empty}/oci-layout is missing")):
        store.pull(str(empty))
    path = layout(tmp_path, files_layer({"a": b""}))
    index = Path(path, "index.json")
    index.write_text('{"manifests": [')
    with pytest.raises(InvalidArgument, match=re.escape(f"{index}: not valid JSON")):
        store.pull(path)
    index.write_text('{"schemaVersion": 2, "manifests": []}')
    with pytest.raises(NotFound, match="lists no manifest"):
        store.pull(path)
    index.write_text('{"schemaVersion": 2, "manifests": [{"digest": "sha256:12"}]}')
    with pytest.raises(InvalidArgument, match="malformed descriptor"):
        store.pull(path)
    index.unlink()
    with pytest.raises(InvalidArgument, match=re.escape(f"{index} is missing")):
        store.pull(path)


# -- integrity ------------------------------------------------------------------------
def blobs_by_size(path: str) -> list[Path]:
    return sorted(Path(path, "blobs", "sha256").iterdir(), key=lambda p: p.stat().st_size)


def test_a_tampered_layer_is_refused(store: ImageStore, tmp_path: Path) -> None:
    path = layout(tmp_path, files_layer({"big": bytes(range(256)) * 64}))
    blob = blobs_by_size(path)[-1]  # the layer
    data = bytearray(blob.read_bytes())
    data[-20] ^= 0xFF  # same size, other content
    blob.write_bytes(bytes(data))
    with pytest.raises(InvalidArgument, match=f"blob sha256:{blob.name} .* does not match its "
                                              "digest"):
        store.pull(path)
    blob.write_bytes(bytes(data) + b"\0")
    with pytest.raises(InvalidArgument, match=f"blob sha256:{blob.name}.*does not match"):
        store.pull(path)
    assert store.digests() == set() and leftovers(store) == []


def test_a_tampered_manifest_is_refused(store: ImageStore, tmp_path: Path) -> None:
    path = layout(tmp_path, files_layer({"a": b""}))
    digest = manifest_digest(path)
    blob = Path(path, "blobs", "sha256", digest[7:])
    blob.write_text(blob.read_text().replace('"schemaVersion": 2', '"schemaVersion": 3'))
    with pytest.raises(InvalidArgument, match=f"blob {digest} .* does not match its digest"):
        store.pull(path)


@pytest.mark.parametrize("kind", ["garbage", "truncated gzip", "truncated tar"])
def test_layers_that_are_no_tar_are_refused(store: ImageStore, tmp_path: Path,
                                            kind: str) -> None:
    good = tar_layer([(info("f"), bytes(range(256)) * 200)], gzipped=kind != "truncated tar")
    data = {"garbage": b"this is not a tar archive" * 40, "truncated gzip": good[:-300],
            "truncated tar": good[:2000]}[kind]
    with pytest.raises(InvalidArgument, match=r"layer 1/1 \(sha256:.*not a valid .*tar"):
        store.pull(layout(tmp_path, data))
    assert store.digests() == set() and leftovers(store) == []


def test_a_missing_blob(store: ImageStore, tmp_path: Path) -> None:
    path = layout(tmp_path, files_layer({"a": b""}))
    blob = blobs_by_size(path)[-1]
    blob.unlink()
    where = re.escape(str(blob))
    with pytest.raises(NotFound, match=rf"blob sha256:{blob.name} is missing .*: {where}"):
        store.pull(path)
    assert leftovers(store) == []


# -- whiteouts --------------------------------------------------------------------------
@pytest.mark.parametrize("marker_first", [True, False])
def test_whiteouts_and_opaque_directories(store: ImageStore, tmp_path: Path,
                                          marker_first: bool) -> None:
    lower = files_layer({"etc/keep": b"k", "etc/drop": b"d", "d/a": b"", "d/sub/c": b"",
                         "gone/x": b"", "kept/x": b""})
    opaque: Members = [(info("d/.wh..wh..opq"), b"")]
    new: Members = [(info("d/sub", tarfile.DIRTYPE, 0o755), None), (info("d/new"), b"n"),
                    (info("d/sub/n"), b"")]
    upper = tar_layer([(info("etc/.wh.drop"), b""), (info(".wh.gone"), b""),
                       (info("etc/.wh.never-there"), b""), (info("nodir/.wh.x"), b""),
                       (info("kept/.wh..wh.plnk"), b""),
                       (info("d", tarfile.DIRTYPE, 0o750), None),
                       *(opaque + new if marker_first else new + opaque)])
    root = Path(store.pull(layout(tmp_path, lower, upper)).rootfs)
    assert (root / "etc" / "keep").read_bytes() == b"k"
    assert not (root / "etc" / "drop").exists()
    assert not (root / "gone").exists() and not (root / "nodir").exists()
    assert sorted(os.listdir(root / "d")) == ["new", "sub"]
    assert os.listdir(root / "d" / "sub") == ["n"]
    assert stat.S_IMODE((root / "d").stat().st_mode) == 0o750
    assert os.listdir(root / "kept") == ["x"]
    for _, dirs, files in os.walk(root):
        assert not [n for n in dirs + files if n.startswith(".wh.")]


# -- escapes ------------------------------------------------------------------------------
def test_absolute_names_stay_inside(store: ImageStore, tmp_path: Path, outside: Path) -> None:
    image = store.pull(layout(tmp_path, tar_layer([(info(f"{outside}/abs"), b"x")])))
    untouched(outside)
    assert inside(image, outside / "abs").read_bytes() == b"x"


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "./../escape", ".."])
def test_dotdot_names_are_refused(store: ImageStore, tmp_path: Path, name: str) -> None:
    path = layout(tmp_path, tar_layer([(info("ok"), b""), (info(name), b"x")]))
    with pytest.raises(InvalidArgument, match=re.escape(f"member {name!r} has a '..' component")):
        store.pull(path)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "state" / "escape").exists()
    assert store.digests() == set() and leftovers(store) == []


@pytest.mark.parametrize("same_layer", [False, True])
def test_writes_through_symlinks_stay_inside(store: ImageStore, tmp_path: Path,
                                             outside: Path, same_layer: bool) -> None:
    up = "../" * 30
    links: Members = [
        (info("evil", tarfile.SYMTYPE, linkname=str(outside)), None),
        (info("rel", tarfile.SYMTYPE, linkname=up + str(outside).lstrip("/")), None),
        (info("etc", tarfile.SYMTYPE, linkname="/"), None),
        (info("chain", tarfile.SYMTYPE, linkname="etc/rel"), None)]
    writes: Members = [(info("evil/pwned"), b"1"), (info("rel/pwned2"), b"2"),
                       (info(f"etc/{str(outside).lstrip('/')}/pwned3"), b"3"),
                       (info("chain/pwned4"), b"4"), (info("evil/secret"), b"overwrite")]
    layers = [tar_layer(links + writes)] if same_layer else [tar_layer(links), tar_layer(writes)]
    image = store.pull(layout(tmp_path, *layers))
    untouched(outside)
    landed = inside(image, outside)
    assert sorted(os.listdir(landed)) == ["pwned", "pwned2", "pwned3", "pwned4", "secret"]
    assert (landed / "secret").read_bytes() == b"overwrite"
    assert os.readlink(Path(image.rootfs, "evil")) == str(outside)  # kept as it was


def test_a_file_replaces_a_symlink_instead_of_writing_through(
        store: ImageStore, tmp_path: Path, outside: Path) -> None:
    lower = tar_layer([(info("victim", tarfile.SYMTYPE, linkname=str(outside / "secret")),
                        None),
                       (info("dir", tarfile.SYMTYPE, linkname=str(outside)), None)])
    upper = tar_layer([(info("victim", mode=0o600), b"mine"),
                       (info("dir", tarfile.DIRTYPE, 0o755), None), (info("dir/f"), b"f")])
    image = store.pull(layout(tmp_path, lower, upper))
    untouched(outside)
    victim = Path(image.rootfs, "victim")
    assert not victim.is_symlink() and victim.read_bytes() == b"mine"
    assert not Path(image.rootfs, "dir").is_symlink()
    assert Path(image.rootfs, "dir", "f").read_bytes() == b"f"


@pytest.mark.parametrize("linkname", ["../outside/secret", "{outside}/secret", "evil/secret",
                                      "missing", "adir"])
def test_hardlinks_outside_are_refused(store: ImageStore, tmp_path: Path, outside: Path,
                                       linkname: str) -> None:
    linkname = linkname.format(outside=outside)
    lower = tar_layer([(info("evil", tarfile.SYMTYPE, linkname=str(outside)), None),
                       (info("adir", tarfile.DIRTYPE, 0o755), None)])
    upper = tar_layer([(info("h", tarfile.LNKTYPE, linkname=linkname), None)])
    with pytest.raises(InvalidArgument, match="member 'h'"):
        store.pull(layout(tmp_path, lower, upper))
    untouched(outside)
    assert store.digests() == set() and leftovers(store) == []


def test_hardlinks_inside_modes_and_owners_are_kept(store: ImageStore, tmp_path: Path) -> None:
    layer = tar_layer([
        (info("bin", tarfile.DIRTYPE, 0o755), None),
        (info("bin/su", mode=0o4755, uid=0), b"setuid"),
        (info("bin/su-again", tarfile.LNKTYPE, linkname="bin/su"), None),
        (info("/bin/abs-again", tarfile.LNKTYPE, linkname="/bin/su"), None),
        (info("home", tarfile.DIRTYPE, 0o755), None),
        (info("home/user", tarfile.DIRTYPE, 0o700, uid=1000, gid=1000), None),
        (info("home/user/f", mode=0o640, uid=1000, gid=100), b"f"),
        (info("home/user/link", tarfile.SYMTYPE, linkname="f", uid=1000, gid=1000), None),
        (info("fifo", tarfile.FIFOTYPE, 0o600), None)])
    root = Path(store.pull(layout(tmp_path, layer)).rootfs)
    su = (root / "bin" / "su").stat()
    assert stat.S_IMODE(su.st_mode) == 0o4755
    assert su.st_nlink == 3 and (root / "bin" / "su-again").stat().st_ino == su.st_ino
    assert (root / "bin" / "abs-again").stat().st_ino == su.st_ino
    assert stat.S_IMODE((root / "home" / "user").stat().st_mode) == 0o700
    assert (root / "home" / "user" / "f").stat().st_mtime == 1_700_000_000
    assert stat.S_ISFIFO((root / "fifo").lstat().st_mode)
    if AS_ROOT:
        assert (root / "home" / "user" / "f").stat()[4:6] == (1000, 100)
        assert (root / "home" / "user" / "link").lstat()[4:6] == (1000, 1000)


def test_device_nodes_are_skipped(store: ImageStore, tmp_path: Path) -> None:
    null = info("dev/null", tarfile.CHRTYPE, 0o666)
    null.devmajor, null.devminor = 1, 3
    disk = info("sda", tarfile.BLKTYPE, 0o660)
    disk.devmajor, disk.devminor = 8, 0
    layer = tar_layer([(info("dev", tarfile.DIRTYPE, 0o755), None), (null, None), (disk, None),
                       (info("dev/regular"), b"r")])
    root = Path(store.pull(layout(tmp_path, layer)).rootfs)
    assert os.listdir(root / "dev") == ["regular"]
    assert not (root / "sda").exists()


def test_symlink_loops_and_files_in_the_way(store: ImageStore, tmp_path: Path) -> None:
    loop = tar_layer([(info("l1", tarfile.SYMTYPE, linkname="l2"), None),
                      (info("l2", tarfile.SYMTYPE, linkname="/l1"), None), (info("l1/x"), b"")])
    with pytest.raises(InvalidArgument, match="member 'l1/x' lies below a symlink loop"):
        store.pull(layout(tmp_path, loop, name="loop"))
    in_the_way = tar_layer([(info("f"), b""), (info("f/x"), b"")])
    with pytest.raises(InvalidArgument, match="member 'f/x' lies below /f, which is not a dir"):
        store.pull(layout(tmp_path, in_the_way, name="way"))
    assert leftovers(store) == []
