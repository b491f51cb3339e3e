"""The executable's own process between fork and exec, and its stand-by form.

The shim's child, before exec: becomes its own session / process group, resets the
signal dispositions the shim changed (an *ignored* disposition survives exec: Python
ignores SIGPIPE, which would break ``producer | head`` in the command), puts stdin on
/dev/null and stdout/stderr on the shim's pipes, joins the leaf cgroup(s) - so
everything it ever starts is inside - drops to uid/gid, changes directory and execs
with a clean environment. Any failure is written to a close-on-exec *report pipe*, so
"working_dir missing" reaches the status as such instead of as an anonymous exit 127;
EOF without data there means the exec happened.

:class:`Standby` is the same child forked *ahead of time* by a spare shim (see
:mod:`provisioner.node.spare`): it does everything that does not depend on the spec
(session, signals, stdio) and then blocks on a *go pipe*; the shim sends it the rest
(leaf, argv, environment, user, directory) once its spec has arrived, so the fork is
off the path of the launch. Closing the go pipe without a message makes it exit.

Only the stdlib and provisioner.node.{leaf,shimspec} are imported (see shim.py).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import pwd
import signal

from provisioner.node import leaf as leafops
from provisioner.node.procs import set_comm
from provisioner.node.shimspec import ShimSpec
from provisioner.node.types import LeafCgroup

TYPE_CHECKING = False  # spares importing typing at run time; mypy knows the name
if TYPE_CHECKING:
    from typing import NoReturn, TypeAlias

    #: What the child needs of the spec: (leaf dirs, argv, env, uid, gid, directory to
    #: chdir to - None when nsenter does it). Plain values: it crosses the go pipe.
    Plan: TypeAlias = tuple[tuple[str, ...], list[str], dict[str, str], int | None,
                            int | None, str | None]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NSENTER = "/usr/bin/nsenter"
# Signals whose disposition a shim (or the zygote it was forked from) changes.
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP, signal.SIGINT,
                  signal.SIGTERM, signal.SIGCHLD)


def plan(spec: ShimSpec) -> Plan:
    """How the child of SPEC is to be started (user lookup and argv done here, once)."""
    uid, gid, env = _identity(spec)
    ns = spec.namespace
    if ns is None:
        return spec.leaf.dirs, ["/bin/sh", "-c", spec.command], env, uid, gid, spec.working_dir
    argv = [NSENTER, f"--target={ns.holder_pid}", *(f"--{n}" for n in ns.namespaces),
            f"--wdns={spec.working_dir}"]
    if gid is not None:
        argv.append(f"--setgid={gid}")
    if uid is not None:
        argv.append(f"--setuid={uid}")
    # With nsenter, it switches user and directory itself (inside the cell).
    return spec.leaf.dirs, [*argv, "--", "/bin/sh", "-c", spec.command], env, None, None, None


def _identity(spec: ShimSpec) -> tuple[int | None, int | None, dict[str, str]]:
    """(uid, gid, base environment) for the child; gid defaults to the user's group."""
    env = {"PATH": DEFAULT_PATH, "HOME": "/"}
    uid, gid = spec.uid, spec.gid
    if uid is not None:
        try:
            pw = pwd.getpwuid(uid)
            env.update(HOME=pw.pw_dir or "/", USER=pw.pw_name, LOGNAME=pw.pw_name)
            gid = pw.pw_gid if gid is None else gid
        except KeyError:
            gid = uid if gid is None else gid  # never keep root's group for a non-root uid
    return uid, gid, {**env, **spec.env}


def _report(report_w: int, message: str) -> NoReturn:
    with contextlib.suppress(OSError):
        os.write(report_w, message.encode("utf-8", "replace"))
    os._exit(127)


def _prepare(out_w: int, err_w: int) -> None:
    """The spec-independent part: session, signal dispositions, stdio."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    for sig in _RESET_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.close(null)


def _become(how: Plan, report_w: int) -> NoReturn:
    """Join the leaf, switch user and directory, exec; report why not and _exit(127)."""
    dirs, argv, env, uid, gid, working_dir = how
    stage = "cgroup"
    try:
        leafops.attach(LeafCgroup(tuple(dirs), False), os.getpid())
        stage = "user"
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        stage = "working_dir"
        if working_dir is not None:
            os.chdir(working_dir)
        stage = "exec"
        os.execve(argv[0], argv, env)
    except BaseException as exc:  # everything must reach the report pipe, then _exit
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _report(report_w, {
            "working_dir": f"working_dir {working_dir!r}: {why}",
            "exec": f"cannot execute {argv[0]}: {why}",
            "user": f"cannot switch to uid {uid} gid {gid}: {why}",
            "cgroup": f"cannot join leaf cgroup: {why}",
        }.get(stage, f"{stage}: {why}"))
    os._exit(127)  # not reached: execve either replaces us or raises


def run(how: Plan, out_w: int, err_w: int, report_w: int) -> NoReturn:
    """In a child forked just now: prepare, then become the executable."""
    try:
        _prepare(out_w, err_w)
    except BaseException as exc:
        _report(report_w, f"setup: {exc}")
    _become(how, report_w)


class Standby:
    """A child forked ahead of time, waiting for its plan (parent side of the pipes)."""

    def __init__(self, pid: int, out_r: int, err_r: int, report_r: int, go_w: int) -> None:
        self.pid, self.out_r, self.err_r, self.report_r, self.go_w = (
            pid, out_r, err_r, report_r, go_w)

    @classmethod
    def fork(cls, close_in_child: tuple[int, ...] = ()) -> Standby | None:
        """Fork a stand-by child; None if fork fails (the shim then forks when needed).
        ``close_in_child``: fds of ours the child must not keep."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        report_r, report_w = os.pipe()
        go_r, go_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (out_r, out_w, err_r, err_w, report_r, report_w, go_r, go_w):
                os.close(fd)
            return None
        if pid == 0:
            for fd in (out_r, err_r, report_r, go_w, *close_in_child):
                os.close(fd)
            _standby_main(go_r, out_w, err_w, report_w)
        for fd in (out_w, err_w, report_w, go_r):
            os.close(fd)
        return cls(pid, out_r, err_r, report_r, go_w)

    def go(self, how: Plan) -> bool:
        """Send the plan; False if the stand-by is gone (it is then reaped)."""
        try:
            data = memoryview(marshal.dumps(how))
            while data:
                data = data[os.write(self.go_w, data):]
        except OSError:  # EPIPE: it died (killed?) while waiting
            self.discard()
            return False
        os.close(self.go_w)  # EOF ends its read
        self.go_w = -1
        return True

    def discard(self) -> None:
        """Let it exit (EOF on its go pipe) and reap it; close our ends."""
        for fd in (self.go_w, self.out_r, self.err_r, self.report_r):
            if fd >= 0:
                os.close(fd)
        self.go_w = self.out_r = self.err_r = self.report_r = -1
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _standby_main(go_r: int, out_w: int, err_w: int, report_w: int) -> NoReturn:
    try:
        set_comm("prov-standby")
        _prepare(out_w, err_w)
        data = b""
        while chunk := os.read(go_r, 65536):
            data += chunk
        os.close(go_r)
        if not data:
            os._exit(0)  # discarded: no executable for us
        how: Plan = marshal.loads(data)
    except BaseException as exc:
        _report(report_w, f"setup: {exc}")
    _become(how, report_w)
