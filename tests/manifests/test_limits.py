"""Every number the node acts on is bounded at validate, with the line and the limit;
image references are checked for syntax at validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner import limits
from provisioner.cli import main
from provisioner.errors import InvalidArgument
from provisioner.imageref import parse_image_reference
from provisioner.manifest import load
from provisioner.manifest.schema_check import load_schema

EXECUTABLE = """apiVersion: provisioner/v1
kind: Executable
metadata:
  name: sleeper
spec:
  command: "sleep 1000"
  stopGracePeriod: {grace}
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return str(path)


def test_a_huge_grace_period_is_refused_with_its_line_and_the_limit(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, EXECUTABLE.format(grace="99999999h"))
    assert main(["validate", path]) == 2
    err = capsys.readouterr().err
    assert f"{path}:7:20: spec.stopGracePeriod: '99999999h' is longer than the limit, 1h" in err


@pytest.mark.parametrize("grace", ["1h", "59m60s", "3600s", "0s", "500ms"])
def test_grace_periods_up_to_the_limit_pass(tmp_path: Path, grace: str) -> None:
    assert load([write(tmp_path, EXECUTABLE.format(grace=grace))]).ok


@pytest.mark.parametrize("grace", ["1h1ms", "61m", "3601s", "9" * 400 + "h"])
def test_grace_periods_past_the_limit_are_refused(tmp_path: Path, grace: str) -> None:
    result = load([write(tmp_path, EXECUTABLE.format(grace=grace))])
    assert [i.path for i in result.issues] == ["spec.stopGracePeriod"]
    message = result.issues[0].message
    assert "limit" in message and ("1h" in message or "32" in message), message


def test_pod_grace_period_is_bounded_too(tmp_path: Path) -> None:
    text = ("apiVersion: provisioner/v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
            "  stopGracePeriod: 2h\n  containers: [{name: a, image: 'oci:/srv/x:latest'}]\n")
    result = load([write(tmp_path, text)])
    assert [(i.line, i.path) for i in result.issues] == [(5, "spec.stopGracePeriod")]


def test_numbers_sizes_and_counts_name_their_limit(tmp_path: Path) -> None:
    env = "\n".join(f"    V{i}: x" for i in range(limits.MAX_ENV_ENTRIES + 1))
    text = (
        "apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: web}\n"
        "spec: {cpu: {weight: 10001, max: 99999999999999}}\n---\n"
        "apiVersion: provisioner/v1\nkind: Executable\nmetadata: {name: big}\n"
        f"spec:\n  command: '{'x' * (limits.MAX_COMMAND_CHARS + 1)}'\n  env:\n{env}\n")
    result = load([write(tmp_path, text)])
    found = {i.path: i.message for i in result.issues}
    assert found["spec.cpu.weight"] == "10001 is greater than the maximum of 10000"
    assert found["spec.cpu.max"] == (f"99999999999999 is greater than the maximum of "
                                     f"{limits.MAX_CPU_MAX_US}")
    assert found["spec.command"].endswith(
        f"is {limits.MAX_COMMAND_CHARS + 1} characters long; the limit is "
        f"{limits.MAX_COMMAND_CHARS}")
    assert found["spec.env"] == f"1025 entries; the limit is {limits.MAX_ENV_ENTRIES}"


def test_the_schemas_carry_the_limits() -> None:
    definitions = load_schema("executable.schema.json")["definitions"]
    grace = definitions["provisioner.v1.ExecutableSpec"]["properties"]["stopGracePeriod"]
    assert grace["format"] == "duration" and grace["maxLength"] == limits.MAX_DURATION_CHARS
    assert "At most 1h." in grace["description"]
    cpu = load_schema("cell.schema.json")["definitions"]["aurae.runtime.v0.CpuController"]
    assert cpu["properties"]["max"]["maximum"] == limits.MAX_CPU_MAX_US
    assert cpu["properties"]["weight"]["maximum"] == limits.MAX_CPU_WEIGHT
    pod = load_schema("pod.schema.json")["definitions"]
    assert pod["provisioner.v1.PodSpec"]["properties"]["containers"]["maxItems"] == 64
    image = pod["provisioner.v1.ContainerSpec"]["properties"]["image"]
    assert image["format"] == "image-reference"


POD = """apiVersion: provisioner/v1
kind: Pod
metadata:
  name: shop
spec:
  containers:
    - name: app
      image: {image}
"""


@pytest.mark.parametrize("image", [
    "oci:/srv/images/busybox:latest", "/srv/images/busybox", "busybox", "library/busybox:1.36",
    "localhost:5000/team/app:v2", "registry.example.com/app@sha256:" + "a" * 64,
    "[::1]:5000/app:v1",
])
def test_well_formed_image_references_pass_validate(tmp_path: Path, image: str) -> None:
    assert load([write(tmp_path, POD.format(image=f"'{image}'"))]).ok


@pytest.mark.parametrize(("image", "why"), [
    ("oci:busybox", "must be absolute"),
    ("Busybox", "lowercase"),
    ("busybox@sha256:123", "64 lowercase hex"),
    ("oci:/srv/x:bad tag!", "is not a tag"),
    ("localhost:99999/app", "port 99999"),
    ("two words", "space"),
])
def test_malformed_image_references_are_refused_at_validate_with_their_line(
        tmp_path: Path, image: str, why: str) -> None:
    result = load([write(tmp_path, POD.format(image=f"'{image}'"))])
    assert [(i.line, i.path) for i in result.issues] == [(8, "spec.containers[0].image")]
    assert why in result.issues[0].message


def test_image_reference_parts() -> None:
    ref = parse_image_reference("localhost:5000/team/app:v2@sha256:" + "b" * 64)
    assert (ref.host, ref.name, ref.tag, ref.is_layout) == ("localhost:5000", "team/app",
                                                             "v2", False)
    assert parse_image_reference("library/busybox").host == ""
    assert parse_image_reference("oci:/srv/x:v1").layout == "/srv/x:v1"
    with pytest.raises(InvalidArgument):
        parse_image_reference("")


def test_apply_parallelism_is_bounded_on_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, EXECUTABLE.format(grace="1s"))
    assert main(["apply", path, "--parallelism", "1000", "--state-dir", str(tmp_path / "s"),
                 "--cgroup-root", "ptest-never-made"]) == 64
    assert f"--parallelism must be 0 (default) to {limits.MAX_PARALLELISM}" in (
        capsys.readouterr().err)
    assert not (tmp_path / "s").exists()
