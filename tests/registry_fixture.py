"""A real Debian ``docker-registry`` on 127.0.0.1 for tests, and pushes with skopeo.

- ``local_registry(tmp, tls=False, users=None)``: a context manager that starts
  ``/usr/bin/docker-registry serve`` with a temporary config (storage under ``tmp``,
  a free port on 127.0.0.1), waits until ``/v2/`` answers, yields a :class:`Registry`
  and kills it afterwards. ``tls``: a CA and a server certificate for 127.0.0.1 are
  made with ``openssl`` (``Registry.ca_file``); ``users``: ``{name: password}``, basic
  auth through an htpasswd file (bcrypt, ``htpasswd -B``).
- ``push(registry, layout, name, tag)``: ``skopeo copy oci:LAYOUT docker://HOST/NAME:TAG``;
  returns the manifest digest (the layout's: an OCI manifest is pushed unchanged).
- ``blob_file(registry, digest)``: where the registry stores a blob (to damage it).
- ``auth_json(path, registry, user, password)``: an ``auth.json`` as podman writes it.
- pytest fixtures ``registry`` (a plain-HTTP registry per test module) and ``pushed``
  (busybox pushed to it as ``HOST/library/busybox:1.0``, its manifest digest; needs
  ``busybox_image`` of ``tests.oci_fixture``): import them into a test module and list
  them in its ``__all__``, as ``busybox_image``.

Skips when docker-registry, skopeo or openssl are missing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REGISTRY = "/usr/bin/docker-registry"


@dataclass(frozen=True)
class Registry:
    """A running registry: ``host`` is ``127.0.0.1:PORT``."""

    host: str
    root: Path
    process: subprocess.Popen[bytes]
    ca_file: str = ""
    auth: tuple[str, str] | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _need(*programs: str) -> None:
    for program in programs:
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (./dev setup)")


def _make_certs(directory: Path) -> tuple[Path, Path, Path]:
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run = ["openssl"]
    subprocess.run([*run, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=provisioner test CA", "-keyout", str(ca_key),
                    "-out", str(ca_crt)], check=True, capture_output=True)
    subprocess.run([*run, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(csr)], check=True, capture_output=True)
    subprocess.run([*run, "x509", "-req", "-in", str(csr), "-CA", str(ca_crt),
                    "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
                    "-extfile", str(ext), "-out", str(crt)], check=True, capture_output=True)
    return ca_crt, crt, key


@contextlib.contextmanager
def local_registry(tmp: Path, *, tls: bool = False,
                   users: Mapping[str, str] | None = None) -> Iterator[Registry]:
    """A docker-registry on 127.0.0.1 (see the module docstring); killed on exit."""
    _need(REGISTRY, "skopeo", "openssl", *(["htpasswd"] if users else []))
    tmp.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    lines = ["version: 0.1", "log:", "  level: error", "storage:", "  filesystem:",
             f"    rootdirectory: {tmp / 'data'}", "  delete:", "    enabled: true",
             "http:", f"  addr: 127.0.0.1:{port}"]
    ca = ""
    if tls:
        ca_crt, crt, key = _make_certs(tmp)
        ca = str(ca_crt)
        lines += ["  tls:", f"    certificate: {crt}", f"    key: {key}"]
    auth = None
    if users:
        htpasswd = tmp / "htpasswd"
        entries = [subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                                  capture_output=True, text=True).stdout.strip()
                   for user, password in users.items()]
        htpasswd.write_text("\n".join(entries) + "\n")
        lines += ["auth:", "  htpasswd:", "    realm: provisioner-test",
                  f"    path: {htpasswd}"]
        auth = next(iter(users.items()))
    config = tmp / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    log = open(tmp / "registry.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    registry = Registry(f"127.0.0.1:{port}", tmp, process, ca, auth)
    try:
        _wait_ready(registry)
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(registry: Registry) -> None:
    scheme = "https" if registry.ca_file else "http"
    context = ssl.create_default_context(cafile=registry.ca_file) if registry.ca_file else None
    deadline = time.monotonic() + 30
    while True:
        if registry.process.poll() is not None:
            raise RuntimeError("docker-registry exited: "
                               + (registry.root / "registry.log").read_text())
        try:
            urllib.request.urlopen(f"{scheme}://{registry.host}/v2/", timeout=2,
                                   context=context)
            return
        except urllib.error.HTTPError:
            return  # 401 with auth: it answers
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def auth_json(path: Path, registry: Registry, user: str, password: str) -> Path:
    """An auth.json (podman's format) with ``user``'s credentials for ``registry``."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {registry.host: {"auth": token}}}))
    os.chmod(path, 0o600)
    return path


def push(registry: Registry, layout: str, name: str, tag: str, source_tag: str = "latest"
         ) -> str:
    """Push the image ``layout:source_tag`` as ``HOST/name:tag``; its manifest digest."""
    argv = ["skopeo", "copy", "--quiet"]
    if registry.ca_file:
        certs = registry.root / "certs.d"
        certs.mkdir(exist_ok=True)
        shutil.copy(registry.ca_file, certs / "ca.crt")
        argv += ["--dest-cert-dir", str(certs)]
    else:
        argv.append("--dest-tls-verify=false")
    if registry.auth:
        argv += ["--dest-creds", ":".join(registry.auth)]
    subprocess.run([*argv, f"oci:{layout}:{source_tag}",
                    f"docker://{registry.host}/{name}:{tag}"], check=True,
                   capture_output=True)
    index = json.loads(Path(layout, "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == source_tag:
            return str(entry["digest"])
    raise AssertionError(f"{layout} has no tag {source_tag}")


def blob_file(registry: Registry, digest: str) -> Path:
    """Where the registry keeps the blob ``digest`` (its filesystem storage)."""
    hex_ = digest.partition(":")[2]
    return (registry.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
            / hex_[:2] / hex_ / "data")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP registry on 127.0.0.1 for the test module."""
    with local_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="module")
def pushed(registry: Registry, busybox_image: str) -> str:
    """busybox as HOST/library/busybox:1.0; its manifest digest."""
    return push(registry, busybox_image, "library/busybox", "1.0")
