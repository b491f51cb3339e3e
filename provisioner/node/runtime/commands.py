"""One-off commands: ``/bin/sh -c COMMAND`` run to completion in a leaf cgroup of its own
under the node's root cell (the daemon's first-generation ``runtime.Runtime.Exec``).

The shell waits on a pipe until it has been moved into its leaf (``_x.exec_<random>``),
so nothing it starts can escape; when it ends (or the deadline passes, or the caller
goes away) everything left in the leaf is killed and the leaf removed. Nothing is
recorded in the store, so a command does not change the node's generation. Output is
captured up to :data:`MAX_OUTPUT_BYTES` per stream (the rest is read and counted, then
said to be dropped). The environment is ``PATH`` (the supervisor's default) and
``HOME=/``; the working directory is ``/``.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import time
from collections.abc import Callable

from provisioner.errors import InvalidArgument
from provisioner.node.process import leaf as leafops
from provisioner.node.process.exec_limits import check_exec_size
from provisioner.node.process.shimspec import DEFAULT_PATH
from provisioner.node.runtime.layer import NodeLayer
from provisioner.records import field, record

__all__ = ["EXEC_LEAF_PREFIX", "MAX_OUTPUT_BYTES", "ExecResult", "cleanup_exec_leaves",
           "run_command"]

#: How much of each stream (stdout, stderr) a command's result keeps.
MAX_OUTPUT_BYTES = 2 * 1024 * 1024
#: A leaf name no executable can have ('_' is not allowed in a DNS label).
EXEC_LEAF_PREFIX = "_x.exec_"
_AFTER_EXIT_S = 0.2  # how long output may still arrive after the command ended
# Waits for the parent's go (a newline on stdin, sent once the shell is in its leaf),
# then runs the command; EOF without the go means "do not run".
_GATE = 'IFS= read -r _ || exit 125; exec /bin/sh -c "$1"'


@record(frozen=False)
class _Capture:
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def add(self, chunk: bytes) -> None:
        room = MAX_OUTPUT_BYTES - len(self.data)
        self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - room)

    def text(self) -> str:
        text = self.data.decode("utf-8", "replace")
        if self.dropped:
            text += f"\n[provisioner] output truncated: {self.dropped} more bytes were dropped"
        return text


@record(frozen=False)
class ExecResult:
    """How a command ended: its shell's pid, its exit status as Python's ``returncode``
    has it (minus the signal number when killed by one; None when it was killed because
    the deadline passed or the caller went away), and its captured output."""

    pid: int
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False

    def describe(self) -> str:
        """One line saying how the command ended ("exited with 0", "killed by signal 9",
        "killed: the call's deadline passed", "killed: the call was cancelled")."""
        if self.timed_out:
            return "killed: the call's deadline passed"
        if self.returncode is None:
            return "killed: the call was cancelled"
        if self.returncode < 0:
            return f"killed by signal {-self.returncode}"
        return f"exited with {self.returncode}"


def run_command(layer: NodeLayer, command: str, deadline: float | None,
                active: Callable[[], bool], *, what: str = "command") -> ExecResult:
    """Run ``sh -c command`` in a fresh leaf of the root cell until it ends, ``deadline``
    (``time.monotonic()``) passes, or ``active()`` turns False; the leaf ends empty and
    gone. InvalidArgument (``what`` names the command in it), before anything is made,
    for an empty command, one with a NUL byte, or one the kernel cannot exec."""
    if not command.strip() or "\0" in command:
        raise InvalidArgument("command is empty or contains a NUL byte")
    check_exec_size(what, command)
    leaf_name = f"{EXEC_LEAF_PREFIX}{os.urandom(8).hex()}"
    leaf = layer.cgroups.create_leaf("", leaf_name)
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", _GATE, "sh", command], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/", start_new_session=True,
            env={"PATH": DEFAULT_PATH, "HOME": "/"}, close_fds=True)
        try:
            assert proc.stdin is not None
            leafops.attach(leaf, proc.pid)  # on failure it is killed below, still gated
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(b"\n")  # only the gate reads it; then stdin is at EOF
                proc.stdin.close()
            return _collect(proc, deadline, active)
        finally:
            try:
                leafops.kill_all(leaf)  # the command and whatever it left behind
            finally:
                if proc.poll() is None:  # not in the leaf (attach failed): still gated
                    proc.kill()
                proc.wait()
                for pipe in (proc.stdin, proc.stdout, proc.stderr):
                    if pipe is not None:
                        with contextlib.suppress(OSError):
                            pipe.close()
    finally:
        with contextlib.suppress(Exception):
            layer.cgroups.remove_leaf("", leaf_name)


def _collect(proc: subprocess.Popen[bytes], deadline: float | None,
             active: Callable[[], bool]) -> ExecResult:
    """Read both pipes until the command has ended and its output is complete (or for
    ``_AFTER_EXIT_S`` more, should a background child keep the pipes open)."""
    out, err = _Capture(), _Capture()
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    for pipe, capture in ((proc.stdout, out), (proc.stderr, err)):
        os.set_blocking(pipe.fileno(), False)
        sel.register(pipe, selectors.EVENT_READ, capture)
    exited_at: float | None = None
    timed_out = False
    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                timed_out = True
                break
            if not active():
                break
            if proc.poll() is not None:
                exited_at = now if exited_at is None else exited_at
                if not sel.get_map() or now - exited_at > _AFTER_EXIT_S:
                    break
            wait = 0.05 if deadline is None else min(0.05, max(0.0, deadline - now))
            if not sel.get_map():  # both pipes closed, the process still runs
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait)
                continue
            for key, _ in sel.select(wait):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    key.data.add(chunk)
                else:
                    sel.unregister(key.fileobj)
    finally:
        sel.close()
    code = None if timed_out else proc.poll()
    return ExecResult(proc.pid, code, out.text(), err.text(), timed_out)


def cleanup_exec_leaves(layer: NodeLayer) -> list[str]:
    """Kill and remove the command leaves a crashed process left behind (the daemon calls
    it at start); the names of the leaves removed."""
    removed: list[str] = []
    for root in layer.cgroups.cell_dirs(""):
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(root):
                if name.startswith(EXEC_LEAF_PREFIX) and name not in removed:
                    with contextlib.suppress(Exception):
                        leafops.kill_all(layer.cgroups.leaf("", name))
                        layer.cgroups.remove_leaf("", name)
                        removed.append(name)
    return removed
