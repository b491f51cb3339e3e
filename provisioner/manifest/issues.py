"""A validation finding: where it is (file:line:col, JSON path) and what is wrong."""

from __future__ import annotations

import re

from provisioner.errors import LoadError
from provisioner.lazyre import lazy_pattern
from provisioner.records import record

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

    import yaml

_CONTROL_RE = lazy_pattern(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


@record(order=True)
class Issue:
    """One problem of a manifest: file, 1-based line and column, the JSON path of the
    field (``spec.containers[0].image``) and the message.
    """

    file: str
    line: int
    column: int
    path: str
    message: str

    def render(self) -> str:
        """``FILE:LINE:COL: PATH: MESSAGE`` on one line; control characters (which a
        manifest's keys may hold) are shown escaped, never sent to the terminal."""
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}" if self.column else f":{self.line}"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return text if text.isprintable() else _CONTROL_RE.sub(_escape, text)

    def to_json(self) -> dict[str, Any]:
        """The issue as the JSON object of ``provisioner validate --json``."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }

    @classmethod
    def from_load_error(cls, exc: LoadError) -> Issue:
        """The issue of a file that could not be loaded."""
        return cls(exc.file, exc.line or 0, exc.column or 0, "", exc.message)

    @classmethod
    def at(cls, file: str, node: yaml.Node, path: tuple[str | int, ...], message: str) -> Issue:
        """An issue located at a YAML node."""
        return cls(
            file, node.start_mark.line + 1, node.start_mark.column + 1, json_path(path), message
        )


def json_path(path: tuple[str | int, ...]) -> str:
    """("spec", "containers", 0, "name") -> "spec.containers[0].name"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
