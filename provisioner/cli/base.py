"""What every command shares: exit codes, the argument parser, output helpers."""

from __future__ import annotations

import argparse
import os
import sys

from provisioner.errors import UsageError

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any, NoReturn

#: Exit codes, documented in the README. ``plan --detailed-exitcode`` uses CHANGES.
EXIT_OK = 0
EXIT_FAULT = 1  # internal fault, or an operation that failed on the node
EXIT_INVALID = 2  # invalid manifests (and, for plan --detailed-exitcode, "changes")
EXIT_USAGE = 64  # bad command line (BSD sysexits EX_USAGE)

JSON_FORMAT_VERSION = 1


def terminal_columns() -> int:
    """The width help is wrapped to, found as ``shutil.get_terminal_size`` finds it:
    ``$COLUMNS``, else standard output's terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's own layout, given the width: argparse makes a formatter for every
    argument it adds (to check its metavar) and asks ``shutil`` for the width each
    time, and importing ``shutil`` (with bz2 and lzma) is ~3 ms of a command."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         terminal_columns() - 2 if width is None else width)


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing and exiting with 2.

    Exit status 2 means "invalid manifests" here, so usage errors must not use it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Raise UsageError (exit 64) with the message and the usage line."""
        raise UsageError(f"{message}\n{self.format_usage().rstrip()}")


def emit_json(obj: dict[str, Any]) -> None:
    """One JSON object on one line, with the format version first."""
    import json

    sys.stdout.write(
        json.dumps({"format_version": JSON_FORMAT_VERSION, **obj}, separators=(",", ":")) + "\n"
    )
    sys.stdout.flush()


def add_template_args(parser: argparse.ArgumentParser) -> None:
    """``--var NAME=VALUE`` and ``--vars-file FILE`` (both repeatable)."""
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a Jinja2 template variable (repeatable)",
    )
    parser.add_argument(
        "--vars-file",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML or JSON mapping of template variables (repeatable)",
    )


def template_vars(args: argparse.Namespace) -> dict[str, Any]:
    """The template variables of ``--vars-file`` s, then ``--var`` s (later wins)."""
    variables: dict[str, Any] = {}
    if not (args.vars_file or args.var):
        return variables  # without importing the templating code (and Jinja2)
    from provisioner.manifest.template import load_vars_file, parse_var

    for path in args.vars_file:
        variables.update(load_vars_file(path))
    for assignment in args.var:
        name, value = parse_var(assignment)
        variables[name] = value
    return variables


def keep_running() -> None:
    """Called by a command that runs until stopped: the cyclic garbage collector again
    (the ``provisioner`` program, :func:`provisioner.cli.main.run`, turns it off for the
    short-lived ones)."""
    import gc

    gc.enable()
