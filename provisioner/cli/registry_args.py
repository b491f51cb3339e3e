"""``--registry-ca``, ``--insecure-registry``, ``--registry-auth-file``: how a node pulls.

Shared by the node commands (``plan``, ``apply``... acting on this machine) and
``provisioner daemon``; docs/pods.md (Registries) says what they mean.
"""

from __future__ import annotations

import argparse
import os

from provisioner.defaults import ENV_INSECURE_REGISTRIES, ENV_REGISTRY_CA
from provisioner.errors import InvalidArgument, UsageError

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["add_registry_args", "registry_options"]


def add_registry_args(group: Any, note: str = "") -> None:
    """``--registry-ca``, ``--insecure-registry`` and ``--registry-auth-file``: how this
    node pulls registry images (docs/pods.md, Registries)."""
    group.add_argument("--registry-ca", metavar="FILE", default=os.environ.get(
        ENV_REGISTRY_CA, ""), help="PEM file of CAs trusted for registry pulls besides the "
        f"system's (env {ENV_REGISTRY_CA}){note}")
    group.add_argument("--insecure-registry", metavar="HOST[:PORT]", action="append",
                       default=None, help="a registry pulled from without verified TLS "
                       f"(repeatable; env {ENV_INSECURE_REGISTRIES}, comma-separated; "
                       f"loopback registries may speak plain HTTP anyway){note}")
    group.add_argument("--registry-auth-file", metavar="FILE", default="",
                       help="auth.json with registry credentials (default: "
                       f"$REGISTRY_AUTH_FILE, then podman's paths){note}")


def registry_options(args: argparse.Namespace) -> dict[str, Any]:
    """The registry keyword arguments of :func:`open_executor` (UsageError if bad)."""
    insecure = args.insecure_registry
    if insecure is None:
        insecure = [h for h in os.environ.get(ENV_INSECURE_REGISTRIES, "").split(",") if h]
    if insecure:
        from provisioner.imageref import parse_registry  # (only to check the hosts given)
    for host in insecure:
        try:
            parse_registry(host)
        except InvalidArgument as e:
            raise UsageError(f"--insecure-registry: {e}") from None
    for flag, path in (("--registry-ca", args.registry_ca),
                       ("--registry-auth-file", args.registry_auth_file)):
        if path and not os.path.isfile(path):
            raise UsageError(f"{flag} {path}: no such file")
    return {"registry_ca": args.registry_ca, "insecure_registries": tuple(insecure),
            "registry_auth_file": args.registry_auth_file}
