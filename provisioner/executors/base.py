"""The executor interface shared by the local (in-process) and remote (daemon) executors."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from provisioner.plan.steps import Plan, Step
from provisioner.state import NodeState

EVENT_FORMAT_VERSION = 1


class EventType(enum.StrEnum):
    STEP_STARTED = "step_started"
    STEP_SUCCEEDED = "step_succeeded"
    STEP_FAILED = "step_failed"
    STEP_SKIPPED = "step_skipped"  # a step it requires failed
    SUMMARY = "summary"  # always the last event


@dataclass(frozen=True)
class Summary:
    created: int = 0
    updated: int = 0
    replaced: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped: int = 0
    generation: int = 0


@dataclass(frozen=True)
class ApplyEvent:
    type: EventType
    timestamp_ns: int
    index: int | None = None  # the step's index in the plan
    step: Step | None = None
    message: str = ""
    duration_s: float = 0.0
    summary: Summary | None = None
    format_version: int = field(default=EVENT_FORMAT_VERSION)


class Executor(Protocol):
    """Observes a node and applies plans to it."""

    def observe(self) -> NodeState:
        """What the node runs now (reconciled with the kernel), with its generation."""
        ...

    def apply(self, plan: Plan, parallelism: int = 0) -> Iterator[ApplyEvent]:
        """Run the plan's steps in dependency order; the last event is the summary.

        Refuses (StalePlan) a plan compiled against another generation. A failing step
        stops the steps that require it; independent steps still run; everything done
        is recorded, so applying again converges.
        """
        ...
