"""The rkt event watcher's polls: a full look at the pods only when something can have
changed (the store's generation, the shim status folder's time), when the last look
cannot be trusted (a folder time in its clock tick), or every ``rescan_s``; real
executables on a real node layer."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from provisioner.daemon.rkt_events import EventWatcher
from provisioner.daemon.rkt_match import EVENT_KIND
from provisioner.daemon.rkt_pods import ProvisionerPods
from provisioner.model import ExecutableSpec, RestartPolicy
from provisioner.node import NodeLayer
from provisioner.node.process.supervise import shim_alive
from tests.daemon.test_load import backdate


def watcher(node: NodeLayer, rescan_s: float = 3600.0) -> EventWatcher:
    return EventWatcher(node, ProvisionerPods(node), rescan_s=rescan_s)


def rkt_events(node: NodeLayer) -> list[tuple[str, str]]:
    """(source name, event type) of every rkt event recorded so far."""
    return [(e.name, e.action) for e in node.store.events(since_id=0, limit=10_000)
            if e.kind == EVENT_KIND]


def wait_for(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def start(node: NodeLayer, name: str) -> int:
    return node.start_executable(ExecutableSpec(name, "sleep 1000")).child_pid or 0


def test_an_unchanged_node_is_not_looked_at_again(node: NodeLayer) -> None:
    for name in ("a", "b", "c"):
        start(node, name)
    backdate(node.runtime_dir)
    events = watcher(node)
    assert events.poll() > 0  # the first look records what runs
    assert ("a", "EVENT_TYPE_POD_STARTED") in rkt_events(node)
    for _ in range(20):
        assert events.poll() == 0
    assert events.scans == 1


def test_a_start_and_a_stop_are_seen_at_the_next_poll(node: NodeLayer) -> None:
    start(node, "a")
    backdate(node.runtime_dir)
    events = watcher(node)
    events.poll()
    start(node, "b")  # a new record (generation) and a status written (folder time)
    events.poll()
    assert ("b", "EVENT_TYPE_APP_STARTED") in rkt_events(node)
    backdate(node.runtime_dir)
    events.poll()
    node.stop_executable("a")
    events.poll()
    assert ("a", "EVENT_TYPE_POD_EXITED") in rkt_events(node)
    assert events.scans == 4


def test_a_restart_by_the_supervisor_is_seen(node: NodeLayer) -> None:
    status = node.start_executable(ExecutableSpec("a", "sleep 1000",
                                                   restart_policy=RestartPolicy.ALWAYS))
    backdate(node.runtime_dir)
    events = watcher(node)
    events.poll()
    events.poll()
    assert events.scans == 1
    os.kill(status.child_pid or 0, signal.SIGKILL)  # only its shim writes anything
    wait_for(lambda: (node.read_shim_status("a") or status).restart_count > 0)
    backdate(node.runtime_dir)  # (not racy: this poll is trusted)
    assert events.poll() > 0
    assert ("a", "EVENT_TYPE_APP_EXITED") in rkt_events(node)
    assert events.scans == 2


def test_a_look_in_the_folder_times_clock_tick_is_not_trusted(node: NodeLayer) -> None:
    start(node, "a")
    events = watcher(node)
    os.utime(node.runtime_dir)  # just now: a status written later in this tick would hide
    events.poll()
    events.poll()
    assert events.scans == 2
    backdate(node.runtime_dir)
    events.poll()
    events.poll()
    assert events.scans == 3


def test_what_only_a_full_look_shows_is_seen_within_rescan_s(node: NodeLayer) -> None:
    status = node.start_executable(ExecutableSpec("a", "sleep 1000"))
    backdate(node.runtime_dir)
    events = watcher(node, rescan_s=0.5)
    events.poll()
    # Its supervisor killed by hand, then the process: no status is written for either.
    os.kill(status.shim_pid, signal.SIGKILL)
    wait_for(lambda: not shim_alive(status))
    os.kill(status.child_pid or 0, signal.SIGKILL)
    wait_for(lambda: not node.is_running("a"))
    assert events.poll() == 0  # nothing the change key shows
    assert ("a", "EVENT_TYPE_POD_EXITED") not in rkt_events(node)
    time.sleep(0.5)
    assert events.poll() > 0
    assert ("a", "EVENT_TYPE_POD_EXITED") in rkt_events(node)
