"""Entry point: parse arguments, run one command, turn errors into exit codes once.

Start-up is part of every command's cost (scripts and Ansible tasks call it many
times), so this module imports almost nothing: a command's module is imported only when
that command runs (or shows its help), and each module imports what its work needs only
when it does it. ``provisioner version`` loads neither gRPC nor the manifest code;
``validate`` and ``schema`` load neither gRPC, the daemon nor the node layer; a command
with ``--target`` never loads the node layer. ``tests/cli/test_startup_imports.py``
pins this; ``bench/cli_startup.py`` measures it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from provisioner.cli.base import EXIT_FAULT, EXIT_INVALID, EXIT_OK, EXIT_USAGE, Parser, emit_json
from provisioner.errors import ManifestError, ProvisionerError, UsageError

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import NoReturn

#: Every command with its one-line help, in the order ``provisioner --help`` lists them.
COMMANDS: dict[str, str] = {
    "validate": "check manifests against the schemas and each other",
    "schema": "print or export the JSON Schemas",
    "plan": "show what apply would change",
    "apply": "make the node match the manifests (or a saved plan)",
    "destroy": "remove everything a manifest set created",
    "status": "what the node runs, its state and any drift",
    "logs": "print an executable's (or a pod container's) output",
    "images": "list the node's image cache, or prune the images no pod uses",
    "daemon": "serve the node's gRPC APIs",
    "certs": "make a lab CA and certificates for mutual TLS",
    "version": "print the version",
}


def _definer(command: str) -> Callable[[Parser], None]:
    """The function that gives ``command``'s parser its description, options and handler;
    its module is imported now, not before."""
    if command == "validate":
        from provisioner.cli.manifest_commands import add_validate as define
    elif command == "schema":
        from provisioner.cli.manifest_commands import add_schema as define
    elif command == "plan":
        from provisioner.cli.node_commands import add_plan as define
    elif command == "apply":
        from provisioner.cli.node_commands import add_apply as define
    elif command == "destroy":
        from provisioner.cli.node_commands import add_destroy as define
    elif command == "status":
        from provisioner.cli.inspect_commands import add_status as define
    elif command == "logs":
        from provisioner.cli.inspect_commands import add_logs as define
    elif command == "images":
        from provisioner.cli.image_commands import add_images as define
    elif command == "daemon":
        from provisioner.cli.daemon_commands import add_daemon as define
    elif command == "certs":
        from provisioner.cli.daemon_commands import add_certs as define
    else:
        define = add_version
    return define


def _command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (the top-level
    parser has no option taking a value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> Parser:
    """The argument parser. With ``argv``, only the command it names gets its options
    (the others' modules stay unimported); without, every command does.

    Every command is listed, for ``--help`` and for the errors that name the choices,
    except when ``argv`` starts with a command's name: then only that command has a
    parser (argparse makes one per command, ~0.1 ms each, more than a start-up should
    spend on commands it will not run). Nothing the top-level parser can then print
    names the others: its usage says ``COMMAND``, and ``--help`` before the command
    word is not that case.
    """
    parser = Parser(
        prog="provisioner",
        description="Declarative node provisioner: validate "
        "YAML manifests, plan and apply them on a node.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    chosen = _command_in(argv) if argv is not None else None
    listed = [argv[0]] if argv and argv[0] in COMMANDS else COMMANDS
    for command in listed:
        command_parser = sub.add_parser(command, help=COMMANDS[command])
        if argv is None or command == chosen:
            _definer(command)(command_parser)
    return parser


def add_version(parser: Parser) -> None:
    """The ``version`` command."""
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run_version)


def run_version(args: argparse.Namespace) -> int:
    """``version``: this package's version and those of Python, grpcio and protobuf (read
    from the installed distributions: importing gRPC would cost more than the rest)."""
    from provisioner.cli.versions import distribution_version, provisioner_version

    version = provisioner_version()
    info = {
        "version": version,
        "python": sys.version.split()[0],  # (as platform.python_version(), ~2 ms less)
        "grpcio": distribution_version("grpcio"),
        "protobuf": distribution_version("protobuf"),
    }
    if args.json:
        emit_json(info)
    else:
        print(
            f"provisioner {version} (python {info['python']}, grpcio {info['grpcio']}, "
            f"protobuf {info['protobuf']})"
        )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` (default: the process's arguments) names; its exit code."""
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(words)
    try:
        args = parser.parse_args(words)
        if not getattr(args, "run", None):
            raise UsageError(f"a command is needed\n{parser.format_usage().rstrip()}")
        code: int = args.run(args)
        return code
    except UsageError as exc:
        print(f"provisioner: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ManifestError as exc:
        print(f"provisioner: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except ProvisionerError as exc:
        print(f"provisioner: {exc}", file=sys.stderr)
        return EXIT_FAULT
    except KeyboardInterrupt:
        print("provisioner: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # the one place a fault becomes an exit code
        print(f"provisioner: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if "--debug" in words:
            raise
        return EXIT_FAULT


def run() -> NoReturn:
    """The ``provisioner`` program: :func:`main`, then exit at once.

    Once the command is done and its output flushed, nothing is left to do: the command
    closed its files, database and threads itself, and the program logs nothing. So the
    process ends with ``os._exit`` instead of the interpreter's tear-down of every module
    and object, ~10 ms of each command (scripts and Ansible tasks call it many times).
    :func:`main` itself returns normally (the tests call it in-process).
    """
    import gc
    import os

    # Nor does a command need the cyclic garbage collector: it would walk, again and
    # again, the objects its imports make (~5% of a pod's apply), and what a command
    # builds has next to no reference cycles. The commands that keep running (the
    # daemon, ``logs --follow``) turn it back on (``provisioner.cli.base.keep_running``).
    gc.disable()
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # a reader that went away: nothing more can be said
        pass
    except OSError:
        sys.exit(EXIT_FAULT)  # (the regular exit reports what could not be written)
    os._exit(code)


if __name__ == "__main__":
    run()
