"""The fork server ("zygote"): ``python -S -m provisioner.node.zygote FD [STATE_DIR]``.

Starting a shim used to mean starting a Python interpreter (~55 ms). The zygote is one
small, single-threaded process per :class:`~provisioner.node.layer.NodeLayer` that has
already imported the shim's code; a launch then costs a fork at most. The launcher
side is :mod:`provisioner.node.zygote_client`.

Protocol, on the ``AF_UNIX``/``SOCK_SEQPACKET`` socket inherited as fd ``FD``: one
message per launch (the spec travels inline, see ``shimspec.encode_request``), carrying
one file descriptor - the write end of the launcher's *readiness pipe* - as
``SCM_RIGHTS``. There is no reply:

* the zygote hands the request on to its *spare shim* (:mod:`provisioner.node.spare`),
  a process forked ahead and detached exactly like a shim, which becomes the shim;
  then it forks the next spare. Without a spare (one that died, a failed fork) it
  forks the shim itself the same way: the child calls ``setsid()`` and forks again
  and exits at once, so the grandchild - the shim - is reparented away from both the
  zygote and the launcher (to init or the nearest subreaper), leads no session (it
  can never acquire a controlling terminal) and depends on neither;
* the shim inherits the zygote's stdio (stdin/stdout on ``/dev/null``, stderr on
  ``run/zygote.log``), writes its status file, and closes the readiness pipe once its
  child has exec'd (or failed); a crash's traceback goes to ``run/<name>/shim.log``;
* whoever fails on the way (the zygote's fork, the child's setsid or fork, a bad
  request) writes ``E<message>`` to the readiness pipe before closing it.

So the launcher learns everything from its own pipe: EOF means "read the status file",
and the pipe cannot stay open once nobody works on the launch (the kernel closes it with
the last process holding it). Concurrent launchers need no reply matching.

The zygote exits when its socket reaches EOF - the launcher closed it
(``ZygoteClient.close``) or died - and shims it started keep running. It never runs
the shim's code itself and never has threads, so forking it is always safe. Its
children (the short-lived middle processes) are reaped as they exit (SIGCHLD).

Only the stdlib and the shim's own modules are imported: the zygote's memory is copied
(page tables) at every fork, and the shim forks again for its child, so every module
kept out of here makes each launch faster.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys

from provisioner.node import shim, spare
from provisioner.node.procs import set_comm
from provisioner.node.shimspec import MAX_REQUEST_BYTES, decode_request

TYPE_CHECKING = False  # spares importing typing at run time; mypy knows the name
if TYPE_CHECKING:
    from collections.abc import Callable


_PICKUP_WAIT_MS = 10


def _fail(ready_w: int, message: str) -> None:
    """Tell the launcher why this launch failed (best effort: it may have gone)."""
    with contextlib.suppress(OSError):
        os.write(ready_w, b"E" + message.encode("utf-8", "replace"))


def _reap() -> None:
    """Collect exited middle processes (they exit right after their fork)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _detached(server: socket.socket, body: Callable[[], int]) -> int:
    """Fork a process detached like a shim (new session, forked again, so init adopts
    it) that runs BODY and exits; the pid of the middle process (-1 if fork failed).

    The new process closes the zygote's socket to the launcher: only the zygote may
    hold it, or the zygote would not see EOF when the launcher goes away.
    """
    try:
        pid = os.fork()
    except OSError:
        return -1
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the zygote's reaper is not ours
        server.close()
        os.setsid()
        if os.fork() > 0:
            os._exit(0)  # the zygote reaps us; the grandchild is adopted by init
        code = body()
    except BaseException as exc:  # never return into the zygote's loop
        with contextlib.suppress(Exception):
            sys.stderr.write(f"zygote child {os.getpid()}: {exc!r}\n")
    shim.exit_with(code)


class _Spare:
    """The zygote's handle on its spare: the socket to hand it a request, and the read
    end of a pipe it closes once prepared."""

    def __init__(self, sock: socket.socket, prepared_r: int) -> None:
        self.sock, self.prepared_r = sock, prepared_r

    def is_prepared(self) -> bool:
        poller = select.poll()
        poller.register(self.prepared_r, select.POLLIN)
        return bool(poller.poll(0))  # EOF (POLLHUP): closed by the spare

    def close(self) -> None:
        self.sock.close()  # an unused spare sees EOF and exits
        os.close(self.prepared_r)


class Zygote:
    """The request loop, with one spare shim kept ready."""

    def __init__(self, server: socket.socket, state_dir: str | None) -> None:
        self.server = server
        self.state_dir = state_dir
        self.spare: _Spare | None = None

    def serve(self) -> int:
        """Answer launch requests until the socket reaches EOF; the exit code."""
        if self.state_dir is not None:
            spare.sweep(self.state_dir)
        self._new_spare()
        try:
            while self._one():
                pass
        finally:
            if self.spare is not None:
                self.spare.close()
        return 0

    def _one(self) -> bool:
        try:
            data, fds, flags, _addr = socket.recv_fds(self.server, MAX_REQUEST_BYTES, 1,
                                                       socket.MSG_CMSG_CLOEXEC)
        except ConnectionResetError:
            return False
        _reap()
        if not data:
            for fd in fds:
                os.close(fd)
            return False  # the launcher closed the socket, or died
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            print(f"zygote: request without a readiness pipe: {data[:200]!r}",
                  file=sys.stderr, flush=True)
            return True
        ready_w = fds[0]
        try:
            if flags & socket.MSG_TRUNC:
                _fail(ready_w, f"launch request longer than {MAX_REQUEST_BYTES} bytes")
            elif not self._hand_to_spare(data, ready_w):
                self._fork_shim(data, ready_w)
        finally:
            os.close(ready_w)  # from now on only the shim (or a process on its way) has it
        self._new_spare()  # for the next request, prepared while this one runs
        return True

    def _hand_to_spare(self, data: bytes, ready_w: int) -> bool:
        handle, self.spare = self.spare, None
        if handle is None:
            return False
        try:
            prepared = handle.is_prepared()
            socket.send_fds(handle.sock, [data], [ready_w], socket.MSG_NOSIGNAL)
            if prepared:
                # Let it pick the request up (it then closes its end) before forking the
                # next spare: a fork now would hold up its wake-up by ~0.5 ms. One still
                # preparing is not waited for: that would stall concurrent launches.
                poller = select.poll()
                poller.register(handle.sock, select.POLLIN)
                poller.poll(_PICKUP_WAIT_MS)
            return True
        except OSError:  # the spare died (killed?): start this shim the direct way
            return False
        finally:
            handle.close()  # a spare takes one request only

    def _fork_shim(self, data: bytes, ready_w: int) -> None:
        def body() -> int:
            crash_log, spec_json = decode_request(data)
            return shim.serve(spec_json, ready_w, crash_log)

        if _detached(self.server, body) < 0:
            _fail(ready_w, "cannot fork the shim")

    def _new_spare(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        prepared_r, prepared_w = os.pipe()
        state_dir = self.state_dir

        def body() -> int:
            ours.close()
            os.close(prepared_r)
            return spare.run(theirs, state_dir, prepared_w)

        pid = _detached(self.server, body)
        theirs.close()
        os.close(prepared_w)
        if pid < 0:  # no spare: the next launch forks its shim directly
            ours.close()
            os.close(prepared_r)
        else:
            self.spare = _Spare(ours, prepared_r)


def main(argv: list[str]) -> int:
    """``zygote SOCKET_FD [STATE_DIR]``: spares make directories and files ahead in
    STATE_DIR's ``run/`` and ``logs/`` (without it they make none ahead)."""
    if len(argv) not in (1, 2) or not argv[0].isdigit():
        print("usage: python -S -m provisioner.node.zygote SOCKET_FD [STATE_DIR]",
              file=sys.stderr)
        return 64
    server = socket.socket(fileno=int(argv[0]))
    server.set_inheritable(False)
    try:
        set_comm("prov-zygote")
        # Middle processes exit right after their fork: reap them as they do, so that
        # an idle zygote (a daemon's) keeps no zombie around.
        signal.signal(signal.SIGCHLD, lambda _sig, _frame: _reap())
        return Zygote(server, argv[1] if len(argv) == 2 else None).serve()
    finally:
        server.close()


if __name__ == "__main__":
    shim.exit_with(main(sys.argv[1:]))
