"""Hostile templates and the daemon (in-process, through a real channel).

The daemon never renders templates: a Plan request carries data, which the CLI and
the Ansible modules render (in the sandbox) before they send it. So: hostile files
sent with ``--target`` are refused by the client with their line and never reach the
daemon, and template text inside a request's values stays text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from provisioner import serde
from provisioner._proto.provisioner.v1 import node_pb2 as npb
from provisioner.model import CellSpec, ExecutableSpec
from tests.daemon.node_harness import Daemon, code_of, details_of, rpc_error
from tests.daemon.test_node_service import daemon, stub
from tests.hostile_templates import (
    ALL,
    assert_every_file_refused_at_its_line,
    manifest,
    write_hostile_set,
)

__all__ = ["daemon"]
pytestmark = pytest.mark.kernel
PROVISIONER = Path(sys.executable).parent / "provisioner"  # the tests' virtualenv


def node_is_empty(daemon: Daemon) -> bool:
    response = stub(daemon).GetState(npb.GetStateRequest(), timeout=10)
    return not response.state.resources and daemon.layer.cgroups.list_cells() == []


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_hostile_files_sent_to_a_daemon_are_refused_by_the_client(
        tmp_path: Path, daemon: Daemon, command: str) -> None:
    hostile = write_hostile_set(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    done = subprocess.run([str(PROVISIONER), command, str(hostile.folder), "--target",
                           daemon.target], capture_output=True, text=True, timeout=120,
                          check=False, env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert_every_file_refused_at_its_line(done.stderr.splitlines(), hostile)
    assert node_is_empty(daemon)


def test_template_text_in_a_plan_request_stays_text(tmp_path: Path, daemon: Daemon) -> None:
    marker = tmp_path / "marker"
    payloads = [manifest("x", payload, marker).splitlines()[4][len('  labels: {x: "'):-2]
                for payload in ALL.values()]
    specs = [ExecutableSpec(f"e{i}", payload, env=(("P", payload),), stop_grace_s=1.0)
             for i, payload in enumerate(payloads)]
    request = npb.PlanRequest(resources=[serde.spec_to_proto(s) for s in specs],
                              manifest_set="hostile")
    response: npb.PlanResponse = stub(daemon).Plan(request, timeout=60)
    sent = {step.resource.executable.command for step in response.plan.steps}
    assert sent == set(payloads)  # unrendered, byte for byte
    assert not marker.exists()
    assert node_is_empty(daemon)


def test_template_text_where_the_schema_forbids_it_is_invalid_argument(
        tmp_path: Path, daemon: Daemon) -> None:
    marker = tmp_path / "marker"
    payload = manifest("x", ALL["global-cycler"], marker).splitlines()[4]
    request = npb.PlanRequest(resources=[serde.spec_to_proto(
        CellSpec("box", labels=(("x", payload),)))], manifest_set="hostile")
    error = rpc_error(lambda: stub(daemon).Plan(request, timeout=30))
    assert code_of(error) is grpc.StatusCode.INVALID_ARGUMENT
    assert "request:resources[0]:" in details_of(error)
    assert not marker.exists()
    assert node_is_empty(daemon)
