"""The executor interface: everything a caller does with a node, wherever it is.

Two implementations: :class:`~provisioner.executors.local.LocalExecutor` (this machine,
in-process, through the node layer; the daemon uses one too) and
:class:`~provisioner.executors.remote.RemoteExecutor` (a node daemon over gRPC).
:func:`~provisioner.executors.choose.open_executor` picks one; the CLI, the Ansible
modules and the daemon's handlers then only call this interface and never ask which
one they hold. Both classes are checked against :class:`Executor` by mypy (below).

What it offers:

- ``node_id`` - the node's identity (saved plans carry it, so a plan made for one node
  is refused by another); "" for a node never applied to, looked at read-only.
- :meth:`Executor.observe` - the node as it runs now (:class:`~provisioner.state.NodeState`).
- :meth:`Executor.plan` - the plan that makes the node match a desired state, compiled
  against the node as observed (by the daemon, for a remote one), image pre-flight
  included (``check_plan``: a pod image this node cannot use is FailedPrecondition).
- :meth:`Executor.apply` - run a plan; :class:`~provisioner.events.ApplyEvent` s as they
  happen, the summary last. A plan made at another node generation is StalePlan.
- :meth:`Executor.logs` - an executable's or pod container's captured output as
  :class:`~provisioner.logline.LogLine` s, optionally followed.
- :meth:`Executor.list_images` - the node's image cache: every unpacked image with
  its references, size, blobs and the pods using it.
- :meth:`Executor.prune_images` - remove the images no pod uses (dangling ones, or
  every unused one with ``all_unused``) and the blobs no remaining image needs, under
  the writer lock like an apply (docs/pods.md, Image collection).
- :meth:`Executor.lock_state` - who holds the node's writer lock, if anyone.
- :meth:`Executor.locked` - hold the writer lock across observe, plan and apply (a
  daemon holds it for each apply itself: there it holds nothing).
- :meth:`Executor.describe` - how the node is reached (``mode`` and where), as data.
- :meth:`Executor.ping`, :meth:`Executor.close` and the context manager.

Errors are the provisioner's own (``provisioner.errors``), the same from both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager

from provisioner.events import ApplyEvent
from provisioner.model import DesiredState
from provisioner.plan.steps import Plan
from provisioner.records import record
from provisioner.state import NodeState

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:  # (only named in signatures: a command that applies builds none)
    from typing import Any, Literal, Protocol, Self

    from provisioner.image_state import ImageList, ImagePrune
    from provisioner.logline import LogLine

    #: What is known of the writer lock: nobody holds it, somebody does, or (a
    #: daemon's) this client cannot see it.
    LockWord = Literal["free", "held", "unknown"]
else:
    # Executor is an interface for the type checker: at run time nothing checks an
    # object against it, so it is a plain class there.
    Protocol = object


@record
class LockState:
    """The node's writer lock as an executor sees it."""

    state: LockWord
    #: Who holds it (``pid 1234 (provisioner apply web.yaml) since ...``), when held.
    holder: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """``{"state": ..., "holder": ...}``, as the Ansible info module returns it."""
        return {"state": self.state, "holder": self.holder}


class Executor(Protocol):
    """Observes, plans, applies and reads logs on one node (see the module doc)."""

    @property
    def node_id(self) -> str:
        """The node's identity ("" if it has none yet, or from a daemon too old)."""
        ...

    def observe(self) -> NodeState:
        """What the node runs now (reconciled with the kernel), with its generation."""
        ...

    def plan(self, desired: DesiredState, prune: bool = False, destroy: bool = False, *,
             observed: NodeState | None = None) -> Plan:
        """The plan that makes the node match ``desired`` (within its manifest set).

        ``prune``: also remove resources of the set no longer declared; ``destroy``:
        remove the whole set. Image pre-flight included. ``observed``: the node as
        the caller has just observed it (inside :meth:`locked`), compiled against
        instead of observing again; a daemon compiles against what it sees itself.
        """
        ...

    def apply(self, plan: Plan, parallelism: int = 0) -> Iterator[ApplyEvent]:
        """Run the plan's steps in dependency order; the last event is the summary.

        Refuses (StalePlan) a plan compiled against another generation. A failing step
        stops the steps that require it; independent steps still run; everything done
        is recorded, so applying again converges.
        """
        ...

    def logs(self, name: str, follow: bool = False, since_ns: int | None = None,
             tail: int | None = None, channel: str | None = None, *,
             stop: threading.Event | None = None) -> Iterator[LogLine]:
        """The captured output of executable (or pod container ``pod.container``)
        ``name``, oldest first: lines newer than ``since_ns``, the last ``tail``, of
        one ``channel`` (stdout, stderr) when given. ``follow``: then new lines as they
        come, until ``stop`` is set or the iterator is closed. NotFound when the node
        has no logs of that name and no such process.
        """
        ...

    def list_images(self) -> ImageList:
        """The node's image cache (changes nothing)."""
        ...

    def prune_images(self, all_unused: bool = False, dry_run: bool = False) -> ImagePrune:
        """Remove the images no pod of the node uses - the dangling ones (nothing names
        them any more), or every one with ``all_unused`` - and the blobs no remaining
        image needs; with ``dry_run`` only say what would go. Takes the writer lock
        (LockBusy after the lock timeout); an image in use is never removed."""
        ...

    def lock_state(self) -> LockState:
        """Who holds the node's writer lock now (informational: it may change)."""
        ...

    def locked(self) -> AbstractContextManager[object]:
        """Hold the writer lock (and reconcile first) for what the block does."""
        ...

    def describe(self) -> dict[str, Any]:
        """How the node is reached: ``mode`` (``local`` or ``daemon``) and where."""
        ...

    def ping(self, timeout_s: float) -> bool:
        """Whether the node answers within ``timeout_s``."""
        ...

    def close(self) -> None:
        """Release what the executor holds (store connections, the channel)."""
        ...

    def __enter__(self) -> Self:
        """The executor itself; closed on exit."""
        ...

    def __exit__(self, *exc: object) -> None:
        """Close the executor."""
        ...
