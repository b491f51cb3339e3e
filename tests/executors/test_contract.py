"""The executor contract: every test here runs against BOTH executors, the local one on
a private state directory and the remote one through a real daemon on a unix socket,
and expects the same behaviour (``provisioner/executors/base.py``): observe, plan
(with the image pre-flight), apply and its events, stale plans, logs, the lock state,
the node id, describe, ping, close and the context manager."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.errors import FailedPrecondition, InvalidArgument, NotFound, StalePlan
from provisioner.events import EventType
from provisioner.executors.base import Executor, LockState
from provisioner.executors.choose import open_executor
from provisioner.executors.local import LocalExecutor
from provisioner.manifest.loader import load_texts
from provisioner.model import DesiredState
from provisioner.node.runtime.layer import NodeLayer
from tests.conftest import make_config, tear_down
from tests.daemon.node_harness import Daemon, running_daemon

pytestmark = pytest.mark.kernel

SET = "contract"
MANIFESTS = """\
apiVersion: provisioner/v1
kind: Cell
metadata: {name: box}
spec: {}
---
apiVersion: provisioner/v1
kind: Executable
metadata: {name: talk}
spec:
  cell: box
  command: 'echo one; echo two >&2; echo three; sleep 0.3; echo later; sleep 1000'
"""
POD = """\
apiVersion: provisioner/v1
kind: Pod
metadata: {name: shop}
spec:
  cell: box
  containers:
    - name: web
      image: 'busybox:latest'
      pullPolicy: Never
"""


def desired(text: str = MANIFESTS) -> DesiredState:
    """The manifests, validated, as the contract's manifest set."""
    result = load_texts([("contract.yaml", text)], SET)
    assert result.ok, [issue.render() for issue in result.issues]
    return DesiredState(result.state.resources, SET)


@dataclass
class Subject:
    """An executor under test, and how to reach its node's own local executor."""

    kind: str
    ex: Executor
    node: LocalExecutor  # the node's local executor (the daemon's, for a remote one)
    daemon: Daemon | None = None


@pytest.fixture(params=["local", "remote"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    """Each test once per executor: local on a temp state dir, remote through a daemon."""
    if os.geteuid() != 0:
        pytest.skip("the node layer needs root, cgroups and namespaces")
    if request.param == "remote":
        with running_daemon(tmp_path / "daemon") as daemon, \
                open_executor(daemon.target) as remote:
            yield Subject("remote", remote, daemon.ctx.executor, daemon)
        return
    config = make_config(tmp_path / "state")
    local = LocalExecutor(NodeLayer(config), lock_timeout_s=2.0, purpose="contract test")
    try:
        yield Subject("local", local, local)
    finally:
        local.close()  # again, after a test that closed it: harmless
        tear_down(NodeLayer(config))


def apply_all(ex: Executor, text: str = MANIFESTS) -> list[EventType]:
    """Plan and apply ``text`` under the lock; the event types, in order."""
    with ex.locked():
        plan = ex.plan(desired(text))
        return [event.type for event in ex.apply(plan)]


def test_node_id_is_the_nodes_and_stable(subject: Subject) -> None:
    ex = subject.ex
    assert ex.node_id and ex.node_id == subject.node.node_id
    assert ex.observe().node_id == ex.node_id


def test_observe_plan_apply_converge(subject: Subject) -> None:
    ex = subject.ex
    before = ex.observe()
    assert before.resources == () and before.generation >= 0
    plan = ex.plan(desired())
    assert plan.generation == before.generation and plan.manifest_set == SET
    assert [str(step.ref) for step in plan.steps if step.change.value == "create"] == [
        "Cell/box", "Executable/talk"]
    assert ex.observe() == before  # planning changes nothing
    events = list(ex.apply(plan))
    assert events[-1].type is EventType.SUMMARY and events[-1].summary is not None
    assert events[-1].summary.created == 2 and events[-1].summary.failed == 0
    assert [e.type for e in events].count(EventType.STEP_SUCCEEDED) == len(plan.steps)
    after = ex.observe()
    assert after.generation > before.generation
    assert sorted(str(r.ref) for r in after.resources) == ["Cell/box", "Executable/talk"]
    again = ex.plan(desired())
    assert not again.has_changes and again.generation == after.generation
    destroy = ex.plan(DesiredState((), SET), destroy=True)
    assert {str(step.ref) for step in destroy.steps} == {"Cell/box", "Executable/talk"}
    assert list(ex.apply(destroy))[-1].summary.deleted == 2  # type: ignore[union-attr]
    assert ex.observe().resources == ()


def test_plan_compiles_against_what_the_caller_observed(subject: Subject) -> None:
    ex = subject.ex
    apply_all(ex)
    observed = ex.observe()
    plan = ex.plan(DesiredState((), SET), prune=True, observed=observed)
    assert plan.generation == observed.generation
    assert {str(step.ref) for step in plan.steps} == {"Cell/box", "Executable/talk"}


def test_an_image_the_node_cannot_use_is_refused_at_plan(subject: Subject) -> None:
    with pytest.raises(FailedPrecondition, match="not on this node and its pullPolicy is Never"):
        subject.ex.plan(desired(MANIFESTS + "---\n" + POD))
    assert subject.ex.observe().resources == ()


def test_a_stale_plan_is_refused_and_nothing_changes(subject: Subject) -> None:
    ex = subject.ex
    stale = ex.plan(desired())
    apply_all(ex)
    generation = ex.observe().generation
    with pytest.raises(StalePlan, match="plan was made at node generation"):
        list(ex.apply(stale))
    assert ex.observe().generation == generation


def wait_for_lines(ex: Executor, name: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if len(list(ex.logs(name))) >= count:
                return
        except NotFound:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{name} did not write {count} lines")


def test_logs_select_follow_and_stop(subject: Subject) -> None:
    ex = subject.ex
    apply_all(ex)
    wait_for_lines(ex, "talk", 4)
    lines = list(ex.logs("talk"))
    assert sorted(line.text for line in lines) == ["later", "one", "three", "two"]
    assert [line.text for line in ex.logs("talk", tail=1, channel="stdout")] == ["later"]
    assert [line.text for line in ex.logs("talk", channel="stderr")] == ["two"]
    newest = max(line.ts_ns for line in lines)
    assert [line.text for line in ex.logs("talk", since_ns=newest)] == ["later"]
    # A follow that gets no new line ends when asked to, promptly.
    stop = threading.Event()
    got: list[str] = []
    follower = threading.Thread(target=lambda: got.extend(
        line.text for line in ex.logs("talk", follow=True, stop=stop)))
    follower.start()
    time.sleep(0.5)
    stop.set()
    follower.join(5)
    assert not follower.is_alive() and sorted(got) == ["later", "one", "three", "two"]
    # Closing the iterator ends a follow too.
    follow = ex.logs("talk", follow=True, tail=1)
    assert next(iter(follow)).text == "later"
    follow.close()  # type: ignore[attr-defined]


def test_logs_refusals(subject: Subject) -> None:
    ex = subject.ex
    with pytest.raises(NotFound, match="no logs for executable 'nobody'"):
        list(ex.logs("nobody"))
    with pytest.raises(InvalidArgument, match="not a DNS label"):
        list(ex.logs("Bad_Name"))
    apply_all(ex)
    with pytest.raises(InvalidArgument, match="channel must be stdout, stderr"):
        list(ex.logs("talk", channel="stdin"))


def test_lock_state_and_locked(subject: Subject) -> None:
    ex = subject.ex
    if subject.kind == "remote":
        # The daemon holds its lock for each apply itself; a client cannot see it.
        assert ex.lock_state() == LockState("unknown")
        with ex.locked():
            assert ex.lock_state().state == "unknown"
        with subject.node.locked():  # the daemon's lock held: an apply waits, then fails
            assert ex.lock_state() == LockState("unknown")
        return
    assert ex.lock_state() == LockState("free")
    with ex.locked():
        state = ex.lock_state()
        assert state.state == "held" and state.holder is not None
        assert f"pid {os.getpid()}" in state.holder and "contract test" in state.holder
        with ex.locked():  # re-entrant for the holder
            pass
    assert ex.lock_state() == LockState("free")
    assert ex.lock_state().as_dict() == {"state": "free", "holder": None}


def test_describe_and_ping(subject: Subject) -> None:
    facts = subject.ex.describe()
    assert subject.ex.ping(5.0)
    if subject.kind == "remote":
        assert subject.daemon is not None
        assert facts == {"mode": "daemon", "target": subject.daemon.target}
    else:
        assert facts["mode"] == "local"
        assert facts["state_dir"] == subject.node.layer.config.state_dir
        assert facts["cgroup_driver"] in ("CgroupV1Driver", "CgroupV2Driver")


def test_close_and_context_manager(subject: Subject) -> None:
    ex = subject.ex
    with ex as same:
        assert same is ex
        ex.observe()
    with pytest.raises(Exception):  # noqa: B017 - closed: it cannot act any more
        ex.observe()


def test_a_remote_executor_does_not_import_the_node_layer(tmp_path: Path) -> None:
    """``provisioner status --target`` and the remote executor's whole interface, in a
    fresh interpreter, load nothing of ``provisioner.node``."""
    with running_daemon(tmp_path / "daemon") as daemon:
        apply_all(daemon.ctx.executor)
        code = f"""
import sys
from provisioner.cli import main
from provisioner.executors.choose import open_executor
from provisioner.model import DesiredState
assert main(["status", "--target", {daemon.target!r}]) == 0
with open_executor({daemon.target!r}) as ex:
    ex.observe(); ex.node_id; ex.lock_state(); ex.describe(); ex.ping(5)
    ex.plan(DesiredState((), "x"))
    list(ex.logs("talk", tail=1))
loaded = sorted(m for m in sys.modules if m.startswith("provisioner.node"))
print("LOADED", loaded)
"""
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout
