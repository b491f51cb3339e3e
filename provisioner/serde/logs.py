"""Log requests and lines <-> ``provisioner.v1`` GetLogsRequest / LogEntry messages.

On the wire, "none" is the zero value: ``since_ns`` 0 means all lines and an empty
``channel`` both channels; ``tail`` is an optional field (unset: all lines).
"""

from __future__ import annotations

from provisioner._proto.provisioner.v1 import node_pb2 as npb
from provisioner.errors import InvalidArgument
from provisioner.logline import LogLine, LogRequest


def logs_request_to_proto(name: str, follow: bool = False, since_ns: int | None = None,
                          tail: int | None = None,
                          channel: str | None = None) -> npb.GetLogsRequest:
    """The GetLogs request for ``Executor.logs``' arguments; a negative tail is
    InvalidArgument."""
    request = npb.GetLogsRequest(executable=name, follow=follow, since_ns=since_ns or 0,
                                 channel=channel or "")
    if tail is not None:
        if tail < 0:
            raise InvalidArgument(f"tail must be 0 or more, not {tail}")
        request.tail = tail
    return request


def logs_request_from_proto(request: npb.GetLogsRequest) -> LogRequest:
    """What a GetLogs request asks for (the name and channel are checked by the
    executor that reads the logs)."""
    return LogRequest(name=request.executable, follow=request.follow,
                      since_ns=request.since_ns or None,
                      tail=request.tail if request.HasField("tail") else None,
                      channel=request.channel or None)


def logline_to_proto(line: LogLine) -> npb.LogEntry:
    """One line as a LogEntry."""
    return npb.LogEntry(timestamp_ns=line.ts_ns, channel=line.channel, text=line.text,
                        continued=line.continued)


def logline_from_proto(entry: npb.LogEntry) -> LogLine:
    """A LogEntry as a line."""
    return LogLine(entry.timestamp_ns, entry.channel, entry.text, entry.continued)
