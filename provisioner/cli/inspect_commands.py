"""``status`` (what runs, its state, any drift) and ``logs`` (an executable's output)."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from provisioner.cli.base import EXIT_OK, Parser, emit_json
from provisioner.cli.node_commands import add_node_args, executor
from provisioner.errors import UsageError

if TYPE_CHECKING:  # imported when a command runs (see provisioner.cli.main)
    from provisioner.logline import LogLine
    from provisioner.state import NodeState, ObservedResource

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_status(parser: Parser) -> None:
    """The ``status`` command's description and options."""
    parser.description = ("List every resource the provisioner manages on the node with "
                          "its live state; drift is what differs from what was applied.")
    parser.add_argument("--manifest-set", metavar="NAME", help="only this manifest set")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    add_node_args(parser)
    parser.set_defaults(run=run_status)


def _state_word(resource: ObservedResource) -> str:
    if resource.process is not None:
        process = resource.process
        word = process.phase.value
        if process.phase.value in ("exited", "backoff", "stopped") and (
                process.exit_code is not None or process.exit_signal):
            word += f" ({process.describe_exit()})"
        return word
    return "present" if resource.present else "missing"


def _row(resource: ObservedResource) -> dict[str, Any]:
    process = resource.process
    return {"kind": resource.spec.kind.value, "name": resource.spec.name,
            "manifest_set": resource.manifest_set, "present": resource.present,
            "state": _state_word(resource),
            "pid": process.pid if process else None,
            "restarts": process.restart_count if process else 0,
            "exit_code": process.exit_code if process else None,
            "exit_signal": process.exit_signal if process else None,
            "drift": list(resource.drift)}


def render_status(state: NodeState, rows: list[dict[str, Any]]) -> list[str]:
    """The status table (one line per row) and a summary line."""
    header = ("KIND", "NAME", "SET", "STATE", "PID", "RESTARTS", "DRIFT")
    table = [header] + [(r["kind"], r["name"], r["manifest_set"] or "-", r["state"],
                         str(r["pid"] or "-"), str(r["restarts"]),
                         "; ".join(r["drift"]) or "-") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
             + "  " + row[-1] for row in table]
    drifted = sum(1 for r in rows if r["drift"])
    lines.append(f"{len(rows)} resources, {drifted} with drift (node {state.node_name}, "
                 f"generation {state.generation}, cgroup v{2 if state.cgroup_v2 else 1})")
    return lines


def run_status(args: argparse.Namespace) -> int:
    """``status``: what the node runs, as a table or one JSON object."""
    with executor(args, read_only=True) as ex:
        state = ex.observe()
    resources = [r for r in state.resources
                 if args.manifest_set is None or r.manifest_set == args.manifest_set]
    rows = [_row(r) for r in resources]
    if args.json:
        emit_json({"generation": state.generation, "node": state.node_name,
                   "cgroup_v2": state.cgroup_v2, "resources": rows})
    else:
        print("\n".join(render_status(state, rows)))
    return EXIT_OK


def add_logs(parser: Parser) -> None:
    """The ``logs`` command's description and options."""
    parser.description = ("Print the captured stdout and stderr of an executable, or of a "
                          "pod's container (POD.CONTAINER), oldest first: from this "
                          "machine's log files, or from the node daemon named by --target.")
    parser.add_argument("name", metavar="EXECUTABLE|POD.CONTAINER")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument("--since", metavar="WHEN",
                        help="only lines newer than a duration ago (10s, 5m, 2h, 1d) or an "
                        "ISO 8601 time")
    parser.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    parser.add_argument("--channel", choices=("stdout", "stderr"), help="only one channel")
    parser.add_argument("--timestamps", action="store_true", help="prefix each line with "
                        "its time")
    add_node_args(parser)
    parser.set_defaults(run=run_logs)


def parse_since(text: str, now_ns: int | None = None) -> int:
    """``10m`` or ``2026-11-21T10:00:00Z`` -> nanoseconds since the epoch."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    match = _DURATION_RE.match(text)
    if match:
        return now_ns - int(float(match.group(1)) * _UNITS[match.group(2)] * 1e9)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r}: expected a duration such as 10m or an ISO 8601 "
                         "time such as 2026-11-21T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1e9)


def _print_line(line: LogLine, timestamps: bool) -> None:
    if timestamps:
        stamp = dt.datetime.fromtimestamp(line.ts_ns / 1e9, dt.UTC)
        sys.stdout.write(f"{stamp.isoformat(timespec='milliseconds')} {line.channel} ")
    sys.stdout.write(line.text + ("" if line.continued else "\n"))


def run_logs(args: argparse.Namespace) -> int:
    """``logs``: print an executable's (or pod container's) output, through the node's
    executor (a daemon's GetLogs, or the log files of this machine's state directory)."""
    from provisioner.names import check_process_name

    name = check_process_name(args.name)
    if args.tail is not None and args.tail < 0:
        raise UsageError("--tail must be 0 or more")
    since = parse_since(args.since) if args.since else None
    if args.follow:
        from provisioner.cli.base import keep_running

        keep_running()
    with executor(args, read_only=True) as ex:
        _print_all(ex.logs(name, args.follow, since, args.tail, args.channel), args)
    return EXIT_OK


def _print_all(lines: Iterator[LogLine], args: argparse.Namespace) -> None:
    for line in lines:
        _print_line(line, args.timestamps)
        if args.follow:
            sys.stdout.flush()
