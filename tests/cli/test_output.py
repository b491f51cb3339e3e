"""Apply output: plain lines, JSON lines and the terminal progress display."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from provisioner.cli.output import JsonReporter, LineReporter, TerminalReporter, summary_line
from provisioner.events import ApplyEvent, EventType, Summary
from provisioner.model import Kind, Ref
from provisioner.plan.steps import Action, Change, Step

STEP = Step(Action.START, Ref(Kind.EXECUTABLE, "api"), "created", Change.CREATE)
EVENTS = [
    ApplyEvent(EventType.STEP_STARTED, 1, 0, STEP),
    ApplyEvent(EventType.STEP_FAILED, 2, 0, STEP, message="boom", duration_s=0.5),
    ApplyEvent(EventType.STEP_SKIPPED, 3, 1, STEP, message="not run: step #0 failed"),
    ApplyEvent(EventType.SUMMARY, 4, summary=Summary(failed=1, skipped=1, generation=9)),
]


def test_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = LineReporter(total=2)
    for event in EVENTS:
        reporter.event(event)
    out = capsys.readouterr().out.splitlines()
    assert out == ["[1/2] + start Executable/api: FAILED: boom",
                   "[2/2] + start Executable/api: skipped (not run: step #0 failed)",
                   summary_line(Summary(failed=1, skipped=1, generation=9))]
    assert out[-1].startswith("Apply FAILED: 0 created")


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = JsonReporter()
    for event in EVENTS:
        reporter.event(event)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["type"] for e in lines] == ["step_started", "step_failed", "step_skipped",
                                          "summary"]
    assert lines[1]["message"] == "boom" and lines[1]["duration_s"] == 0.5
    assert lines[3]["summary"]["generation"] == 9


def test_terminal_progress_prints_each_finished_step() -> None:
    buffer = io.StringIO()
    reporter = TerminalReporter(total=2)
    reporter.console = Console(file=buffer, force_terminal=True, width=120)
    reporter.progress.console.file = buffer  # the bar and the lines share the console
    with reporter.live():
        for event in EVENTS:
            reporter.event(event)
    text = buffer.getvalue()
    assert "FAILED: boom" in text and "skipped" in text and "Apply FAILED" in text
