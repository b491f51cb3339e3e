"""The detached supervisor of ONE executable: ``python -m provisioner.node.shim SPEC``.

Per run it forks a child that, before exec, becomes its own session / process group,
joins the leaf cgroup(s) (so everything it ever starts is inside), drops to uid/gid,
changes directory and builds a clean environment, then execs ``/bin/sh -c COMMAND`` (or
``nsenter --target HOLDER ... -- /bin/sh -c COMMAND`` for an isolated cell). Setup
failures travel back through a close-on-exec pipe, so "working_dir missing" is reported
as such instead of as an anonymous exit 127.

One single-threaded selector loop reads stdout and stderr (never blocking on one while
the other fills), a self-pipe (``signal.set_wakeup_fd``) wakes it for SIGCHLD / SIGTERM,
and timeouts drive the back-off and the stop grace. When the main process exits, the
rest of the leaf is killed too (systemd's KillMode=control-group), so a restart never
runs next to leftovers. SIGTERM stops the shim: SIGTERM to the group and the leaf, wait
``stop_grace_s``, then ``kill_all(leaf)``; it exits 0 once state ``stopped`` is written.

Imports are limited to the stdlib and provisioner.node.{procs,leaf,logs,types,shimspec}
so that start-up stays fast.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import selectors
import signal
import sys
import time

from provisioner.node import leaf as leafops
from provisioner.node.logs import STDERR, STDOUT, LineSplitter, LogWriter
from provisioner.node.procs import is_same_process, kill_pids, proc_start_time, signal_group
from provisioner.node.shimspec import (
    BACKOFF,
    EXITED,
    FAILED,
    RUNNING,
    STARTING,
    STOPPED,
    ShimSpec,
    ShimStatus,
    read_spec,
    write_status,
)

TYPE_CHECKING = False  # spares importing typing (~4 ms) at run time; mypy knows the name
if TYPE_CHECKING:
    from typing import NoReturn

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NSENTER = "/usr/bin/nsenter"
_DRAIN_TIMEOUT_S = 2.0  # after the leaf is empty the pipes must reach EOF; never hang
# Signals whose disposition the shim changes; the child resets them before exec, since
# an *ignored* disposition survives exec (Python ignores SIGPIPE, which would break
# `producer | head` in the command).
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP, signal.SIGINT,
                  signal.SIGTERM, signal.SIGCHLD)


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


def _exec_child(spec: ShimSpec, argv: list[str], env: dict[str, str], uid: int | None,
                gid: int | None, out_w: int, err_w: int, report_w: int) -> NoReturn:
    """Runs in the forked child: set up, exec; on failure report why and _exit(127)."""
    stage = "setsid"
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in _RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        stage = "cgroup"
        leafops.attach(spec.leaf, os.getpid())
        stage = "stdio"
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        if spec.namespace is None:  # with nsenter, it switches user and directory itself
            stage = "user"
            if gid is not None:
                os.setgroups([])
                os.setgid(gid)
            if uid is not None:
                os.setuid(uid)
            stage = "working_dir"
            os.chdir(spec.working_dir)
        stage = "exec"
        os.execve(argv[0], argv, env)
    except BaseException as exc:  # everything must reach the report pipe, then _exit
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        msg = {
            "working_dir": f"working_dir {spec.working_dir!r}: {why}",
            "exec": f"cannot execute {argv[0]}: {why}",
            "user": f"cannot switch to uid {uid} gid {gid}: {why}",
            "cgroup": f"cannot join leaf cgroup: {why}",
        }.get(stage, f"{stage}: {why}")
        with contextlib.suppress(OSError):
            os.write(report_w, msg.encode("utf-8", "replace"))
    os._exit(127)


class Shim:
    def __init__(self, spec: ShimSpec) -> None:
        self.spec = spec
        me = os.getpid()
        self.status = ShimStatus(
            name=spec.name, state=STARTING, shim_pid=me, shim_start_time=proc_start_time(me) or 0,
            leaf=spec.leaf, status_file=spec.status_file, log_dir=spec.log_dir,
            stop_grace_s=spec.stop_grace_s, launch_id=spec.launch_id)
        self._set()
        self.writer = LogWriter(spec.log_dir, spec.log_limits)
        self.uid, self.gid, self.env = _identity(spec)
        self.sel = selectors.DefaultSelector()
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        self.stop_requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)  # only to wake the selector
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.child: int | None = None
        self.pipes: dict[int, tuple[str, LineSplitter]] = {}

    def _on_stop_signal(self, _sig: int, _frame: object) -> None:
        self.stop_requested = True

    def _set(self, **changes: object) -> None:
        """Update the status and write it (every change is written)."""
        self.status = self.status.with_(updated_at_ns=time.time_ns(), **changes)
        write_status(self.status)

    def _argv(self) -> list[str]:
        ns = self.spec.namespace
        if ns is None:
            return ["/bin/sh", "-c", self.spec.command]
        argv = [NSENTER, f"--target={ns.holder_pid}", *(f"--{n}" for n in ns.namespaces),
                f"--wdns={self.spec.working_dir}"]
        if self.gid is not None:
            argv.append(f"--setgid={self.gid}")
        if self.uid is not None:
            argv.append(f"--setuid={self.uid}")
        return [*argv, "--", "/bin/sh", "-c", self.spec.command]

    def _preflight(self) -> str | None:
        ns = self.spec.namespace
        if ns is None:
            return None
        if not is_same_process(ns.holder_pid, ns.holder_start_time):
            return f"namespace holder {ns.holder_pid} is gone"
        # The holder's root shows the cell's mount namespace: check the directory there.
        if not os.path.isdir(f"/proc/{ns.holder_pid}/root{self.spec.working_dir}"):
            return f"working_dir {self.spec.working_dir!r} does not exist in the cell"
        return None

    def _spawn(self) -> str | None:
        """Start one run; returns why it could not start, or None once it has exec'd."""
        error = self._preflight()
        if error:
            return error
        argv = self._argv()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        report_r, report_w = os.pipe()  # close-on-exec: EOF without data means exec worked
        try:
            pid = os.fork()
        except OSError as exc:  # e.g. EAGAIN at a pids limit: a failed start, not a crash
            for fd in (out_r, out_w, err_r, err_w, report_r, report_w):
                os.close(fd)
            return f"cannot fork: {exc.strerror}"
        if pid == 0:
            _exec_child(self.spec, argv, self.env, self.uid, self.gid, out_w, err_w, report_w)
        for fd in (out_w, err_w, report_w):
            os.close(fd)
        report = b""
        while chunk := os.read(report_r, 4096):
            report += chunk
        os.close(report_r)
        if report:
            os.waitpid(pid, 0)
            os.close(out_r)
            os.close(err_r)
            return report.decode("utf-8", "replace")
        self.child = pid
        max_line = self.spec.log_limits.max_line_bytes
        for fd, channel in ((out_r, STDOUT), (err_r, STDERR)):
            os.set_blocking(fd, False)
            self.pipes[fd] = (channel, LineSplitter(max_line))
            self.sel.register(fd, selectors.EVENT_READ, channel)
        self._set(state=RUNNING, child_pid=pid, child_start_time=proc_start_time(pid),
                  started_at_ns=time.time_ns(), exit_code=None, exit_signal=None,
                  exited_at_ns=None, next_start_at_ns=None)
        return None

    def _read_pipe(self, fd: int) -> None:
        channel, splitter = self.pipes[fd]
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        now = time.time_ns()
        if data:
            self.writer.write_lines(channel, splitter.feed(data), now)
            return
        self.writer.write_lines(channel, splitter.flush(), now)
        self.sel.unregister(fd)
        os.close(fd)
        del self.pipes[fd]

    def _wait(self, timeout_s: float | None) -> None:
        """One selector round: pipe data, wake-ups (signals)."""
        for key, _ in self.sel.select(timeout_s):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 512):
                        pass
            else:
                self._read_pipe(int(key.fd))

    def _reap(self) -> int | None:
        """The wait status of the child if it has exited; it is then reaped and forgotten."""
        if self.child is None:
            return None
        pid, wstatus = os.waitpid(self.child, os.WNOHANG)
        if not pid:
            return None
        self.child = None  # its pid may be recycled from now on: never signal it again
        return wstatus

    def _terminate(self) -> None:
        """Polite half of a stop: SIGTERM the child's group and everything in the leaf."""
        if self.child is not None:
            # Safe without a start-time check: our unreaped child keeps its pid (= pgid).
            signal_group(self.child, signal.SIGTERM)
        kill_pids(leafops.pids(self.spec.leaf), signal.SIGTERM)

    def _supervise_run(self) -> int:
        """Wait for the running child to exit (handling a stop); returns its wait status."""
        deadline: float | None = None
        wstatus: int | None = None
        while True:
            if wstatus is None:
                wstatus = self._reap()
            if self.stop_requested and deadline is None:
                deadline = time.monotonic() + self.spec.stop_grace_s
                self._terminate()
            if wstatus is not None and (deadline is None or leafops.is_empty(self.spec.leaf)):
                break
            timeout: float | None = None
            if deadline is not None and time.monotonic() >= deadline:
                leafops.kill_all(self.spec.leaf)
                if self.child is not None:  # a root child can move itself out of its leaf
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.child, signal.SIGKILL)
                timeout = 0.02
            elif deadline is not None:
                # Poll the leaf while stopping: its other processes send us no SIGCHLD.
                timeout = 0.02 if wstatus is not None else deadline - time.monotonic()
            self._wait(max(0.0, timeout) if timeout is not None else None)
        # The main process is gone: nothing else of this run may outlive it.
        leafops.kill_all(self.spec.leaf)
        end = time.monotonic() + _DRAIN_TIMEOUT_S
        while self.pipes and time.monotonic() < end:
            self._wait(max(0.0, end - time.monotonic()))
        for fd in list(self.pipes):  # a writer outside the leaf kept it open: give up on it
            channel, splitter = self.pipes.pop(fd)
            self.writer.write_lines(channel, splitter.flush())
            self.sel.unregister(fd)
            os.close(fd)
        return wstatus

    def run(self) -> int:
        """Supervise until the policy says done or a stop is requested; the exit code."""
        spec = self.spec
        step = 0  # consecutive short runs, for the exponential back-off
        next_start = time.monotonic()
        first = True
        while True:
            while not self.stop_requested and time.monotonic() < next_start:
                self._wait(max(0.0, next_start - time.monotonic()))
            if self.stop_requested:
                leafops.kill_all(spec.leaf)
                self._set(state=STOPPED, next_start_at_ns=None)
                return 0
            started = time.monotonic()
            if not first:
                self._set(restart_count=self.status.restart_count + 1)
            error = self._spawn()
            code: int | None
            sig: int | None
            if error is not None and first:
                self._set(state=FAILED, last_error=error)
                return 1
            if error is not None:  # a later start failing counts as a failed run
                code, sig = 127, None
                self._set(last_error=error, exit_code=code, exit_signal=None,
                          exited_at_ns=time.time_ns())
            else:
                wstatus = self._supervise_run()
                code = os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else None
                sig = os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else None
                self._set(exit_code=code, exit_signal=sig, exited_at_ns=time.time_ns())
            first = False
            if self.stop_requested:
                self._set(state=STOPPED)
                return 0
            failed = sig is not None or code != 0
            policy = str(spec.restart_policy)
            if policy == "never" or (policy == "on-failure" and not failed):
                self._set(state=EXITED)
                return 0
            if time.monotonic() - started >= spec.backoff_reset_s:
                step = 0
            delay = min(spec.backoff_cap_s, spec.backoff_base_s * (2 ** step))
            step += 1
            next_start = time.monotonic() + delay
            self._set(state=BACKOFF, next_start_at_ns=time.time_ns() + int(delay * 1e9))

    def crash(self, exc: BaseException) -> None:
        """Last resort on an unexpected error: leave nothing unsupervised behind."""
        with contextlib.suppress(Exception):
            leafops.kill_all(self.spec.leaf)
        with contextlib.suppress(Exception):
            self._set(state=FAILED, last_error=f"shim crashed: {exc!r}")


def main(argv: list[str]) -> int:
    """``shim [--detach] SPEC_FILE``; --detach forks once more so init adopts the shim."""
    detach = "--detach" in argv
    args = [a for a in argv if a != "--detach"]
    if len(args) != 1:
        print("usage: python -m provisioner.node.shim [--detach] SPEC_FILE", file=sys.stderr)
        return 64
    spec = read_spec(args[0])
    if detach and os.fork() > 0:
        os._exit(0)  # the launcher reaps this parent at once; the shim lives on
    shim = Shim(spec)
    try:
        return shim.run()
    except BaseException as exc:
        shim.crash(exc)
        import traceback  # only on this path: it is slow to import

        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
