"""Plan steps: frozen records with value equality, so plans compare and diff."""

from __future__ import annotations

import enum

from provisioner.model import Ref, ResourceSpec
from provisioner.records import field, record

PLAN_FORMAT_VERSION = 1


class Action(enum.StrEnum):
    """What a step does to a resource on the node."""

    ALLOCATE = "allocate"  # create a cell or pod
    START = "start"  # start an executable (or a pod's containers)
    STOP = "stop"
    FREE = "free"  # remove a cell or pod
    UPDATE = "update"  # change in place (cell limits)
    PUSH = "push"  # push a driver to the registry
    ENABLE = "enable"  # persistent executable
    DISABLE = "disable"
    DELETE = "delete"  # remove a stored artifact or registration


class Change(enum.StrEnum):
    """What a step means for the resource, as a plan summary counts it."""

    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"


@record
class Step:
    """One ordered action of a plan: what, on which resource, why, the spec it applies,
    and the indexes of the steps it requires.
    """

    action: Action
    ref: Ref
    reason: str
    change: Change
    #: The desired spec for steps that create or change something; the applied spec
    #: for steps that take something down.
    spec: ResourceSpec | None = None
    #: Indexes of the steps that must finish first. Steps whose requirements are all
    #: done may run in parallel.
    requires: tuple[int, ...] = ()

    def describe(self) -> str:
        """The step in words: ``action Kind/name: reason``."""
        return f"{self.action.value} {self.ref}: {self.reason}"


@record
class NoOp:
    """A resource left alone, and why."""

    ref: Ref
    reason: str


@record
class Plan:
    """The ordered steps that take a node from its observed state (at ``generation``)
    to a manifest set's desired state, with what needs no change.
    """

    generation: int  # the node generation the plan was compiled against
    manifest_set: str
    steps: tuple[Step, ...] = ()
    unchanged: tuple[NoOp, ...] = ()
    would_prune: tuple[NoOp, ...] = ()
    format_version: int = field(default=PLAN_FORMAT_VERSION)

    @property
    def has_changes(self) -> bool:
        """True when the plan has at least one step."""
        return bool(self.steps)
