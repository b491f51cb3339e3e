"""The detached supervisor of ONE executable.

A shim is usually a spare shim handed its spec by the zygote (see
:mod:`provisioner.node.spare`), else a fork of the zygote, else (``launch`` without a
zygote) ``python -S -m provisioner.node.shim --detach --ready-fd FD SPEC_FILE``; in all
cases :func:`serve` runs it and :func:`exit_with` ends the process.

Per run it starts a child (:mod:`provisioner.node.child`; the first one usually forked
ahead as a stand-by) that, before exec, becomes its own session / process group, joins
the leaf cgroup(s) (so everything it ever starts is inside), drops to uid/gid, changes
directory and builds a clean environment, then execs ``/bin/sh -c COMMAND`` (or
``nsenter --target HOLDER ... -- /bin/sh -c COMMAND`` for an isolated cell). Setup
failures travel back through a close-on-exec pipe, so "working_dir missing" is reported
as such instead of as an anonymous exit 127. Once the first start has succeeded or
failed - and the status file says so - the shim closes the launcher's readiness pipe.

One single-threaded selector loop reads stdout and stderr (never blocking on one while
the other fills), a self-pipe (``signal.set_wakeup_fd``) wakes it for SIGCHLD / SIGTERM,
and timeouts drive the back-off and the stop grace. When the main process exits, the
rest of the leaf is killed too (systemd's KillMode=control-group), so a restart never
runs next to leftovers. SIGTERM stops the shim: SIGTERM to the group and the leaf, wait
``stop_grace_s``, then ``kill_all(leaf)``; it exits 0 once state ``stopped`` is written.

Imports are limited to the stdlib and provisioner.node.{child,procs,leaf,logs,types,
shimspec}: this is the code the zygote holds, and its memory is what every fork copies.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import sys
import time

from provisioner.node import child
from provisioner.node import leaf as leafops
from provisioner.node.child import DEFAULT_PATH, NSENTER
from provisioner.node.logs import STDERR, STDOUT, LineSplitter, LogWriter
from provisioner.node.procs import (
    is_same_process,
    kill_pids,
    proc_start_time,
    set_comm,
    signal_group,
)
from provisioner.node.shimspec import (
    BACKOFF,
    EXITED,
    FAILED,
    RUNNING,
    STARTING,
    STOPPED,
    TERMINAL_STATES,
    ShimSpec,
    ShimStatus,
    StatusWriter,
    parse_spec,
)

TYPE_CHECKING = False  # spares importing typing (~4 ms) at run time; mypy knows the name
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["DEFAULT_PATH", "NSENTER", "Shim", "exit_with", "main", "serve"]

_DRAIN_TIMEOUT_S = 2.0  # after the leaf is empty the pipes must reach EOF; never hang
_LEAF_POLL_MIN_S, _LEAF_POLL_MAX_S = 0.0005, 0.02  # polling a leaf while stopping


class Shim:
    def __init__(self, spec: ShimSpec, ready_fd: int | None = None,
                 standby: child.Standby | None = None,
                 status_tmp: tuple[int, str] | None = None) -> None:
        self.spec = spec
        self.ready_fd = ready_fd  # closed once the first start has succeeded or failed
        self.standby = standby  # a child forked ahead of time, for the first run
        self.status_out = StatusWriter(spec.status_file, status_tmp)
        me = os.getpid()
        self.status = ShimStatus(
            name=spec.name, state=STARTING, shim_pid=me, shim_start_time=proc_start_time(me) or 0,
            leaf=spec.leaf, status_file=spec.status_file, log_dir=spec.log_dir,
            stop_grace_s=spec.stop_grace_s, launch_id=spec.launch_id)
        # Not written yet: the first write says how the first start went (running or
        # failed). One file creation less per start, and the launcher does not look
        # before the readiness pipe closes anyway.
        self.writer = LogWriter(spec.log_dir, spec.log_limits)
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
        self.status_out.write(self.status)
        if self.ready_fd is None and self.status.state not in TERMINAL_STATES:
            self.status_out.prepare()  # the next write's file, made while we wait

    def ready(self) -> None:
        """Tell the launcher the status file now says how the first start went: close
        the readiness pipe (EOF; a launcher that has gone meanwhile does not matter)."""
        if self.ready_fd is not None:
            os.close(self.ready_fd)
            self.ready_fd = None
            if self.status.state not in TERMINAL_STATES:
                self.status_out.prepare()
                set_comm(f"shim:{self.spec.name}")

    def close(self) -> None:
        """Release what a shim that is done (or never started) still holds."""
        if self.standby is not None:
            self.standby.discard()
            self.standby = None
        self.status_out.discard()

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
        how = child.plan(self.spec)
        standby, self.standby = self.standby, None
        if standby is not None and standby.go(how):  # forked ahead of time: no fork now
            pid, out_r, err_r, report_r = (standby.pid, standby.out_r, standby.err_r,
                                           standby.report_r)
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            report_r, report_w = os.pipe()  # close-on-exec: EOF without data = exec'd
            try:
                pid = os.fork()
            except OSError as exc:  # e.g. EAGAIN at a pids limit: a failed start
                for fd in (out_r, out_w, err_r, err_w, report_r, report_w):
                    os.close(fd)
                return f"cannot fork: {exc.strerror}"
            if pid == 0:
                child.run(how, out_w, err_w, report_w)
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
        poll_s = _LEAF_POLL_MIN_S
        while True:
            if wstatus is None:
                wstatus = self._reap()
            if self.stop_requested and deadline is None:
                deadline = time.monotonic() + self.spec.stop_grace_s
                self._terminate()
            if wstatus is not None and deadline is None:
                # The main process ended by itself: nothing else of this run may outlive
                # it (a no-op without a freeze when the leaf is already empty).
                leafops.kill_all(self.spec.leaf)
                break
            if wstatus is not None and leafops.is_empty(self.spec.leaf):
                break  # stopping, and everything in the leaf has gone
            timeout: float | None = None
            if deadline is not None and time.monotonic() >= deadline:
                leafops.kill_all(self.spec.leaf)
                if self.child is not None:  # a root child can move itself out of its leaf
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.child, signal.SIGKILL)
                timeout = _LEAF_POLL_MAX_S
            elif deadline is not None and wstatus is not None:
                # Poll the leaf while stopping: its other processes send us no SIGCHLD.
                # Those killed with the main one are usually gone within a millisecond
                # (sh's own child, say), so start short and back off.
                timeout = min(poll_s, max(0.0, deadline - time.monotonic()))
                poll_s = min(poll_s * 2, _LEAF_POLL_MAX_S)
            elif deadline is not None:
                timeout = deadline - time.monotonic()
            self._wait(max(0.0, timeout) if timeout is not None else None)
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
            if error is not None and first:
                self._set(state=FAILED, last_error=error)
                return 1
            if first:
                self.ready()
            # How the run ended; written together with the state that follows (one write).
            ended: dict[str, object]
            code: int | None
            sig: int | None
            if error is not None:  # a later start failing counts as a failed run
                code, sig = 127, None
                ended = {"last_error": error}
            else:
                wstatus = self._supervise_run()
                code = os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else None
                sig = os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else None
                ended = {}
            ended.update(exit_code=code, exit_signal=sig, exited_at_ns=time.time_ns())
            first = False
            if self.stop_requested:
                self._set(state=STOPPED, **ended)
                return 0
            failed = sig is not None or code != 0
            policy = str(spec.restart_policy)
            if policy == "never" or (policy == "on-failure" and not failed):
                self._set(state=EXITED, **ended)
                return 0
            if time.monotonic() - started >= spec.backoff_reset_s:
                step = 0
            delay = min(spec.backoff_cap_s, spec.backoff_base_s * (2 ** step))
            step += 1
            next_start = time.monotonic() + delay
            self._set(state=BACKOFF, next_start_at_ns=time.time_ns() + int(delay * 1e9),
                      **ended)

    def crash(self, exc: BaseException) -> None:
        """Last resort on an unexpected error: leave nothing unsupervised behind."""
        with contextlib.suppress(Exception):
            leafops.kill_all(self.spec.leaf)
        with contextlib.suppress(Exception):
            self._set(state=FAILED, last_error=f"shim crashed: {exc!r}")


def serve(spec: ShimSpec | bytes, ready_fd: int | None = None, crash_log: str | None = None,
          standby: child.Standby | None = None,
          status_tmp: tuple[int, str] | None = None) -> int:
    """Be the shim of SPEC (or its JSON) in this (already detached) process; the exit code.

    ``ready_fd`` is the launcher's readiness pipe: closed once the status file tells
    how the first start went (also when the shim dies, by the kernel). A crash's
    traceback goes to ``crash_log`` (made only then), else to stderr. ``standby`` and
    ``status_tmp`` are what a spare shim prepared ahead (see provisioner.node.spare).
    """
    if ready_fd is not None:
        os.set_inheritable(ready_fd, False)  # our child must not hold it past its exec
    shim: Shim | None = None
    try:
        shim = Shim(spec if isinstance(spec, ShimSpec) else parse_spec(spec), ready_fd,
                    standby, status_tmp)
        return shim.run()
    except BaseException as exc:
        if shim is not None:
            shim.crash(exc)
        else:
            if standby is not None:
                standby.discard()
            if status_tmp is not None:
                StatusWriter("", status_tmp).discard()
        _report_crash(crash_log)
        return 1
    finally:
        if shim is not None:
            shim.ready()
            shim.close()


def _report_crash(crash_log: str | None) -> None:
    import traceback  # only on this path: it is slow to import

    text = traceback.format_exc()
    if crash_log is not None:
        with contextlib.suppress(OSError), open(crash_log, "w") as f:
            f.write(text)
            return
    sys.stderr.write(text)


def exit_with(code: int) -> NoReturn:
    """Exit at once: nothing is buffered (logs and status use plain os.write), and
    interpreter teardown would only cost time - or, in a process forked from the
    zygote, run the zygote's clean-up."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def main(argv: list[str]) -> int:
    """``shim [--detach] [--ready-fd FD] SPEC_FILE``; --detach forks once more so that
    init adopts the shim (the zygote does the same for shims it starts)."""
    detach = "--detach" in argv
    args = [a for a in argv if a != "--detach"]
    ready_fd: int | None = None
    if len(args) == 3 and args[0] == "--ready-fd" and args[1].isdigit():
        ready_fd = int(args[1])
        args = args[2:]
    if len(args) != 1:
        print("usage: python -m provisioner.node.shim [--detach] [--ready-fd FD] SPEC_FILE",
              file=sys.stderr)
        return 64
    with open(args[0], "rb") as f:
        spec_json = f.read()
    if detach and os.fork() > 0:
        os._exit(0)  # the launcher reaps this parent at once; the shim lives on
    return serve(spec_json, ready_fd)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))
