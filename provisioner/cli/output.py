"""How apply progress is shown: a live progress bar on a terminal, plain lines in logs
and pipes, one versioned JSON object per line with ``--json``."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from provisioner.cli.base import emit_json
from provisioner.events import ApplyEvent, EventType, Summary
from provisioner.plan.render import MARKS
from provisioner.plan.steps import Plan, Step
from provisioner.records import asdict

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object  # (an interface for type checkers only)


def event_to_json(event: ApplyEvent) -> dict[str, Any]:
    """One event as the ``--json`` object (format version added by ``emit_json``)."""
    out: dict[str, Any] = {"type": event.type.value, "timestamp_ns": event.timestamp_ns}
    if event.step is not None:
        out.update(index=event.index, action=event.step.action.value,
                   kind=event.step.ref.kind.value, name=event.step.ref.name,
                   change=event.step.change.value, reason=event.step.reason)
    if event.type in (EventType.STEP_SUCCEEDED, EventType.STEP_FAILED):
        out["duration_s"] = round(event.duration_s, 6)
    if event.message:
        out["message"] = event.message
    if event.summary is not None:
        out["summary"] = asdict(event.summary)
    return out


def summary_line(summary: Summary) -> str:
    """``Apply complete: 2 created, ...`` (or ``Apply FAILED: ...``)."""
    parts = [f"{summary.created} created", f"{summary.updated} updated",
             f"{summary.replaced} replaced", f"{summary.deleted} deleted",
             f"{summary.unchanged} unchanged"]
    if summary.failed:
        parts.append(f"{summary.failed} failed")
    if summary.skipped:
        parts.append(f"{summary.skipped} skipped")
    return f"Apply complete: {', '.join(parts)} (node generation {summary.generation})." \
        if not (summary.failed or summary.skipped) else \
        f"Apply FAILED: {', '.join(parts)} (node generation {summary.generation})."


def _describe(step: Step) -> str:
    return f"{MARKS[step.change]} {step.action.value} {step.ref}"


class Reporter(Protocol):
    """Shows apply events as they come."""

    def event(self, event: ApplyEvent) -> None:
        """Show one event."""
        ...


class JsonReporter:
    """One JSON object per event and line (``--json``)."""

    def event(self, event: ApplyEvent) -> None:
        """Print the event as JSON."""
        emit_json(event_to_json(event))


class LineReporter:
    """Plain lines, for logs, pipes and Ansible."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def event(self, event: ApplyEvent) -> None:
        """Print a line for each finished step and the summary."""
        step = event.step
        if event.type is EventType.SUMMARY and event.summary is not None:
            print(summary_line(event.summary), flush=True)
        elif step is None or event.type is EventType.STEP_STARTED:
            return
        else:
            self.done += 1
            where = f"[{self.done}/{self.total}]"
            if event.type is EventType.STEP_SUCCEEDED:
                print(f"{where} {_describe(step)}: done in {event.duration_s:.2f}s", flush=True)
            elif event.type is EventType.STEP_FAILED:
                print(f"{where} {_describe(step)}: FAILED: {event.message}", flush=True)
            else:
                print(f"{where} {_describe(step)}: skipped ({event.message})", flush=True)


class TerminalReporter(LineReporter):
    """A live progress bar (rich) above the same lines as LineReporter."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        super().__init__(total)
        self.console = Console()
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                 BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 console=self.console, transient=True)
        self.task = self.progress.add_task("applying", total=total)
        self.running: dict[int, str] = {}

    def event(self, event: ApplyEvent) -> None:
        """Update the bar and print the finished step's (or the summary's) line."""
        step = event.step
        if event.type is EventType.STEP_STARTED and step is not None and event.index is not None:
            self.running[event.index] = _describe(step)
        elif event.index is not None:
            self.running.pop(event.index, None)
            if event.type is not EventType.STEP_STARTED:
                self.progress.advance(self.task)
        shown = ", ".join(list(self.running.values())[:3])
        self.progress.update(self.task, description=shown or "applying")
        if event.type is not EventType.STEP_STARTED:
            self.progress.console.print(self._line(event), highlight=False)

    def _line(self, event: ApplyEvent) -> str:
        if event.summary is not None:
            colour = "red" if event.summary.failed or event.summary.skipped else "green"
            return f"[{colour}]{summary_line(event.summary)}[/{colour}]"
        assert event.step is not None
        self.done += 1
        where = f"[{self.done}/{self.total}]"
        if event.type is EventType.STEP_SUCCEEDED:
            return f"{where} [green]{_describe(event.step)}[/green] ({event.duration_s:.2f}s)"
        if event.type is EventType.STEP_FAILED:
            return f"{where} [red]{_describe(event.step)}: FAILED: {event.message}[/red]"
        return f"{where} [yellow]{_describe(event.step)}: skipped[/yellow] ({event.message})"

    @contextmanager
    def live(self) -> Iterator[None]:
        """Show the progress bar while the block runs."""
        with self.progress:
            yield


def report(events: Iterable[ApplyEvent], plan: Plan, as_json: bool) -> Summary:
    """Show every event; return the summary (the last event)."""
    summary = Summary()
    if as_json:
        reporter: Reporter = JsonReporter()
    elif sys.stdout.isatty():
        terminal = TerminalReporter(len(plan.steps))
        with terminal.live():
            for event in events:
                terminal.event(event)
                summary = event.summary or summary
        return summary
    else:
        reporter = LineReporter(len(plan.steps))
    for event in events:
        reporter.event(event)
        summary = event.summary or summary
    return summary
