"""Registry pulls into the image store, against a real docker-registry on 127.0.0.1.

busybox is pushed with skopeo from the OCI layout the image tests build; the store
pulls it back by tag and by digest, per pull policy, over plain HTTP and over TLS
with basic auth; damaged content is refused with DataLoss and leaves the cache as
it was.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioner.errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from provisioner.imageref import canonical_reference
from provisioner.model import PullPolicy
from provisioner.node.oci.images import ImageStore
from provisioner.node.oci.pull import RegistryOptions, plain_http_allowed, pull_error
from tests.oci_fixture import build_busybox_layout, busybox_image
from tests.registry_fixture import (
    Registry,
    auth_json,
    blob_file,
    local_registry,
    push,
    pushed,
    registry,
)

__all__ = ["busybox_image", "pushed", "registry"]


def image_dirs(store: ImageStore) -> list[str]:
    return sorted(os.listdir(store.dir)) if os.path.isdir(store.dir) else []


def refs(store: ImageStore) -> list[dict[str, str]]:
    folder = Path(store.dir, "refs")
    return [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []


def test_pull_by_tag_unpacks_and_remembers(tmp_path: Path, registry: Registry,
                                           pushed: str) -> None:
    store = ImageStore(str(tmp_path))
    image = store.pull(f"{registry.host}/library/busybox:1.0")
    assert image.digest == pushed
    assert os.path.isfile(os.path.join(image.rootfs, "bin", "busybox"))
    assert image.config.cmd == ("sh",)
    assert refs(store) == [{"reference": f"{registry.host}/library/busybox:1.0",
                            "digest": pushed}]
    assert not [n for n in image_dirs(store) if n.startswith(".")], image_dirs(store)
    # The registry field supplies the host; the image names none.
    again = store.pull("library/busybox:1.0", registry=registry.host)
    assert again.digest == pushed and again.rootfs == image.rootfs


def test_pull_by_digest_and_unknown_tag_or_digest(tmp_path: Path, registry: Registry,
                                                  pushed: str) -> None:
    store = ImageStore(str(tmp_path))
    image = store.pull(f"{registry.host}/library/busybox@{pushed}")
    assert image.digest == pushed
    reference = f"{registry.host}/library/busybox:nope"
    with pytest.raises(NotFound, match=r"image '127\.0\.0\.1:\d+/library/busybox:nope'.*no "
                                       r"such image, tag or digest"):
        store.pull(reference)
    missing = f"{registry.host}/library/busybox@sha256:{'0' * 64}"
    with pytest.raises(NotFound, match="0000000000"):
        store.pull(missing)


def test_policies(tmp_path: Path, registry: Registry, pushed: str) -> None:
    store = ImageStore(str(tmp_path))
    reference = f"{registry.host}/library/busybox:1.0"
    with pytest.raises(FailedPrecondition, match="pullPolicy is Never"):
        store.pull(reference, policy=PullPolicy.NEVER)
    assert image_dirs(store) == []  # Never did not even make the directory
    store.pull(reference)
    assert store.pull(reference, policy=PullPolicy.NEVER).digest == pushed
    # IfNotPresent with the image here does not ask the registry: a registry that is
    # gone (a port nobody listens on) is not noticed...
    gone = ImageStore(str(tmp_path / "other"))
    with pytest.raises(Unavailable, match=r"image '127\.0\.0\.1:1/x:1'.*unreachable"):
        gone.pull("127.0.0.1:1/x:1")
    # ...while Always does ask, and gets the same digest back.
    assert store.pull(reference, policy=PullPolicy.ALWAYS).digest == pushed


def test_layers_are_shared_between_images(tmp_path: Path, registry: Registry,
                                          busybox_image: str, pushed: str) -> None:
    bigger = build_busybox_layout(tmp_path / "bigger", extra_layers=[{"etc/motd": b"hi\n"}])
    digest = push(registry, bigger, "team/bigger", "v1")
    store = ImageStore(str(tmp_path / "state"))
    store.pull(f"{registry.host}/library/busybox:1.0")
    blobs = set(os.listdir(os.path.join(store.dir, "blobs", "sha256")))
    image = store.pull(f"{registry.host}/team/bigger:v1")
    assert image.digest == digest
    assert Path(image.rootfs, "etc", "motd").read_bytes() == b"hi\n"
    added = set(os.listdir(os.path.join(store.dir, "blobs", "sha256"))) - blobs
    assert len(added) == 3, added  # its manifest, config and the one new layer; not busybox


def test_a_tampered_blob_in_the_registry_is_refused_and_nothing_is_stored(
        tmp_path: Path, registry: Registry, busybox_image: str) -> None:
    layout = build_busybox_layout(tmp_path / "victim", extra_layers=[{"victim": b"x" * 4096}])
    digest = push(registry, layout, "team/victim", "v1")
    manifest = json.loads(Path(layout, "blobs", "sha256", digest.partition(":")[2]).read_text())
    layer = manifest["layers"][-1]["digest"]
    path = blob_file(registry, layer)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    store = ImageStore(str(tmp_path / "state"))
    with pytest.raises(DataLoss, match=r"image '127\.0\.0\.1:\d+/team/victim@sha256:[0-9a-f]+'"
                                       r".*does not match its digest; nothing was stored"):
        store.pull(f"{registry.host}/team/victim@{digest}")
    assert store.digests() == set() and refs(store) == []
    assert not os.path.exists(os.path.join(store.dir, "blobs", "sha256",
                                           layer.partition(":")[2]))
    assert not [n for n in image_dirs(store) if n.startswith(".")], image_dirs(store)


def test_a_damaged_cached_blob_is_refused_dropped_and_fetched_again(
        tmp_path: Path, registry: Registry, pushed: str) -> None:
    store = ImageStore(str(tmp_path))
    reference = f"{registry.host}/library/busybox:1.0"
    image = store.pull(reference)
    assert store.remove(image.digest)
    manifest = json.loads(Path(store.dir, "blobs", "sha256",
                               pushed.partition(":")[2]).read_text())
    layer = Path(store.dir, "blobs", "sha256", manifest["layers"][0]["digest"][7:])
    data = bytearray(layer.read_bytes())
    data[100] ^= 1
    layer.write_bytes(bytes(data))  # skopeo reuses a blob that is there: we verify it
    with pytest.raises(DataLoss, match="does not match its digest"):
        store.pull(reference, policy=PullPolicy.ALWAYS)
    assert store.digests() == set() and not layer.exists()
    assert store.pull(reference).digest == pushed  # fetched again, whole


def test_a_killed_pull_leaves_nothing_in_use_and_the_next_one_converges(
        tmp_path: Path, registry: Registry, pushed: str) -> None:
    state = tmp_path / "state"
    reference = f"{registry.host}/library/busybox:1.0"
    code = (f"from provisioner.node.oci.images import ImageStore\n"
            f"ImageStore({str(state)!r}).pull({reference!r})\n")
    for delay in (0.05, 0.15, 0.3):
        child = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        store = ImageStore(str(state))
        # Whatever it reached, no reference points at a partial image.
        for record in refs(store):
            assert store.cached(record["digest"]) is not None
        assert subprocess.run(["pgrep", "-f", f"oci:{store.dir}"], capture_output=True
                              ).stdout == b""  # skopeo died with it
    store = ImageStore(str(state))
    image = store.pull(reference, policy=PullPolicy.ALWAYS)
    assert image.digest == pushed and os.path.isfile(os.path.join(image.rootfs, "bin/busybox"))
    store.stale_after_s = 0.0
    store.prepare()  # a later pull sweeps the dead pulls' staging directories
    assert not [n for n in image_dirs(store) if n.startswith(".")], image_dirs(store)


def test_tls_with_basic_auth_and_the_nodes_ca(tmp_path: Path,
                                             busybox_image: str) -> None:
    password = "s3cret-Pa55"
    with local_registry(tmp_path / "reg", tls=True, users={"alice": password}) as secure:
        digest = push(secure, busybox_image, "private/busybox", "1.0")
        reference = f"{secure.host}/private/busybox:1.0"
        good = auth_json(tmp_path / "auth.json", secure, "alice", password)
        bad = auth_json(tmp_path / "bad.json", secure, "alice", "wrong")
        # TLS on a loopback address is still verified: without the CA, refused.
        no_ca = ImageStore(str(tmp_path / "a"), RegistryOptions(auth_file=str(good)))
        with pytest.raises(FailedPrecondition, match=r"TLS with registry 127\.0\.0\.1:\d+ "
                                                     r"refused.*--registry-ca"):
            no_ca.pull(reference)
        wrong = ImageStore(str(tmp_path / "b"), RegistryOptions(ca_file=secure.ca_file,
                                                                auth_file=str(bad)))
        with pytest.raises(PermissionDenied, match="refused access") as raised:
            wrong.pull(reference)
        assert "wrong" not in str(raised.value) and password not in str(raised.value)
        store = ImageStore(str(tmp_path / "c"), RegistryOptions(ca_file=secure.ca_file,
                                                                auth_file=str(good)))
        assert store.pull(reference).digest == digest
        assert password not in json.dumps(refs(store))
        # Listed insecure: TLS not verified (no CA needed).
        insecure = ImageStore(str(tmp_path / "d"), RegistryOptions(
            insecure=(secure.host,), auth_file=str(good)))
        assert insecure.pull(reference).digest == digest


@pytest.mark.parametrize(("host", "allowed"), [
    ("localhost", True), ("localhost:5000", True), ("127.0.0.1:5000", True),
    ("127.3.2.1", True), ("[::1]:5000", True), ("registry.example.com", False),
    ("10.0.0.1:5000", False), ("insecure.example:5000", True), ("plain.example", True),
])
def test_plain_http_only_for_loopback_or_listed_registries(host: str, allowed: bool) -> None:
    assert plain_http_allowed(host, ("insecure.example:5000", "plain.example")) is allowed


@pytest.mark.parametrize(("stderr", "error", "words"), [
    ('level=fatal msg="pinging container registry r.example: Get \\"https://r.example/v2/\\": '
     'dial tcp: lookup r.example on 10.0.0.1:53: no such host"', Unavailable,
     "unknown registry host 'r.example'"),
    ('level=fatal msg="x509: certificate signed by unknown authority"', FailedPrecondition,
     "TLS with registry r.example refused"),
    ('level=fatal msg="reading manifest 1 in r.example/a: unauthorized: authentication '
     'required"', PermissionDenied, "refused access (401/403"),
    ('level=fatal msg="requested access to the resource is denied"', PermissionDenied,
     "refused access"),
    ('level=fatal msg="reading manifest 1 in r.example/a: manifest unknown"', NotFound,
     "no such image, tag or digest"),
    ('level=fatal msg="writing blob: Digest did not match, expected sha256:1, got sha256:2"',
     DataLoss, "does not match its digest"),
    ('level=fatal msg="Get \\"https://r.example/v2/\\": http: server gave HTTP response to '
     'HTTPS client"', FailedPrecondition, "speaks plain HTTP"),
])
def test_skopeo_failures_map_onto_the_error_hierarchy(stderr: str, error: type,
                                                      words: str) -> None:
    mapped = pull_error("a:1", "r.example/a:1", stderr)
    assert isinstance(mapped, error)
    assert str(mapped).startswith("image 'a:1' (r.example/a:1): ") and words in str(mapped)


@pytest.mark.parametrize(("image", "registry", "canonical"), [
    ("busybox", "", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "", "docker.io/library/busybox:1.36"),
    ("team/app", "", "docker.io/team/app:latest"),
    ("docker.io/busybox", "", "docker.io/library/busybox:latest"),
    ("busybox", "localhost:5000", "localhost:5000/busybox:latest"),
    ("team/app:v2", "registry.example.com", "registry.example.com/team/app:v2"),
    ("ghcr.io/org/app:v1", "registry.example.com", "ghcr.io/org/app:v1"),
    ("app:v1@sha256:" + "b" * 64, "r.example:443", "r.example:443/app@sha256:" + "b" * 64),
])
def test_references_are_made_canonical(image: str, registry: str, canonical: str) -> None:
    assert canonical_reference(image, registry) == canonical


@pytest.mark.parametrize(("image", "registry", "words"), [
    ("oci:/srv/x:v1", "", "is a local OCI layout"),
    ("busybox", "https://r.example", "is not a registry host"),
    ("busybox", "r.example:0", "port 0 is not in 1-65535"),
    ("Busybox", "", "repository names are lowercase"),
])
def test_bad_references_or_registries_are_refused(image: str, registry: str,
                                                  words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        canonical_reference(image, registry)
