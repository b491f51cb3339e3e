"""Entry point: parse arguments, run one command, turn errors into exit codes once."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

from provisioner import __version__
from provisioner.cli import daemon_commands, inspect_commands, manifest_commands, node_commands
from provisioner.cli.base import EXIT_FAULT, EXIT_INVALID, EXIT_OK, EXIT_USAGE, Parser, emit_json
from provisioner.errors import ManifestError, ProvisionerError, UsageError


def build_parser() -> Parser:
    parser = Parser(
        prog="provisioner",
        description="Declarative node provisioner: validate "
        "YAML manifests, plan and apply them on a node.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    manifest_commands.add_validate(sub)
    manifest_commands.add_schema(sub)
    node_commands.add_plan(sub)
    node_commands.add_apply(sub)
    node_commands.add_destroy(sub)
    inspect_commands.add_status(sub)
    inspect_commands.add_logs(sub)
    daemon_commands.add_daemon(sub)
    daemon_commands.add_certs(sub)
    version = sub.add_parser("version", help="print the version")
    version.add_argument("--json", action="store_true")
    version.set_defaults(run=run_version)
    return parser


def run_version(args: argparse.Namespace) -> int:
    import google.protobuf
    import grpc

    info = {
        "version": __version__,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": google.protobuf.__version__,
    }
    if args.json:
        emit_json(info)
    else:
        print(
            f"provisioner {__version__} (python {info['python']}, grpcio {info['grpcio']}, "
            f"protobuf {info['protobuf']})"
        )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
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
        if "--debug" in (argv or sys.argv):
            raise
        return EXIT_FAULT


if __name__ == "__main__":
    sys.exit(main())
