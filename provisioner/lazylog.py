"""Loggers that import :mod:`logging` when they first log.

:mod:`logging` (with traceback, textwrap, string, ...) costs a few milliseconds at
import, and the node layer logs only on unusual paths (a cgroup that would not go, a
supervisor that died). A CLI command or an Ansible task that logs nothing does not pay
for it; the daemon, which configures logging at start, is unaffected.
"""

from __future__ import annotations

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    import logging


class LazyLogger:
    """``logging.getLogger(name)``, looked up on the first message."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: logging.Logger | None = None

    def _get(self) -> logging.Logger:
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self.name)
        return self._logger

    def warning(self, msg: str, *args: object) -> None:
        """``Logger.warning``."""
        self._get().warning(msg, *args)

    def error(self, msg: str, *args: object) -> None:
        """``Logger.error``."""
        self._get().error(msg, *args)
