"""The local executor's writer lock among the threads of one process (a daemon)."""

from __future__ import annotations

import threading

import pytest

from provisioner.errors import LockBusy
from provisioner.executors.local import LocalExecutor
from provisioner.node.runtime.layer import NodeLayer

pytestmark = pytest.mark.kernel


def test_the_holding_thread_re_enters_and_another_thread_waits(node: NodeLayer) -> None:
    executor = LocalExecutor(node, lock_timeout_s=0.3)
    outcome: list[str] = []

    def intruder() -> None:
        try:
            with executor.locked(reconcile_first=False):
                outcome.append("entered")
        except LockBusy as exc:
            outcome.append(str(exc))

    # The same thread enters twice (re-entrant); another one is turned away.
    with executor.locked(), executor.locked(reconcile_first=False):
        other = threading.Thread(target=intruder, name="second-call")
        other.start()
        other.join()
    assert len(outcome) == 1 and outcome[0].startswith("state is locked by another "
                                                       "operation of this process")
    other = threading.Thread(target=intruder)
    other.start()
    other.join()
    assert outcome[-1] == "entered"  # free again once the first holder left
