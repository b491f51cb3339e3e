"""The step scheduler: order, parallelism, failure isolation, skipping, summary.

The steps' work is a recording function here: the scheduler is generic and knows
nothing of the kernel (the local executor's tests run it against the real node).
"""

from __future__ import annotations

import threading
import time

from provisioner.errors import NodeError
from provisioner.events import EventType
from provisioner.executors.scheduler import run_plan
from provisioner.limits import MAX_PARALLELISM
from provisioner.model import Kind, Ref
from provisioner.plan.steps import Action, Change, Plan, Step


def step(name: str, *requires: int, action: Action = Action.START) -> Step:
    return Step(action, Ref(Kind.EXECUTABLE, name), "created", Change.CREATE, None, requires)


def test_requirements_finish_before_their_dependents() -> None:
    plan = Plan(1, "s", (step("a"), step("b", 0), step("c", 1), step("d", 0)))
    finished: list[str] = []
    lock = threading.Lock()

    def perform(s: Step) -> None:
        time.sleep(0.01)
        with lock:
            finished.append(s.ref.name)

    events = list(run_plan(plan, perform, parallelism=4))
    assert finished.index("a") < finished.index("b") < finished.index("c")
    assert finished.index("a") < finished.index("d")
    assert events[-1].type is EventType.SUMMARY
    assert events[-1].summary is not None and events[-1].summary.created == 4


def test_independent_steps_run_at_the_same_time() -> None:
    plan = Plan(1, "s", tuple(step(f"w{i}") for i in range(4)))
    barrier = threading.Barrier(4, timeout=5)
    list(run_plan(plan, lambda s: barrier.wait(), parallelism=4))  # deadlocks if serial


def test_a_failure_skips_dependents_and_spares_the_rest() -> None:
    plan = Plan(1, "s", (step("bad"), step("after-bad", 0), step("later", 1), step("free")))
    ran: list[str] = []

    def perform(s: Step) -> None:
        ran.append(s.ref.name)
        if s.ref.name == "bad":
            raise NodeError("cgroup.procs: No space left on device")

    events = list(run_plan(plan, perform, parallelism=1))
    by_type = {e.type: [x.step.ref.name for x in events if x.type is e.type and x.step]
               for e in events}
    assert by_type[EventType.STEP_FAILED] == ["bad"]
    assert sorted(by_type[EventType.STEP_SKIPPED]) == ["after-bad", "later"]
    assert sorted(ran) == ["bad", "free"]
    failure = next(e for e in events if e.type is EventType.STEP_FAILED)
    assert failure.message == "cgroup.procs: No space left on device"
    summary = events[-1].summary
    assert summary is not None
    assert (summary.created, summary.failed, summary.skipped) == (1, 1, 2)


def test_an_unexpected_exception_is_reported_not_raised() -> None:
    plan = Plan(1, "s", (step("boom"),))

    def perform(s: Step) -> None:
        raise KeyError("x")

    events = list(run_plan(plan, perform))
    assert events[1].type is EventType.STEP_FAILED
    assert events[1].message.startswith("internal error: KeyError")


def test_an_empty_plan_still_ends_with_a_summary() -> None:
    events = list(run_plan(Plan(7, "s"), lambda s: None, generation=lambda: 7))
    assert [e.type for e in events] == [EventType.SUMMARY]
    assert events[0].summary is not None and events[0].summary.generation == 7


def test_a_huge_parallelism_is_bounded() -> None:
    """A request may ask for any uint32: the threads are capped at the limit."""
    plan = Plan(1, "s", tuple(step(f"w{i}") for i in range(MAX_PARALLELISM + 40)))
    threads: set[str] = set()
    lock = threading.Lock()

    def perform(s: Step) -> None:
        with lock:
            threads.add(threading.current_thread().name)
        time.sleep(0.02)

    events = list(run_plan(plan, perform, parallelism=2**32 - 1))
    assert events[-1].summary is not None and events[-1].summary.created == len(plan.steps)
    assert MAX_PARALLELISM // 2 < len(threads) <= MAX_PARALLELISM
