"""Start-up imports follow the command (issue #14): each test runs the command line in a
fresh interpreter and looks at what it imported.

``version``, ``schema`` and ``validate`` load neither gRPC, the daemon nor the node
layer; a valid document is checked without ``jsonschema`` (an invalid one loads it to
explain every error, with its file, line and column); a command with ``--target`` never
loads the node layer. ``bench/cli_startup.py`` measures what this saves.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.daemon.node_harness import running_daemon

if TYPE_CHECKING:
    from provisioner.node.runtime.layer import NodeConfig


#: Runs ``provisioner.cli.main(argv)`` as the console script does, then writes the
#: names of every module imported to the file named by its first argument.
PROBE = """\
import sys
from provisioner.cli import main
try:
    code = main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as out:
        out.write("\\n".join(sorted(sys.modules)))
sys.exit(code)
"""

#: Put before PROBE: forgets ``pathlib``, which a development install's import hook
#: (setuptools' editable finder) loads at start-up before any of ours, so that it is in
#: the list only if the command imports it again.
FORGET_PATHLIB = """\
import sys
sys.modules.pop("pathlib", None)
"""

#: Put before PROBE: forgets what the development install's import hook loads besides
#: ``pathlib`` (``contextlib``, and ``ipaddress`` through ``urllib.parse``), for the
#: tests that pin that a command does not load them itself.
FORGET_HOOK_MODULES = """\
import sys
for name in ("pathlib", "ipaddress", "contextlib"):
    sys.modules.pop(name, None)
"""

HEAVY = ("grpc", "google.protobuf", "provisioner.node", "provisioner.daemon",
         "provisioner.executors.local", "provisioner._proto")

VALID = """\
apiVersion: provisioner/v1
kind: Cell
metadata: {name: web}
spec: {cpu: {weight: 200}}
"""

INVALID = """\
apiVersion: provisioner/v1
kind: Cell
metadata:
  name: web
spec:
  cpu:
    weight: 0
"""


def run_cli(tmp_path: Path, *argv: str,
            probe: str = PROBE) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The command's result and the modules its process imported."""
    modules_file = tmp_path / "modules.txt"
    result = subprocess.run([sys.executable, "-c", probe, str(modules_file), *argv],
                            cwd=tmp_path,  # not the checkout: the package as installed
                            capture_output=True, text=True, timeout=60, check=False)
    return result, set(modules_file.read_text().split())


def loaded(modules: set[str], *names: str) -> list[str]:
    """Which of ``names`` (or their submodules) were imported."""
    return sorted(m for m in modules for name in names
                  if m == name or m.startswith(name + "."))


def test_version_loads_no_grpc_nor_manifests_and_reports_the_installed_versions(
        tmp_path: Path) -> None:
    result, modules = run_cli(tmp_path, "version", "--json")

    assert result.returncode == 0, result.stderr
    assert loaded(modules, *HEAVY, "jsonschema", "yaml", "jinja2", "provisioner.manifest",
                  "provisioner.model", "importlib.metadata") == []
    info = json.loads(result.stdout)
    assert info["version"] == metadata.version("provisioner")
    assert info["grpcio"] == metadata.version("grpcio")
    assert info["protobuf"] == metadata.version("protobuf")
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))


def test_version_text(tmp_path: Path) -> None:
    result, _ = run_cli(tmp_path, "version")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"provisioner \S+ \(python \S+, grpcio \S+, protobuf \S+\)\n",
                        result.stdout), result.stdout


def test_schema_loads_no_grpc_daemon_or_node_layer(tmp_path: Path) -> None:
    result, modules = run_cli(tmp_path, "schema", "cell")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["title"] == "Cell"
    assert loaded(modules, *HEAVY) == []


def test_validate_of_a_valid_file_loads_no_jsonschema_jinja_grpc_or_node_layer(
        tmp_path: Path) -> None:
    manifest = tmp_path / "cell.yaml"
    manifest.write_text(VALID)

    result, modules = run_cli(tmp_path, "validate", str(manifest))

    assert result.returncode == 0, result.stderr
    assert result.stdout == "valid: 1 resources in 1 documents of 1 files\n"
    assert loaded(modules, *HEAVY, "jsonschema", "jinja2", "fastjsonschema", "decimal") == []


@pytest.mark.parametrize("given", ["cell.yaml", "."])
def test_validate_of_a_valid_file_or_folder_loads_no_pathlib(tmp_path: Path, given: str) -> None:
    """pathlib costs ~5 ms (it loads urllib.parse, ipaddress, fnmatch): the manifest and
    state code spells paths with os.path and provisioner.pathnames instead."""
    (tmp_path / "cell.yaml").write_text(VALID)

    result, modules = run_cli(tmp_path, "validate", given, probe=FORGET_PATHLIB + PROBE)

    assert result.returncode == 0, result.stderr
    assert loaded(modules, "pathlib") == []


@pytest.mark.parametrize("argv", [["version"], ["validate", "cell.yaml"]])
def test_version_and_validate_load_no_typing(tmp_path: Path, argv: list[str]) -> None:
    """typing costs ~3 ms a start: the modules on these paths (records among them) name
    its types for the type checker only."""
    (tmp_path / "cell.yaml").write_text(VALID)

    result, modules = run_cli(tmp_path, *argv)

    assert result.returncode == 0, result.stderr
    assert loaded(modules, "typing") == []


def test_validate_loads_no_json_hashlib_shutil_ipaddress_or_image_references(
        tmp_path: Path) -> None:
    """What a valid Cell's check does not need: json (only to explain a failure),
    OpenSSL (hashlib), shutil, ipaddress, contextlib, the image-reference grammar."""
    (tmp_path / "cell.yaml").write_text(VALID)

    result, modules = run_cli(tmp_path, "validate", "cell.yaml",
                              probe=FORGET_HOOK_MODULES + PROBE)

    assert result.returncode == 0, result.stderr
    assert loaded(modules, "json", "hashlib", "_hashlib", "shutil", "ipaddress",
                  "contextlib", "provisioner.imageref", "provisioner.digests") == []


def test_a_command_line_naming_a_command_builds_only_its_parser() -> None:
    """(argparse makes a full parser per command: ~0.1 ms each.) Help and errors that
    list the commands still see them all."""
    from provisioner.cli.main import COMMANDS, build_parser

    def commands(argv: list[str]) -> list[str]:
        action = build_parser(argv)._subparsers._group_actions[0]  # type: ignore[union-attr]
        return list(action.choices)

    assert commands(["validate", "x.yaml"]) == ["validate"]
    assert commands(["images", "list"]) == ["images"]
    for argv in (["--help"], ["-h", "validate"], ["bogus"], [], ["Validate"]):
        assert commands(argv) == list(COMMANDS), argv


def test_validate_of_an_invalid_file_still_explains_where(tmp_path: Path) -> None:
    manifest = tmp_path / "cell.yaml"
    manifest.write_text(INVALID)

    result, modules = run_cli(tmp_path, "validate", str(manifest))

    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{manifest}:7:13: spec.cpu.weight: 0 is less than the minimum of 1" \
        in result.stderr, result.stderr
    assert "invalid: 1 error(s)" in result.stderr
    assert "jsonschema" in modules  # loaded to explain the failure
    assert loaded(modules, *HEAVY) == []


def test_a_template_loads_jinja_only_when_it_has_template_syntax(tmp_path: Path) -> None:
    manifest = tmp_path / "cell.yaml"
    manifest.write_text(VALID.replace("200", "{{ weight }}"))

    result, modules = run_cli(tmp_path, "validate", str(manifest), "--var", "weight=300")

    assert result.returncode == 0, result.stderr
    assert "jinja2" in modules


def test_help_lists_every_command_without_importing_their_modules(tmp_path: Path) -> None:
    result, modules = run_cli(tmp_path, "--help")

    assert result.returncode == 0, result.stderr
    for command in ("validate", "schema", "plan", "apply", "destroy", "status", "logs",
                    "images", "daemon", "certs", "version"):
        assert re.search(rf"^    {command} +\S", result.stdout, re.MULTILINE), result.stdout
    assert loaded(modules, *HEAVY, "provisioner.manifest", "provisioner.cli.node_commands") \
        == []


def test_a_command_shows_its_own_options(tmp_path: Path) -> None:
    result, _ = run_cli(tmp_path, "daemon", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "--max-concurrent-rpcs N" in text
    assert "at most 1024)" in text  # the daemon's limit, imported for this help only


@pytest.mark.parametrize("command", [["status"], ["plan"], ["images", "list"],
                                     ["images", "prune"]])
def test_a_target_command_never_loads_the_node_layer(tmp_path: Path,
                                                     command: list[str]) -> None:
    manifest = tmp_path / "cell.yaml"
    manifest.write_text(VALID)
    args = [str(manifest)] if command == ["plan"] else []
    with running_daemon(tmp_path) as daemon:
        result, modules = run_cli(tmp_path, *command, *args, "--target", daemon.target)

    assert result.returncode == 0, result.stderr
    assert "grpc" in modules  # it did talk to the daemon
    assert loaded(modules, "provisioner.node", "provisioner.executors.local",
                  "provisioner.daemon", "jsonschema", "jinja2") == []


def test_a_pod_from_a_local_layout_loads_no_registry_code(tmp_path: Path) -> None:
    """Planning a pod whose image is a local OCI layout loads neither skopeo's wrapper
    (``provisioner.node.oci.pull``), the registry cache nor ``ssl``: they load only for
    registry images (bench/pods.py measures the pod path)."""
    from tests.oci_fixture import build_busybox_layout

    image = build_busybox_layout(tmp_path / "busybox")
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(f"""\
apiVersion: provisioner/v1
kind: Pod
metadata: {{name: solo}}
spec:
  containers:
    - {{name: c, image: "oci:{image}", command: [sleep, "1"]}}
""")
    result, modules = run_cli(tmp_path, "plan", str(manifest), "--state-dir",
                              str(tmp_path / "state"), "--cgroup-root", "ptest-imports")
    assert result.returncode == 0, result.stderr
    assert "+ allocate Pod/solo" in result.stdout
    assert "provisioner.node.oci.preflight" in modules  # the pod's image was checked
    assert loaded(modules, "provisioner.node.oci.pull",
                  "provisioner.node.oci.registry_images", "ssl") == []
    # Nor what no step of it needs: unpacking (tarfile), a thread pool, logging (nothing
    # was logged), uuid/platform (random names come from os.urandom).
    assert loaded(modules, "tarfile", "concurrent.futures", "logging", "uuid",
                  "platform", "secrets", "fastjsonschema", "decimal") == []


def _loopback_pod(tmp_path: Path, name: str) -> tuple[str, list[str], NodeConfig]:
    """A ``network: loopback`` busybox pod's manifest, the options that put its node in
    ``tmp_path`` (``--state-dir``, ``--cgroup-root``) and that node's config (for
    ``tear_down``); skips without root or runc."""
    from tests.conftest import make_config
    from tests.oci_fixture import build_busybox_layout

    if os.geteuid() != 0 or shutil.which("runc") is None:
        pytest.skip("a pod needs root and runc")
    image = build_busybox_layout(tmp_path / "busybox")
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(f"""\
apiVersion: provisioner/v1
kind: Pod
metadata: {{name: {name}}}
spec:
  network: loopback
  stopGracePeriod: 0s
  containers:
    - {{name: c, image: "oci:{image}", command: [sleep, "60"]}}
""")
    config = make_config(tmp_path / "state")
    return str(manifest), ["--state-dir", config.state_dir, "--cgroup-root",
                           config.cgroup_root], config


def test_a_loopback_pod_applies_and_destroys_without_ipaddress(tmp_path: Path) -> None:
    """ipaddress (~1.5 ms) is for bridge pods' subnets and name servers in 127.0.0.0/8:
    neither apply nor destroy of a ``network: loopback`` pod loads it (nor OpenSSL's
    hashlib for the bridge's name, nor the image-reference grammar for the registry
    options)."""
    from provisioner.node.runtime.layer import NodeLayer
    from tests.conftest import tear_down

    manifest, where, config = _loopback_pod(tmp_path, "solo")
    try:
        applied, apply_modules = run_cli(tmp_path, "apply", manifest, *where,
                                         probe=FORGET_HOOK_MODULES + PROBE)
        assert applied.returncode == 0, applied.stderr
        destroyed, destroy_modules = run_cli(tmp_path, "destroy", manifest, *where,
                                             probe=FORGET_HOOK_MODULES + PROBE)
    finally:
        tear_down(NodeLayer(config))
    assert destroyed.returncode == 0, destroyed.stderr
    assert "1 deleted" in destroyed.stdout
    assert "provisioner.node.oci.containers" in apply_modules  # it did run a container
    assert loaded(apply_modules, "ipaddress") == []
    assert loaded(destroy_modules, "ipaddress", "hashlib", "_hashlib", "yaml") == []


def test_a_repeat_apply_of_a_loopback_pod_loads_only_what_it_runs(tmp_path: Path) -> None:
    """Once the image is unpacked (the first apply's work), applying the pod again
    starts its container without typing, OpenSSL's hashlib (the layout's manifest is
    hashed by CPython's own SHA-256), shutil (with bz2 and lzma) or subprocess: the
    namespace is made with syscalls and runc is found without shutil.which."""
    from provisioner.node.runtime.layer import NodeLayer
    from tests.conftest import tear_down

    manifest, where, config = _loopback_pod(tmp_path, "again")
    try:
        for argv in (["apply"], ["destroy"]):
            first, _ = run_cli(tmp_path, *argv, manifest, *where)
            assert first.returncode == 0, first.stderr
        again, modules = run_cli(tmp_path, "apply", manifest, *where,
                                 probe=FORGET_HOOK_MODULES + PROBE)
        assert again.returncode == 0, again.stderr
    finally:
        tear_down(NodeLayer(config))
    assert "+ start" in again.stdout and "provisioner.node.oci.containers" in modules
    assert loaded(modules, "typing", "hashlib", "_hashlib", "shutil", "bz2", "lzma",
                  "subprocess", "ipaddress") == []


def test_destroy_reads_no_manifest(tmp_path: Path) -> None:
    """destroy learns its set from the paths' names: no YAML, no schema, no Jinja."""
    from provisioner.node.runtime.layer import NodeLayer
    from tests.conftest import make_config, tear_down

    manifest = tmp_path / "cell.yaml"
    manifest.write_text(VALID)
    config = make_config(tmp_path / "state")
    where = ["--state-dir", config.state_dir, "--cgroup-root", config.cgroup_root]
    try:
        result, _ = run_cli(tmp_path, "apply", str(manifest), *where)
        assert result.returncode == 0, result.stderr
        result, modules = run_cli(tmp_path, "destroy", str(manifest), *where)
    finally:
        tear_down(NodeLayer(config))
    assert result.returncode == 0, result.stderr
    assert "1 deleted" in result.stdout
    assert loaded(modules, "yaml", "jinja2", "jsonschema", "fastjsonschema",
                  "provisioner.manifest.loader", "provisioner.manifest.yamlsafe") == []


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc")
def test_destroy_of_a_loopback_pod_loads_no_image_code(tmp_path: Path) -> None:
    """Stopping and freeing a pod reads no image (``provisioner.node.oci.images`` and
    the layout code, ~1 ms), quotes no shell command (``shlex``) and brings no loopback
    up (``_socket``); and neither command runs a program from the node layer, so its
    modules import ``subprocess`` only inside the functions that run one (the pod
    network's CNI modules are left out of this check: a bridge pod runs plugins)."""
    from provisioner.node.runtime.layer import NodeLayer
    from tests.conftest import tear_down

    manifest, where, config = _loopback_pod(tmp_path, "solo")
    try:
        result, applied = run_cli(tmp_path, "apply", manifest, *where)
        assert result.returncode == 0, result.stderr
        result, destroyed = run_cli(tmp_path, "destroy", manifest, *where)
    finally:
        tear_down(NodeLayer(config))
    assert result.returncode == 0, result.stderr
    assert "1 deleted" in result.stdout
    assert loaded(destroyed, "provisioner.node.oci.images", "provisioner.node.oci.image_info",
                  "provisioner.node.oci.layout", "shlex", "_socket") == []
    assert "provisioner.node.oci.images" in applied  # apply did read the image
    ours = {m for m in applied | destroyed if m == "provisioner.executors.local" or (
        m.startswith("provisioner.node.") and not m.startswith("provisioner.node.oci.cni"))}
    assert "provisioner.node.oci.containers" in ours
    assert sorted(m for m in ours if "subprocess" in _module_level_imports(m)) == []


def _module_level_imports(module: str) -> set[str]:
    """The modules ``module``'s source imports outside its functions."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as f:
        pending: list[ast.AST] = [ast.parse(f.read())]
    found: set[str] = set()
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))
    return found
