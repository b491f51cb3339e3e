"""What an apply reports: its events and the summary that ends them.

A neutral module: the executors make these values, ``serde`` turns them into and out
of ``provisioner.v1.ApplyEvent`` messages, and the CLI and the Ansible modules show
them, so none of those needs to import another to know what an event is. It imports
only the plan's step type.
"""

from __future__ import annotations

import enum

from provisioner.plan.steps import Step
from provisioner.records import field, record

#: Bumped when an event's meaning changes (``--json`` consumers read it).
EVENT_FORMAT_VERSION = 1


class EventType(enum.StrEnum):
    """What happened to a step (or the whole apply, for the summary)."""

    STEP_STARTED = "step_started"
    STEP_SUCCEEDED = "step_succeeded"
    STEP_FAILED = "step_failed"
    STEP_SKIPPED = "step_skipped"  # a step it requires failed
    SUMMARY = "summary"  # always the last event


@record
class Summary:
    """Resources counted by outcome once an apply ends, and the node's generation then."""

    created: int = 0
    updated: int = 0
    replaced: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped: int = 0
    generation: int = 0


@record
class ApplyEvent:
    """One event of an apply: a step started, succeeded, failed or was skipped, or the
    summary (``summary`` set, no step), which is always the last."""

    type: EventType
    timestamp_ns: int
    index: int | None = None  # the step's index in the plan
    step: Step | None = None
    message: str = ""
    duration_s: float = 0.0
    summary: Summary | None = None
    format_version: int = field(default=EVENT_FORMAT_VERSION)
