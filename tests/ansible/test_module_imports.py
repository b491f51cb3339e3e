"""What a ``provisioner.node.resource`` task loads follows its path (issue #14): each
run is a fresh interpreter, as the module's is on the managed node.

A no-op task on a node of cells (the common case of a converged play) loads neither
the pod, image, container nor driver modules, nor a thread pool for an empty apply,
nor gRPC, Jinja2 or jsonschema. ``bench/ansible_tasks.py`` measures what this saves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.node.runtime.layer import NodeLayer
from tests.cli.test_startup_imports import loaded
from tests.conftest import make_config, tear_down

#: Runs ResourceManager as the module does (the params it gets), prints its result as
#: JSON and writes every module then imported to the file named by its first argument.
PROBE = """\
import json, sys
from provisioner.ansible_resource import ResourceManager, ResourceOptions
params = dict(kind="Cell", name="web", spec={"cpu": {"weight": 150}}, labels=None,
              state="present", state_dir=sys.argv[2], cgroup_root=sys.argv[3],
              lock_timeout=10.0)
try:
    result = ResourceManager(ResourceOptions.from_params(params)).run()
finally:
    with open(sys.argv[1], "w") as out:
        out.write("\\n".join(sorted(sys.modules)))
print(json.dumps({"changed": result["changed"], "summary": result["summary"]}))
"""

#: Never on a no-op task of cells.
NOT_FOR_CELLS = ("grpc", "google.protobuf", "jinja2", "jsonschema", "concurrent.futures",
                 "provisioner.cli", "provisioner.daemon", "provisioner.executors.remote",
                 "provisioner.node.oci.containers", "provisioner.node.oci.images",
                 "provisioner.node.oci.pull", "provisioner.node.oci.cni_pods",
                 "provisioner.node.oci.registry_images", "provisioner.node.runtime.pods",
                 "provisioner.node.runtime.persistent", "provisioner.node.state.drivers",
                 "provisioner.ansible_content", "provisioner.ansible_diff",
                 # valid data is checked without the YAML parser (provisioner.manifest.
                 # from_data) or fastjsonschema's package; nothing is logged
                 "yaml", "provisioner.manifest.yamlsafe", "fastjsonschema", "decimal",
                 "logging", "uuid", "platform")


def run_task(tmp_path: Path, state_dir: str, cgroup_root: str) -> tuple[dict[str, object],
                                                                         set[str]]:
    """The task's result and the modules its process imported."""
    modules_file = tmp_path / "modules.txt"
    result = subprocess.run([sys.executable, "-c", PROBE, str(modules_file), state_dir,
                             cgroup_root], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), set(modules_file.read_text().split())


def test_a_no_op_resource_task_loads_only_what_its_path_needs(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the node layer needs root and cgroups")
    config = make_config(tmp_path / "state")
    try:
        first, _ = run_task(tmp_path, config.state_dir, config.cgroup_root)
        again, modules = run_task(tmp_path, config.state_dir, config.cgroup_root)
    finally:
        tear_down(NodeLayer(config))

    assert first["changed"] is True
    assert again == {"changed": False, "summary": {
        "created": 0, "updated": 0, "replaced": 0, "deleted": 0, "unchanged": 1,
        "failed": 0, "skipped": 0, "generation": again["summary"]["generation"]}}  # type: ignore[index]
    assert loaded(modules, *NOT_FOR_CELLS) == []
    # What it does need: the node layer (cells, the store, the lock) and the validator.
    assert {"provisioner.node.runtime.layer", "provisioner.node.state.store",
            "provisioner.manifest.from_data"} <= modules
