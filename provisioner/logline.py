"""One line of a process's captured output: the value logs are read as, everywhere.

A neutral module: the node layer reads log files into these, the remote executor
builds them from ``provisioner.v1.LogEntry`` messages, and the CLI prints them, so the
CLI and the remote executor need not import the node layer to show a log. It imports
nothing of the package.
"""

from __future__ import annotations

from provisioner.records import record

STDOUT = "stdout"
STDERR = "stderr"
#: The channels a line may come from.
CHANNELS = (STDOUT, STDERR)


@record(slots=True)
class LogLine:
    """A line (or, ``continued``, a piece of an overlong one) and when it was written."""

    ts_ns: int
    channel: str  # STDOUT or STDERR
    text: str
    continued: bool = False  # a piece of an overlong line; the rest follows


@record
class LogRequest:
    """Which lines of which process a caller asks for (``Executor.logs``' arguments)."""

    name: str  # an executable, or a pod's container as ``pod.container``
    follow: bool = False
    since_ns: int | None = None  # only lines at or after this time
    tail: int | None = None  # only the last ``tail`` lines (of those selected)
    channel: str | None = None  # STDOUT or STDERR; None: both
