"""What the kernel will exec: the sizes of a command and its environment, checked
before anything is made for it.

An executable runs as ``/bin/sh -c COMMAND`` with its environment. ``execve`` fails
with E2BIG ("Argument list too long") when one argument or environment string is
longer than ``MAX_ARG_STRLEN`` (32 pages: 128 KiB), or when all of them together
(with a pointer each) exceed ``ARG_MAX`` (a quarter of the stack limit, 2 MiB by
default). That failure used to come from the supervisor, after the leaf cgroup, the
status file and the record were made; :func:`check_exec_size` says it first, as
InvalidArgument naming the limit, and nothing is made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from provisioner.errors import InvalidArgument

__all__ = ["ARG_MAX", "MAX_ARG_STRLEN", "check_exec_size"]

#: The kernel's limit on one argument or environment string, its NUL included.
MAX_ARG_STRLEN = 32 * os.sysconf("SC_PAGE_SIZE")
#: The kernel's limit on all arguments and environment strings together.
ARG_MAX = os.sysconf("SC_ARG_MAX")
#: Kept free for what the launch adds (``/bin/sh -c``, nsenter's arguments, PATH,
#: HOME, USER, LOGNAME) and for the pointers.
_RESERVE = 16 * 1024


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass")) + 1


def check_exec_size(what: str, command: str, env: Mapping[str, str] | None = None) -> None:
    """InvalidArgument if ``command`` with ``env`` cannot be exec'd on this kernel."""
    command_size = _size(command)
    if command_size > MAX_ARG_STRLEN:
        raise InvalidArgument(
            f"{what}: command is {command_size - 1} bytes; the kernel runs a command of at "
            f"most {MAX_ARG_STRLEN - 1} bytes (MAX_ARG_STRLEN, one argument of /bin/sh -c): "
            "put a long script in a file and run that")
    total = command_size + 8
    for key, value in (env or {}).items():
        entry = _size(f"{key}={value}")
        if entry > MAX_ARG_STRLEN:
            raise InvalidArgument(
                f"{what}: environment variable {key[:64]!r} is {entry - 1} bytes; the kernel "
                f"takes at most {MAX_ARG_STRLEN - 1} bytes per variable (MAX_ARG_STRLEN)")
        total += entry + 8
    if total > ARG_MAX - _RESERVE:
        raise InvalidArgument(
            f"{what}: command and environment are {total} bytes together; the kernel takes "
            f"at most {ARG_MAX - _RESERVE} (ARG_MAX {ARG_MAX}, less what the launch adds)")
