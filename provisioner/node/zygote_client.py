"""Launcher side of the fork server (see :mod:`provisioner.node.zygote` for the protocol).

One :class:`ZygoteClient` per :class:`~provisioner.node.layer.NodeLayer`. The zygote
process is started on the first launch (``python -S -m provisioner.node.zygote FD``, in
a session of its own so that a terminal's Ctrl-C aimed at the caller does not reach
it), and started again transparently if it has died. Requests from several threads
are serialized by a lock held only for one ``sendmsg``; each launcher then waits on
its own readiness pipe, so launches overlap everywhere except in the zygote's fork.

The caller's process is never forked (it may be multi-threaded): the zygote is started
with ``subprocess`` (a vfork + exec), and all forking happens in the zygote.

:meth:`ZygoteClient.close` closes the socket; the zygote sees EOF and exits, and so it
does when the caller dies without closing. Shims already started keep running.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading

import provisioner
from provisioner.errors import NodeError
from provisioner.node.shimspec import encode_request

#: Where the ``provisioner`` package lives: shims and the zygote run with ``python -S``
#: (no site-packages: faster start, smaller memory), so they find it via PYTHONPATH.
SRC_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(provisioner.__file__)))
_STOP_TIMEOUT_S = 5.0


def helper_env() -> dict[str, str]:
    """The environment of the zygote and of directly started shims: minimal on purpose
    (the executable's environment is built from its spec, never inherited)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": SRC_ROOT}


def log_tail(path: str | None, limit: int = 2000) -> str:
    """``"; <file name>: <last bytes>"`` of a helper's stderr log, or "" if empty."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            text = f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f"; {os.path.basename(path)}: {text}" if text else ""


class ZygoteClient:
    """Starts shims through one lazily started zygote process. Thread-safe."""

    def __init__(self, log_file: str | None = None, state_dir: str | None = None) -> None:
        """``log_file`` receives the zygote's stderr (appended; None discards it);
        ``state_dir`` is where its spare shims make run and log directories ahead of
        time (see provisioner.node.spare; None: they make none)."""
        self.log_file = log_file
        self.state_dir = state_dir
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The zygote's pid, if one has been started and not closed."""
        proc = self._proc
        return proc.pid if proc is not None else None

    def alive(self) -> bool:
        """True if the zygote process is running (it is our child: poll reaps it)."""
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    def spawn(self, spec_json: bytes, crash_log: str, ready_w: int, spill_file: str) -> None:
        """Ask the zygote to start a shim for SPEC_JSON; READY_W goes to the shim.

        Returns once the request is queued; the caller keeps READY_W's twin and learns
        the outcome there. A spec too large for one message is written to SPILL_FILE
        and passed by name. A dead zygote is replaced and the request sent again (a
        request that never got in cannot have started anything). NodeError if a fresh
        zygote does not take it either.
        """
        payload = encode_request(spec_json, crash_log, spill_file)
        last: OSError | None = None
        with self._lock:
            for _ in range(2):
                if self._proc is None or self._proc.poll() is not None:
                    self._restart()
                assert self._sock is not None
                try:
                    # MSG_NOSIGNAL: a dead zygote is EPIPE here, never SIGPIPE for the caller.
                    socket.send_fds(self._sock, [payload], [ready_w], socket.MSG_NOSIGNAL)
                    return
                except OSError as exc:
                    last = exc
                    self._discard()
        raise NodeError(f"the shim launcher (zygote) does not take requests: {last}"
                        f"{log_tail(self.log_file)}")

    def close(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """Stop the zygote (EOF on its socket) and reap it. Shims are not affected.
        A later :meth:`spawn` starts a new zygote."""
        with self._lock:
            sock, proc = self._sock, self._proc
            self._sock = self._proc = None
        _stop(sock, proc, timeout_s)

    # -- internals (called with the lock held) --------------------------------------------
    def _restart(self) -> None:
        self._discard()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            for directory in (self.state_dir and os.path.join(self.state_dir, "run"),
                              self.state_dir and os.path.join(self.state_dir, "logs"),
                              self.log_file and os.path.dirname(self.log_file)):
                if directory:
                    os.makedirs(directory, exist_ok=True)
            log = (open(self.log_file, "ab") if self.log_file is not None  # noqa: SIM115
                   else subprocess.DEVNULL)
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-S", "-m", "provisioner.node.zygote",
                     str(child.fileno()), *([self.state_dir] if self.state_dir else [])],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                    pass_fds=(child.fileno(),), close_fds=True, start_new_session=True,
                    cwd="/", env=helper_env())
            finally:
                if not isinstance(log, int):
                    log.close()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self._sock = parent

    def _discard(self) -> None:
        """Forget a zygote that died (or will not answer): close its socket, reap it."""
        sock, proc = self._sock, self._proc
        self._sock = self._proc = None
        _stop(sock, proc, 1.0)


def _stop(sock: socket.socket | None, proc: subprocess.Popen[bytes] | None,
          timeout_s: float) -> None:
    if sock is not None:
        sock.close()  # the zygote reads EOF and exits
    if proc is None:
        return
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
