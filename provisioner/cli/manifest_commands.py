"""``provisioner validate`` and ``provisioner schema``."""

from __future__ import annotations

import argparse
import sys

from provisioner.cli.base import (
    EXIT_INVALID,
    EXIT_OK,
    Parser,
    add_template_args,
    emit_json,
    template_vars,
)
from provisioner.errors import UsageError


def add_validate(parser: Parser) -> None:
    """The ``validate`` command's description and options."""
    parser.description = (
        "Check manifest files (or directories of *.yaml / *.yml) and report every "
        "error as FILE:LINE:COL: PATH: MESSAGE. Exit 0 when valid, 2 when invalid."
    )
    parser.add_argument("paths", nargs="+", metavar="FILE|DIR", help="manifest files or dirs")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    add_template_args(parser)
    parser.set_defaults(run=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    """``validate``: check manifests without a node; every error printed (exit 2)."""
    from provisioner.manifest import load

    result = load(args.paths, template_vars(args))
    if args.json:
        emit_json(
            {
                "valid": result.ok,
                "files": len(result.files),
                "documents": result.documents,
                "resources": len(result.state.resources),
                "errors": [issue.to_json() for issue in result.issues],
            }
        )
    elif result.ok:
        print(
            f"valid: {len(result.state.resources)} resources in {result.documents} documents "
            f"of {len(result.files)} files"
        )
    else:
        for issue in result.issues:
            print(issue.render(), file=sys.stderr)
        print(f"invalid: {len(result.issues)} error(s)", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_INVALID


def add_schema(parser: Parser) -> None:
    """The ``schema`` command's description and options."""
    from provisioner.manifest.overlay import KINDS

    parser.description = (
        "Print the JSON Schema of one kind, or of any manifest document when no "
        "kind is given; with --out, write every schema file into a directory."
    )
    parser.add_argument("kind", nargs="?", help=f"one of {', '.join(KINDS)}")
    parser.add_argument("--out", metavar="DIR", help="write all schema files into DIR")
    parser.set_defaults(run=run_schema)


def run_schema(args: argparse.Namespace) -> int:
    """``schema``: print a kind's JSON Schema (or list the kinds)."""
    import json
    from pathlib import Path

    from provisioner.manifest.overlay import KINDS
    from provisioner.manifest.schema_check import load_schema

    names = [f"{kind.lower()}.schema.json" for kind in KINDS] + ["manifest.schema.json"]
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            (out / name).write_text(json.dumps(load_schema(name), indent=2) + "\n")
        print(f"wrote {len(names)} schemas to {out}")
        return EXIT_OK
    if args.kind is None:
        name = "manifest.schema.json"
    else:
        matches = [k for k in KINDS if k.lower() == args.kind.lower()]
        if not matches:
            raise UsageError(f"unknown kind {args.kind!r} (one of {', '.join(KINDS)})")
        name = f"{matches[0].lower()}.schema.json"
    print(json.dumps(load_schema(name), indent=2))
    return EXIT_OK
