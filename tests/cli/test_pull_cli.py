"""Pods from a registry through plan / apply on this machine and through a daemon: a
real docker-registry on 127.0.0.1, real skopeo, runc and cgroups."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioner.cli import main
from tests.cli.test_node_cli import Node, node  # noqa: F401 - the fixture
from tests.daemon.node_harness import running_daemon
from tests.oci_fixture import build_busybox_layout, busybox_image
from tests.registry_fixture import Registry, auth_json, local_registry, push, pushed, registry

__all__ = ["busybox_image", "pushed", "registry"]
pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc")]

POD = """\
apiVersion: provisioner/v1
kind: Pod
metadata: {name: shop}
spec:
  stopGracePeriod: 1s
  containers:
    - name: web
      image: IMAGE
      command: ["sh", "-c", "echo served by $(hostname); exec sleep 1000"]
"""


def write_pod(target: Node, image: str, extra: str = "") -> Path:
    path = target.tmp / "pod.yaml"
    path.write_text(POD.replace("IMAGE", image) + extra)
    return path


def wait_for_log(target: Node, capsys: pytest.CaptureFixture[str], text: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        _, out, _ = target.run(capsys, "logs", "shop.web")
        if text in out:
            return
        assert time.monotonic() < deadline, out
        time.sleep(0.05)


def test_a_pod_from_a_registry_plans_its_pull_and_runs(
        node: Node, capsys: pytest.CaptureFixture[str], registry: Registry,  # noqa: F811
        pushed: str) -> None:
    image = f"{registry.host}/library/busybox:1.0"
    manifest = write_pod(node, image)
    code, out, err = node.run(capsys, "plan", str(manifest))
    assert code == 0, out + err
    assert f"allocate Pod/shop: created; pulls {image}" in " ".join(out.split()), out
    code, out, err = node.run(capsys, "apply", str(manifest))
    assert code == 0, out + err
    assert node.status(capsys)["Pod/shop"]["state"] == "running"
    wait_for_log(node, capsys, "served by shop")
    # Pulled once: a pod replaced with another command pulls nothing.
    path = write_pod(node, image)
    path.write_text(path.read_text().replace("sleep 1000", "sleep 2000"))
    code, out, _ = node.run(capsys, "plan", str(manifest))
    assert code == 0 and "replace" in out and "pulls" not in out, out
    # By digest, with the host from the registry field and policy Always: pulls again.
    path.write_text(POD.replace("IMAGE", f"library/busybox@{pushed}").replace(
        "      command:", f"      registry: {registry.host}\n      pullPolicy: Always\n"
                          "      command:"))
    code, out, err = node.run(capsys, "plan", str(manifest))
    assert code == 0 and f"pulls {registry.host}/library/busybox@{pushed}" in out, out + err
    code, out, err = node.run(capsys, "apply", str(manifest))
    assert code == 0, out + err
    assert node.status(capsys)["Pod/shop"]["state"] == "running"
    code, out, _ = node.run(capsys, "destroy", str(manifest))
    assert code == 0 and node.status(capsys) == {}


@pytest.mark.parametrize(("image", "expected"), [
    ("{host}/library/busybox:nope", "no such image, tag or digest"),
    ("127.0.0.1:1/library/busybox:1.0", "unreachable"),
])
def test_a_failed_pull_names_the_reference_and_changes_nothing(
        node: Node, capsys: pytest.CaptureFixture[str], registry: Registry,  # noqa: F811
        pushed: str, image: str, expected: str) -> None:
    image = image.format(host=registry.host)
    code, out, err = node.run(capsys, "apply", str(write_pod(node, image)))
    assert code != 0, out + err
    assert f"image {image!r}" in out + err and expected in out + err, out + err
    assert node.status(capsys).get("Pod/shop", {}).get("state") != "running"


def test_policy_never_is_refused_at_plan_until_the_image_is_here(
        node: Node, capsys: pytest.CaptureFixture[str], registry: Registry,  # noqa: F811
        pushed: str) -> None:
    image = f"{registry.host}/library/busybox:1.0"
    never = write_pod(node, image).read_text().replace(
        "      command:", "      pullPolicy: Never\n      command:")
    manifest = node.tmp / "never.yaml"
    manifest.write_text(never)
    code, out, err = node.run(capsys, "plan", str(manifest))
    assert code == 1 and "never.yaml:1:1: Pod/shop: container 'web': " in err, out + err
    assert "is not on this node and its pullPolicy is Never" in err
    code, out, err = node.run(capsys, "apply", str(write_pod(node, image)))
    assert code == 0, out + err
    node.run(capsys, "destroy", str(node.tmp / "pod.yaml"))
    code, out, err = node.run(capsys, "apply", str(manifest))
    assert code == 0 and "pulls" not in out, out + err
    assert node.status(capsys)["Pod/shop"]["state"] == "running"


def test_tls_auth_and_the_ca_flag(node: Node, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                  busybox_image: str, tmp_path: Path) -> None:
    password = "pa55-word-xyz"
    with local_registry(tmp_path / "reg", tls=True, users={"bob": password}) as secure:
        push(secure, busybox_image, "private/busybox", "1.0")
        image = f"{secure.host}/private/busybox:1.0"
        manifest = write_pod(node, image)
        auth = auth_json(tmp_path / "auth.json", secure, "bob", password)
        code, out, err = node.run(capsys, "apply", str(manifest), "--registry-auth-file",
                                  str(auth))
        assert code != 0 and "TLS with registry" in err and repr(image) in err, out + err
        code, out, err = node.run(capsys, "apply", str(manifest), "--registry-ca",
                                  secure.ca_file)
        assert code != 0 and "refused access" in err, out + err
        code, out, err = node.run(capsys, "apply", str(manifest), "--registry-ca",
                                  secure.ca_file, "--registry-auth-file", str(auth))
        assert code == 0, out + err
        assert password not in out + err
        assert node.status(capsys)["Pod/shop"]["state"] == "running"
        code, out, err = node.run(capsys, "plan", str(manifest), "--insecure-registry",
                                  "https://x")
        assert code == 64 and "--insecure-registry" in err, err


def test_sigkill_during_the_pull_converges_on_the_next_apply(
        node: Node, registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    # A big enough image for the pull to take a while (random bytes do not compress).
    big = build_busybox_layout(tmp_path / "big", extra_layers=[{"blob": os.urandom(48 << 20)}])
    push(registry, big, "team/big", "v1")
    manifest = write_pod(node, f"{registry.host}/team/big:v1")
    command = [sys.executable, "-m", "provisioner", "apply", str(manifest), *node.args()]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while subprocess.run(["pgrep", "-f", f"docker://{registry.host}/team/big"],
                         capture_output=True).returncode != 0:
        assert first.poll() is None and time.monotonic() < deadline, "no pull seen"
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", f"docker://{registry.host}/team/big"],
                          capture_output=True).returncode != 0, "skopeo outlived the apply"
    second = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    third = subprocess.run([*command[:3], "status", "--json", *node.args()],
                           capture_output=True, text=True, timeout=60, check=False)
    assert '"state":"running"' in third.stdout, third.stdout


def test_a_daemon_pulls_from_a_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        registry: Registry, pushed: str) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(POD.replace("IMAGE", f"{registry.host}/library/busybox:1.0"))
    with running_daemon(tmp_path / "daemon") as daemon:
        assert main(["plan", str(path), "--target", daemon.target]) == 0
        assert f"pulls {registry.host}/library/busybox:1.0" in capsys.readouterr().out
        assert main(["apply", str(path), "--target", daemon.target]) == 0, \
            capsys.readouterr()
        capsys.readouterr()
        assert main(["status", "--json", "--target", daemon.target]) == 0
        assert '"running"' in capsys.readouterr().out
        assert main(["destroy", str(path), "--target", daemon.target]) == 0


def test_the_daemon_takes_the_registry_options(tmp_path: Path) -> None:
    from provisioner.cli.daemon_commands import daemon_config
    from provisioner.cli.main import build_parser
    from provisioner.errors import UsageError

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    parse = build_parser().parse_args
    config = daemon_config(parse(["daemon", "--registry-ca", str(ca), "--insecure-registry",
                                  "r.example:5000", "--insecure-registry", "plain.example"]))
    assert config.registry_ca == str(ca)
    assert config.insecure_registries == ("r.example:5000", "plain.example")
    with pytest.raises(UsageError, match=r"--registry-ca .*: no such file"):
        daemon_config(parse(["daemon", "--registry-ca", str(tmp_path / "missing.pem")]))
    with pytest.raises(UsageError, match="--insecure-registry: registry 'http://x'"):
        daemon_config(parse(["daemon", "--insecure-registry", "http://x"]))
