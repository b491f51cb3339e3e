"""Run a plan's steps in dependency order, in parallel where the plan allows.

Shared by every executor: it knows nothing of cells or processes, only of steps, their
requirements and a function that performs one step. A failing step marks every step
that requires it (directly or not) as skipped; independent steps still run. Events come
out in the order things happen, and the last one is always the summary.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

from provisioner.defaults import DEFAULT_PARALLELISM
from provisioner.errors import ProvisionerError
from provisioner.events import ApplyEvent, EventType, Summary
from provisioner.limits import MAX_PARALLELISM
from provisioner.plan.render import change_counts
from provisioner.plan.steps import Change, Plan, Step
from provisioner.records import replace

__all__ = ["DEFAULT_PARALLELISM", "run_plan"]


def _now_ns() -> int:
    return time.time_ns()


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ProvisionerError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def run_plan(plan: Plan, perform: Callable[[Step], None], parallelism: int = 0,
             generation: Callable[[], int] = lambda: 0) -> Iterator[ApplyEvent]:
    """Perform every step of ``plan``; yield events as they happen, then the summary.

    Steps run on up to ``parallelism`` worker threads (started as steps become ready,
    so a chain of steps uses one); this generator only hands out steps whose
    requirements have succeeded and reports what the workers finish.
    """
    steps = plan.steps
    if not steps:  # nothing to do (a no-op apply): no worker
        yield ApplyEvent(EventType.SUMMARY, _now_ns(), summary=_summary(plan, set(), set(),
                                                                        generation()))
        return
    # Bounded: a request may ask for any uint32 (the CLI refuses more than the limit).
    workers = max(1, min(parallelism or DEFAULT_PARALLELISM, MAX_PARALLELISM))
    dependents: list[list[int]] = [[] for _ in steps]
    waiting = [len(step.requires) for step in steps]
    for index, step in enumerate(steps):
        for need in step.requires:
            dependents[need].append(index)
    events: queue.SimpleQueue[tuple[str, int, BaseException | None, float]] = \
        queue.SimpleQueue()
    failed: set[int] = set()
    skipped: set[int] = set()
    done = 0
    pool = _Workers(steps, perform, events, workers)
    try:
        for index in [i for i, count in enumerate(waiting) if count == 0]:
            yield ApplyEvent(EventType.STEP_STARTED, _now_ns(), index, steps[index])
            pool.submit(index)
        while done + len(skipped) < len(steps):
            outcome, index, error, seconds = events.get()
            pool.finished()
            done += 1
            step = steps[index]
            if outcome == "ok":
                yield ApplyEvent(EventType.STEP_SUCCEEDED, _now_ns(), index, step,
                                 duration_s=seconds)
            else:
                failed.add(index)
                assert error is not None
                yield ApplyEvent(EventType.STEP_FAILED, _now_ns(), index, step,
                                 message=_error_text(error), duration_s=seconds)
            for follower in dependents[index]:
                if outcome != "ok":
                    yield from _skip(follower, index, steps, dependents, skipped)
                    continue
                waiting[follower] -= 1
                if waiting[follower] == 0 and follower not in skipped:
                    yield ApplyEvent(EventType.STEP_STARTED, _now_ns(), follower,
                                     steps[follower])
                    pool.submit(follower)
    finally:
        pool.close()
    yield ApplyEvent(EventType.SUMMARY, _now_ns(),
                     summary=_summary(plan, failed, skipped, generation()))


class _Workers:
    """At most ``limit`` threads performing steps handed to :meth:`submit`; each
    reports ``(outcome, index, error, seconds)`` to ``events``. A thread is started
    only when every one started is busy. (Not concurrent.futures: a pool of ours costs
    a CLI command neither its import nor logging's.)"""

    def __init__(self, steps: tuple[Step, ...], perform: Callable[[Step], None],
                 events: queue.SimpleQueue[tuple[str, int, BaseException | None, float]],
                 limit: int) -> None:
        self.steps, self.perform, self.events, self.limit = steps, perform, events, limit
        self.todo: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.busy = 0

    def submit(self, index: int) -> None:
        """Have ``index`` performed by an idle thread (a new one when none is idle)."""
        self.busy += 1
        if self.busy > len(self.threads) and len(self.threads) < self.limit:
            thread = threading.Thread(target=self._run, name=f"apply-{len(self.threads)}",
                                      daemon=True)
            thread.start()
            self.threads.append(thread)
        self.todo.put(index)

    def finished(self) -> None:
        """One step's event was taken: its thread is idle again."""
        self.busy -= 1

    def close(self) -> None:
        """Let every thread finish what it has, then end; wait for them."""
        for _ in self.threads:
            self.todo.put(None)
        for thread in self.threads:
            thread.join()

    def _run(self) -> None:
        while (index := self.todo.get()) is not None:
            started = time.perf_counter()
            try:
                self.perform(self.steps[index])
            except BaseException as exc:  # reported as the step's failure, never lost
                self.events.put(("failed", index, exc, time.perf_counter() - started))
            else:
                self.events.put(("ok", index, None, time.perf_counter() - started))


def _skip(index: int, cause: int, steps: tuple[Step, ...], dependents: list[list[int]],
          skipped: set[int]) -> Iterator[ApplyEvent]:
    """Skip ``index`` and everything downstream of it, each once."""
    pending = [(index, cause)]
    while pending:
        current, because = pending.pop()
        if current in skipped:
            continue
        skipped.add(current)
        yield ApplyEvent(EventType.STEP_SKIPPED, _now_ns(), current, steps[current],
                         message=f"not run: step #{because} ({steps[because].describe()}) "
                         "did not succeed")
        pending.extend((after, current) for after in dependents[current])


def _summary(plan: Plan, failed: set[int], skipped: set[int], generation: int) -> Summary:
    """Count resources, not steps: a resource counts as its change when all of its steps
    succeeded, and as failed (or skipped) otherwise."""
    bad_refs = {plan.steps[i].ref for i in failed}
    skipped_refs = {plan.steps[i].ref for i in skipped} - bad_refs
    succeeded: dict[Change, int] = {}
    for change, count in change_counts(_without(plan, bad_refs | skipped_refs)).items():
        succeeded[change] = count
    return Summary(
        created=succeeded.get(Change.CREATE, 0), updated=succeeded.get(Change.UPDATE, 0),
        replaced=succeeded.get(Change.REPLACE, 0), deleted=succeeded.get(Change.DELETE, 0),
        unchanged=len(plan.unchanged), failed=len(bad_refs), skipped=len(skipped_refs),
        generation=generation)


def _without(plan: Plan, refs: set[object]) -> Plan:
    return replace(plan, steps=tuple(s for s in plan.steps if s.ref not in refs))


