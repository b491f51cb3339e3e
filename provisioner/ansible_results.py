"""The results the Ansible modules return, as data: the plan and the actions as lists of
objects (one per step), the human text beside them, and the summary.

A step object: ``step`` (its index in the plan, as ``#3`` in the plan text), ``kind``,
``name``, ``action`` (allocate, start, stop, free, update, push, enable, disable,
delete), ``change`` (create, update, replace, delete), ``reason`` and ``requires`` (the
step numbers that must finish first). An action adds ``result`` (``succeeded``,
``failed``, ``skipped``; ``planned`` in check mode) and, when failed or skipped,
``message``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from provisioner.events import ApplyEvent, EventType, Summary
from provisioner.plan.render import change_counts
from provisioner.plan.steps import Change, Plan, Step
from provisioner.records import field, record

PLANNED = "planned"
SUCCEEDED = "succeeded"
FAILED = "failed"
SKIPPED = "skipped"


def step_record(index: int, step: Step) -> dict[str, Any]:
    """One plan step as data."""
    return {"step": index, "kind": step.ref.kind.value, "name": step.ref.name,
            "action": step.action.value, "change": step.change.value,
            "reason": step.reason, "requires": list(step.requires)}


def plan_records(plan: Plan) -> list[dict[str, Any]]:
    """Every step of ``plan`` as data, in plan order."""
    return [step_record(index, step) for index, step in enumerate(plan.steps)]


def planned_actions(plan: Plan) -> tuple[list[dict[str, Any]], list[str]]:
    """Check mode's actions: every step, as it would be performed, and as text."""
    records = [{**step_record(index, step), "result": PLANNED}
               for index, step in enumerate(plan.steps)]
    return records, [step.describe() for step in plan.steps]


@record(frozen=False)
class ApplyOutcome:
    """Apply events folded into what the module reports. Filled as events arrive, so
    that what was done is known even when the apply is cut short by an error."""

    actions: list[dict[str, Any]] = field(default_factory=list)
    actions_text: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    succeeded: int = 0
    summary: Summary | None = None

    def add(self, event: ApplyEvent) -> None:
        """Take one apply event: a finished step becomes an action, the summary is kept."""
        step = event.step
        if event.type is EventType.SUMMARY:
            self.summary = event.summary
            return
        if step is None or event.type is EventType.STEP_STARTED:
            return
        record = step_record(event.index if event.index is not None else -1, step)
        if event.type is EventType.STEP_SUCCEEDED:
            self.succeeded += 1
            self.actions.append({**record, "result": SUCCEEDED})
            self.actions_text.append(step.describe())
        elif event.type is EventType.STEP_FAILED:
            self.failures.append(f"step #{event.index} ({step.describe()}) failed: "
                                 f"{event.message}")
            self.actions.append({**record, "result": FAILED, "message": event.message})
            self.actions_text.append(f"{step.describe()} -- FAILED: {event.message}")
        else:
            self.actions.append({**record, "result": SKIPPED, "message": event.message})
            self.actions_text.append(f"{step.describe()} -- skipped: {event.message}")

    def collect(self, events: Iterable[ApplyEvent]) -> ApplyOutcome:
        """Take every event of an apply, in order, and return this outcome."""
        for event in events:
            self.add(event)
        return self


def planned_summary(plan: Plan) -> Summary:
    """What the summary of applying ``plan`` would be if every step succeeded."""
    counts = change_counts(plan)
    return Summary(created=counts[Change.CREATE], updated=counts[Change.UPDATE],
                   replaced=counts[Change.REPLACE], deleted=counts[Change.DELETE],
                   unchanged=len(plan.unchanged), generation=plan.generation)


def prune_warning(plan: Plan) -> str | None:
    """The warning for resources of the set that are no longer declared and stay."""
    if not plan.would_prune:
        return None
    names = ", ".join(str(noop.ref) for noop in plan.would_prune)
    return (f"{len(plan.would_prune)} resource(s) of manifest set {plan.manifest_set!r} "
            f"are no longer declared but stay, since prune is false: {names}")
