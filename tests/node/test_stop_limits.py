"""A process can always be stopped: numbers out of range stored by an older version are
clamped (and logged), and the last resort is the SIGKILL of its whole leaf cgroup.
Real kernel, real shims."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from provisioner.limits import MAX_STOP_GRACE_S
from provisioner.model import CellSpec, ExecutableSpec, Kind
from provisioner.model_json import dumps
from provisioner.node.process import supervise
from provisioner.node.process.shimspec import ShimSpec, native_spec
from provisioner.node.runtime.layer import NodeLayer
from tests.node.test_layer import wait_for

pytestmark = pytest.mark.kernel
HUGE_S = 99999999 * 3600.0  # what "99999999h" meant before the limit


def _store_huge_grace(node: NodeLayer, spec: ExecutableSpec) -> None:
    """What an older version left: the spec record and the status file both say 99999999h."""
    data = json.loads(dumps(spec))
    data["stop_grace_s"] = HUGE_S
    with node.store.transaction() as store:
        store.put_resource(Kind.EXECUTABLE, spec.name, json.dumps(data), "s")
    status_file = node.status_file(spec.name)
    status = json.loads(Path(status_file).read_text())
    status["stop_grace_s"] = HUGE_S
    Path(status_file).write_text(json.dumps(status))


def test_a_stored_huge_grace_is_clamped_and_the_executable_still_stops(
        node: NodeLayer, caplog: pytest.LogCaptureFixture) -> None:
    node.allocate_cell(CellSpec("web"), "s")
    spec = ExecutableSpec("sleeper", "sleep 1000", cell="web")
    started = node.start_executable(spec, "s")
    _store_huge_grace(node, spec)
    caplog.set_level(logging.WARNING)
    applied = node.applied_spec(Kind.EXECUTABLE, "sleeper")
    assert isinstance(applied, ExecutableSpec) and applied.stop_grace_s == MAX_STOP_GRACE_S
    status = node.read_shim_status("sleeper")
    assert status is not None and status.stop_grace_s == MAX_STOP_GRACE_S
    assert any("above the limit" in r.getMessage() for r in caplog.records)
    began = time.monotonic()
    final = node.stop_executable("sleeper")
    assert time.monotonic() - began < 5
    assert final is not None and final.state == "stopped"
    assert node.cgroups.pids("web") == set()
    assert not os.path.exists(f"/proc/{started.child_pid}")


def test_a_shim_that_does_not_finish_in_time_is_replaced_by_a_kill_of_the_leaf(
        node: NodeLayer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shim is given 99999999h (a spec the launcher no longer sends: the shim clamps
    it to the limit, and says so in its status), its child ignores SIGTERM: the stop
    waits the time it was given, then SIGKILLs the shim and the whole leaf at once -
    no second grace period."""
    spec = node._prepare_launch(
        ExecutableSpec("stubborn", "trap '' TERM; sleep 1000 & sleep 1000 & wait",
                       stop_grace_s=1.0), "stubborn", None).spec

    def huge_grace(spec: ShimSpec, crash_log: str) -> bytes:
        raw = native_spec(spec, crash_log)
        return raw.replace(b"stop_grace_s\0" + b"1.0\0", b"stop_grace_s\0" + b"3.6e+11\0")

    monkeypatch.setattr(supervise, "native_spec", huge_grace)
    status = supervise.launch(spec)
    assert status.stop_grace_s == MAX_STOP_GRACE_S  # clamped by the shim itself
    wait_for(lambda: len(node.cgroups.pids("")) >= 3)
    began = time.monotonic()
    final = supervise.request_stop(status, timeout_s=1.0)
    took = time.monotonic() - began
    assert final.state == "stopped"
    assert 1.0 <= took < 4, took
    assert node.cgroups.pids("") == set()
    assert not supervise.shim_alive(status)


def test_an_unreadable_status_file_still_lets_the_stop_kill_everything(
        node: NodeLayer) -> None:
    node.start_executable(ExecutableSpec("odd", "trap '' TERM; sleep 1000"), "s")
    Path(node.status_file("odd")).write_text("{not json")
    node.stop_executable("odd", forget=True)
    assert node.cgroups.pids("") == set()
    assert node.store.get_process("odd") is None


def test_pids_out_of_range_in_a_status_file_do_not_block_the_stop(node: NodeLayer) -> None:
    """A damaged status file (pids no kernel hands out): the leaf is still killed."""
    node.start_executable(ExecutableSpec("odd", "trap '' TERM; sleep 1000",
                                         stop_grace_s=0.2), "s")
    wait_for(lambda: len(node.cgroups.pids("")) >= 2)
    status_file = Path(node.status_file("odd"))
    status = json.loads(status_file.read_text())
    status.update(shim_pid=2**40, child_pid=2**40)
    status_file.write_text(json.dumps(status))
    began = time.monotonic()
    node.stop_executable("odd")
    assert time.monotonic() - began < 5
    wait_for(lambda: not node.cgroups.pids(""))
