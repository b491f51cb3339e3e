"""``plan``, ``apply``, ``destroy``, ``status`` and ``logs``: the commands that touch a node."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator

from provisioner.cli.base import (
    EXIT_FAULT,
    EXIT_INVALID,
    EXIT_OK,
    Parser,
    add_template_args,
    emit_json,
    template_vars,
)
from provisioner.cli.registry_args import add_registry_args, registry_options
from provisioner.defaults import (
    DEFAULT_CGROUP_ROOT,
    DEFAULT_LOCK_TIMEOUT_S,
    DEFAULT_PARALLELISM,
    DEFAULT_POD_SUBNET,
    DEFAULT_SOCKET,
    DEFAULT_STATE_DIR,
    ENV_CGROUP_ROOT,
    ENV_POD_SUBNET,
    ENV_STATE_DIR,
    ENV_TARGET,
)
from provisioner.errors import FailedPrecondition, UsageError, ValidationFailed

# What a command needs is imported when it runs (see provisioner.cli.main): building the
# parser must stay cheap, and a --target command must never load the node layer.
TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from provisioner.events import ApplyEvent
    from provisioner.executors.base import Executor
    from provisioner.executors.remote import RemoteExecutor
    from provisioner.model import DesiredState
    from provisioner.plan.steps import Plan


def add_node_args(parser: argparse.ArgumentParser) -> None:
    """The options saying which node to act on and how to reach it."""
    group = parser.add_argument_group("node")
    group.add_argument("--target", metavar="URL", default=os.environ.get(ENV_TARGET),
                       help=f"a node daemon: unix:///path or host:port (env "
                       f"{ENV_TARGET}); default: the daemon at "
                       f"unix://{DEFAULT_SOCKET} if it answers, else this machine directly")
    group.add_argument("--tls-ca", metavar="FILE",
                       help="CA certificate that signed the daemon's (host:port targets)")
    group.add_argument("--tls-cert", metavar="FILE", help="this client's certificate (mTLS)")
    group.add_argument("--tls-key", metavar="FILE", help="this client's private key (mTLS)")
    group.add_argument("--insecure", action="store_true",
                       help="plain TCP without TLS to a host:port daemon (labs only)")
    group.add_argument("--state-dir", default=os.environ.get(ENV_STATE_DIR, DEFAULT_STATE_DIR),
                       help=f"state directory (env {ENV_STATE_DIR}; default %(default)s; "
                       "ignored with a daemon)")
    group.add_argument("--cgroup-root", default=os.environ.get(ENV_CGROUP_ROOT,
                                                               DEFAULT_CGROUP_ROOT),
                       help=f"cgroup subtree of the cells (env {ENV_CGROUP_ROOT}; "
                       "ignored with a daemon)")
    group.add_argument("--pod-subnet", default=os.environ.get(ENV_POD_SUBNET, DEFAULT_POD_SUBNET),
                       metavar="CIDR",
                       help=f"IPv4 subnet of the pod bridge (env {ENV_POD_SUBNET}; "
                       "default %(default)s; ignored with a daemon)")
    add_registry_args(group, " (ignored with a daemon)")
    group.add_argument("--lock-timeout", type=float, default=DEFAULT_LOCK_TIMEOUT_S,
                       metavar="SECONDS", help="how long to wait for another apply to "
                       "finish (default %(default)g)")


def add_manifest_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The manifest files, the manifest set and the template variables."""
    parser.add_argument("paths", nargs="+" if required else "*", metavar="FILE|DIR",
                        help="manifest files or directories")
    parser.add_argument("--manifest-set", metavar="NAME",
                        help="the inventory these manifests form (default: from the source)")
    add_template_args(parser)


def executor(args: argparse.Namespace, read_only: bool = False
             ) -> contextlib.AbstractContextManager[Executor]:
    """:func:`open_executor` for a command's ``--target``, ``--state-dir``, ... options
    (``read_only`` for commands that only look: they create nothing on a fresh node)."""
    from provisioner.executors.choose import open_executor

    return open_executor(args.target, args.state_dir, args.cgroup_root, args.lock_timeout,
                         tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                         insecure=args.insecure, read_only=read_only,
                         pod_subnet=args.pod_subnet, **registry_options(args))


def _remote(args: argparse.Namespace) -> RemoteExecutor | None:
    """:func:`find_daemon` for parsed options (tests/executors/test_remote.py uses it)."""
    from provisioner.executors.choose import find_daemon

    return find_daemon(args.target, args.state_dir, args.cgroup_root, tls_ca=args.tls_ca,
                       tls_cert=args.tls_cert, tls_key=args.tls_key, insecure=args.insecure,
                       socket=DEFAULT_SOCKET)


def desired_state(args: argparse.Namespace) -> DesiredState:
    """Validated manifests, or every error printed and ValidationFailed (exit 2)."""
    from provisioner.manifest import load
    from provisioner.manifest.set_name import default_set_name
    from provisioner.model import DesiredState

    result = load(args.paths, template_vars(args))
    if not result.ok:
        for issue in result.issues:
            print(issue.render(), file=sys.stderr)
        raise ValidationFailed(list(result.issues))
    name = args.manifest_set or default_set_name(args.paths)
    return DesiredState(result.state.resources, name)


def _show_plan(plan: Plan, as_json: bool, node_id: str) -> None:
    from provisioner.plan.planfile import plan_to_dict
    from provisioner.plan.render import render_plan

    if as_json:
        emit_json({"type": "plan", "plan": plan_to_dict(plan, node_id)})
    else:
        print("\n".join(render_plan(plan)), flush=True)


def add_plan(parser: Parser) -> None:
    """The ``plan`` command's description and options."""
    parser.description = ("Compare manifests with the node and print the ordered steps "
                          "that apply would take. Changes nothing.")
    add_manifest_args(parser)
    parser.add_argument("--prune", action="store_true",
                        help="also remove resources of the set that are no longer declared")
    parser.add_argument("--out", metavar="PLANFILE", help="save the plan for `apply PLANFILE`")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--detailed-exitcode", action="store_true",
                        help="exit 0 when there is nothing to do, 2 when there are changes")
    add_node_args(parser)
    parser.set_defaults(run=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    """``plan``: print (and with ``--out`` save) what apply would do."""
    from provisioner.plan.planfile import save_plan

    desired = desired_state(args)
    with executor(args, read_only=True) as ex:
        plan = ex.plan(desired, prune=args.prune)
        if args.out:
            save_plan(args.out, plan, ex.node_id)
        _show_plan(plan, args.json, ex.node_id)
    if args.out and not args.json:
        print(f"Saved the plan to {args.out}; run: provisioner apply {args.out}")
    return EXIT_INVALID if args.detailed_exitcode and plan.has_changes else EXIT_OK


def add_apply(parser: Parser) -> None:
    """The ``apply`` command's description and options."""
    parser.description = ("Plan and apply in one go, or apply a plan saved with `plan "
                          "--out`. Exit 0 on success, 1 if a step failed, 2 if the manifests "
                          "are invalid.")
    add_manifest_args(parser)
    parser.add_argument("--prune", action="store_true",
                        help="remove resources of the set that are no longer declared")
    parser.add_argument("--json", action="store_true", help="one JSON event per line")
    parser.add_argument("--parallelism", type=int, default=0, metavar="N",
                        help=f"steps run at once at most (default {DEFAULT_PARALLELISM})")
    add_node_args(parser)
    parser.set_defaults(run=run_apply, destroy=False)


def add_destroy(parser: Parser) -> None:
    """The ``destroy`` command (``apply`` of an empty set, ``destroy=True``)."""
    parser.description = ("Stop and remove every resource of the manifest set (named by "
                          "--manifest-set or derived from the files' names, as apply does), "
                          "in reverse dependency order. The files are not read: a set whose "
                          "manifests no longer validate can still be destroyed. Resources "
                          "of other sets are never touched.")
    add_manifest_args(parser, required=False)
    parser.add_argument("--json", action="store_true", help="one JSON event per line")
    parser.add_argument("--parallelism", type=int, default=0, metavar="N")
    add_node_args(parser)
    parser.set_defaults(run=run_apply, destroy=True, prune=False)


def run_apply(args: argparse.Namespace) -> int:
    """``apply`` and ``destroy``: plan (or load a saved plan) and apply it."""
    from provisioner.limits import MAX_PARALLELISM
    from provisioner.model import DesiredState
    from provisioner.plan.planfile import is_plan_file, load_plan
    from provisioner.plan.render import render_plan

    if not 0 <= args.parallelism <= MAX_PARALLELISM:
        raise UsageError(f"--parallelism must be 0 (default) to {MAX_PARALLELISM}")
    if args.destroy and not args.paths and not args.manifest_set:
        raise UsageError("destroy needs manifest files or --manifest-set NAME")
    if not args.destroy and len(args.paths) == 1 and is_plan_file(args.paths[0]):
        plan, node_id = load_plan(args.paths[0])
        with executor(args) as ex:
            if node_id and ex.node_id and node_id != ex.node_id:
                raise FailedPrecondition(f"{args.paths[0]} was planned for another node "
                                         f"({node_id}); this node is {ex.node_id}")
            return _execute(ex, plan, args)
    if args.destroy:  # the files only name the set: destroy needs none of their contents
        desired = DesiredState((), args.manifest_set or _set_named_by(args.paths))
    else:
        desired = desired_state(args)
    with executor(args) as ex, ex.locked():
        plan = ex.plan(desired, prune=args.prune, destroy=args.destroy)
        if not args.json:
            print("\n".join(render_plan(plan, show_unchanged=False)), flush=True)
        else:
            _show_plan(plan, True, ex.node_id)
        return _execute(ex, plan, args)


def _set_named_by(paths: list[str]) -> str:
    """The manifest set ``destroy FILE|DIR...`` removes: the one those paths define when
    applied. They are not read (a set whose manifests no longer validate, or use
    template variables, can still be destroyed; ``-``, stdin, is not read either), but
    each must exist: a mistyped path would name a set that is not there."""
    from provisioner.manifest.set_name import default_set_name

    missing = [path for path in paths if path != "-" and not os.path.exists(path)]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")
    return default_set_name(paths)


def _execute(ex: Executor, plan: Plan, args: argparse.Namespace) -> int:
    from provisioner.cli.output import report
    from provisioner.events import EventType

    failures: list[str] = []
    events = ex.apply(plan, args.parallelism)

    def watch() -> Iterator[ApplyEvent]:
        for event in events:
            if event.type is EventType.STEP_FAILED and event.step is not None:
                failures.append(f"step #{event.index} ({event.step.describe()}): "
                                f"{event.message}")
            yield event

    summary = report(watch(), plan, args.json)
    if failures:
        for failure in failures:
            print(f"provisioner: failed: {failure}", file=sys.stderr)
        print("provisioner: what succeeded is recorded; fix the cause and apply again",
              file=sys.stderr)
        return EXIT_FAULT
    return EXIT_FAULT if summary.skipped else EXIT_OK
