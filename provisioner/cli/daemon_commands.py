"""``daemon`` (serve the node's gRPC APIs) and ``certs init | issue`` (a lab CA)."""

from __future__ import annotations

import argparse
import os
import re
from typing import TYPE_CHECKING

from provisioner.cli.base import EXIT_OK, Parser
from provisioner.cli.registry_args import add_registry_args, registry_options
from provisioner.defaults import (
    DEFAULT_CGROUP_ROOT,
    DEFAULT_MAX_CONCURRENT_RPCS,
    DEFAULT_MAX_MESSAGE_MB,
    DEFAULT_POD_SUBNET,
    DEFAULT_SOCKET,
    DEFAULT_STATE_DIR,
    ENV_CGROUP_ROOT,
    ENV_POD_SUBNET,
    ENV_STATE_DIR,
)
from provisioner.errors import UsageError

if TYPE_CHECKING:  # the daemon's modules load only for its commands (provisioner.cli.main)
    from provisioner.daemon.context import DaemonConfig

DEFAULT_CERT_DIR = "/etc/provisioner/pki"
_HOST_PORT = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+|\*):(\d{1,5})$")


def add_daemon(parser: Parser) -> None:
    """The ``daemon`` command's description and its listening, policy and limit options."""
    from provisioner.daemon.context import MAX_CONCURRENT_RPCS_LIMIT

    parser.description = (
        "Serve every API of this node over gRPC: on a root-only unix socket "
        "by default, on TCP with mutual TLS when asked. Runs until SIGTERM or SIGINT; "
        "executables keep running for the next start unless --stop-on-exit.")
    listen = parser.add_argument_group("listening")
    listen.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH",
                        help="unix socket, mode 0600 owner root (default %(default)s)")
    listen.add_argument("--no-socket", action="store_true",
                        help="do not listen on a unix socket (TCP only)")
    listen.add_argument("--socket-group", metavar="GROUP",
                        help="give this group read-write access to the socket (mode 0660)")
    listen.add_argument("--tcp", metavar="HOST:PORT", help="also listen on TCP (mutual TLS)")
    listen.add_argument("--tls-cert", metavar="FILE", help="server certificate (PEM)")
    listen.add_argument("--tls-key", metavar="FILE", help="server private key (PEM)")
    listen.add_argument("--client-ca", metavar="FILE",
                        help="CA certificate that client certificates must chain to")
    listen.add_argument("--insecure-tcp", action="store_true",
                        help="serve --tcp WITHOUT TLS: no encryption, every caller is "
                        "'anonymous' (for isolated test networks only)")
    parser.add_argument("--policy", metavar="FILE",
                        help="authorization policy (YAML); default: the documented policy")
    parser.add_argument("--stop-on-exit", action="store_true",
                        help="stop every executable when the daemon exits")
    parser.add_argument("--state-dir", default=os.environ.get(ENV_STATE_DIR, DEFAULT_STATE_DIR),
                        help=f"state directory (env {ENV_STATE_DIR}; default "
                        "%(default)s)")
    parser.add_argument("--cgroup-root", default=os.environ.get(ENV_CGROUP_ROOT,
                                                                DEFAULT_CGROUP_ROOT),
                        help=f"cgroup subtree of the cells (env {ENV_CGROUP_ROOT})")
    parser.add_argument("--pod-subnet", default=os.environ.get(ENV_POD_SUBNET, DEFAULT_POD_SUBNET),
                        metavar="CIDR", help=f"IPv4 subnet of the pod bridge (env "
                        f"{ENV_POD_SUBNET}; default %(default)s)")
    add_registry_args(parser)
    parser.add_argument("--max-message-mb", type=int, default=DEFAULT_MAX_MESSAGE_MB,
                        metavar="N",
                        help="largest request or response message (default %(default)s)")
    parser.add_argument("--max-concurrent-rpcs", type=int,
                        default=DEFAULT_MAX_CONCURRENT_RPCS, metavar="N",
                        help="calls in flight (one worker thread each) before new ones "
                        "get RESOURCE_EXHAUSTED (default %(default)s, at most "
                        f"{MAX_CONCURRENT_RPCS_LIMIT})")
    parser.set_defaults(run=run_daemon)


def daemon_config(args: argparse.Namespace) -> DaemonConfig:
    """The configuration the arguments describe, or UsageError for a bad combination."""
    from provisioner.daemon.context import MAX_CONCURRENT_RPCS_LIMIT, DaemonConfig, MiB

    tls = {"--tls-cert": args.tls_cert, "--tls-key": args.tls_key,
           "--client-ca": args.client_ca}
    given = [flag for flag, value in tls.items() if value]
    if args.tcp is None:
        if args.insecure_tcp or given:
            raise UsageError(f"{' '.join(given) or '--insecure-tcp'} needs --tcp HOST:PORT")
        if args.no_socket:
            raise UsageError("--no-socket needs --tcp HOST:PORT: there is nothing to listen on")
    else:
        if not _HOST_PORT.match(args.tcp) or not 0 <= int(args.tcp.rsplit(":", 1)[1]) <= 65535:
            raise UsageError(f"--tcp {args.tcp!r}: expected HOST:PORT, e.g. 0.0.0.0:7443 "
                             "or [::]:7443")
        if args.insecure_tcp and given:
            raise UsageError(f"--insecure-tcp and {' '.join(given)} exclude each other")
        if not args.insecure_tcp and len(given) < 3:
            missing = [flag for flag in tls if flag not in given]
            raise UsageError(f"--tcp needs mutual TLS: also give {' '.join(missing)} "
                             "(see `provisioner certs`), or --insecure-tcp to serve "
                             "without TLS")
    if args.no_socket and args.socket_group:
        raise UsageError("--socket-group needs the unix socket (drop --no-socket)")
    if not 1 <= args.max_message_mb <= 1024:
        raise UsageError("--max-message-mb must be between 1 and 1024")
    if not 1 <= args.max_concurrent_rpcs <= MAX_CONCURRENT_RPCS_LIMIT:
        raise UsageError(f"--max-concurrent-rpcs must be between 1 and "
                         f"{MAX_CONCURRENT_RPCS_LIMIT}")
    return DaemonConfig(
        state_dir=args.state_dir, cgroup_root=args.cgroup_root,
        socket=None if args.no_socket else args.socket, socket_group=args.socket_group,
        tcp=args.tcp, tls_cert=args.tls_cert, tls_key=args.tls_key,
        client_ca=args.client_ca, insecure_tcp=args.insecure_tcp, policy_file=args.policy,
        stop_on_exit=args.stop_on_exit, max_message_bytes=args.max_message_mb * MiB,
        max_concurrent_rpcs=args.max_concurrent_rpcs, pod_subnet=args.pod_subnet,
        **registry_options(args))


def run_daemon(args: argparse.Namespace) -> int:
    """``daemon``: serve until SIGTERM or SIGINT."""
    from provisioner.cli.base import keep_running
    from provisioner.daemon.server import serve  # grpc servers load only for this command

    keep_running()
    serve(daemon_config(args))
    return EXIT_OK


def add_certs(parser: Parser) -> None:
    """The ``certs init`` and ``certs issue`` commands."""
    parser.description = (
        "A small certificate authority for lab setups: `certs init` makes the "
        "CA, `certs issue NAME --server|--client` a certificate signed by it. A client "
        "certificate's common name is the identity the daemon's policy matches.")
    actions = parser.add_subparsers(dest="certs_command", metavar="ACTION",
                                    parser_class=Parser, required=True)
    init = actions.add_parser("init", help="create ca.crt and ca.key")
    init.add_argument("--cn", default="provisioner lab CA", metavar="NAME",
                      help="the CA's common name (default %(default)r)")
    _common(init, default_days=3650)
    init.set_defaults(run=run_certs_init)

    issue = actions.add_parser("issue", help="create NAME.crt and NAME.key signed by the CA")
    issue.add_argument("name", metavar="NAME", help="file name; for clients also the identity")
    kind = issue.add_mutually_exclusive_group(required=True)
    kind.add_argument("--server", dest="kind", action="store_const", const="server",
                      help="for the daemon (valid for localhost, 127.0.0.1, ::1 and --san)")
    kind.add_argument("--client", dest="kind", action="store_const", const="client",
                      help="for a caller (common name NAME)")
    issue.add_argument("--san", action="append", default=[], metavar="X",
                       help="extra subject alternative name: DNS:host, IP:addr, URI:uri or a "
                       "bare host name / address (repeatable)")
    _common(issue, default_days=365)
    issue.set_defaults(run=run_certs_issue)


def _common(parser: argparse.ArgumentParser, default_days: int) -> None:
    parser.add_argument("--dir", default=DEFAULT_CERT_DIR, metavar="DIR",
                        help="where the CA and certificates live (default %(default)s)")
    parser.add_argument("--days", type=int, default=default_days, metavar="N",
                        help="validity in days (default %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace existing files")


def run_certs_init(args: argparse.Namespace) -> int:
    """``certs init``: make the lab CA's certificate and key."""
    from provisioner.daemon import certs

    _check_days(args.days)
    files = certs.init_ca(args.dir, args.cn, args.days, force=args.force)
    print(f"wrote {files.cert} and {files.key} (keep the key private)")
    return EXIT_OK


def run_certs_issue(args: argparse.Namespace) -> int:
    """``certs issue``: make a server or client certificate signed by the CA."""
    from provisioner.daemon import certs

    _check_days(args.days)
    files = certs.issue(args.dir, args.name, args.kind, args.san, args.days, force=args.force)
    print(f"wrote {files.cert} and {files.key} ({args.kind} certificate, CN {args.name})")
    return EXIT_OK


def _check_days(days: int) -> None:
    if days < 1:
        raise UsageError("--days must be at least 1")
