"""First-generation Aurae: ``runtime.Runtime.Exec`` and ``schedule.Schedule`` /
``schedule.ScheduleExecutable`` (persistent executables). ``observe.Observe`` is in
``observe.py``. Decisions are written down in ``docs/apis.md``.

Exec runs ``/bin/sh -c COMMAND`` (a shell, not upstream's split on spaces) synchronously
in a leaf cgroup of its own under the daemon's root cell (``_x.exec_<random>``): the
child waits on a pipe until it has been moved into the leaf, so nothing it starts can
escape, and when it ends (or the deadline passes, or the client goes away) everything
left in the leaf is killed and the leaf removed. Exec records nothing in the store, so
it does not change the node's generation. Output is captured up to
``MAX_OUTPUT_BYTES`` per stream (the rest is read and counted, then said to be dropped).
``exit_code`` is the decimal exit status (``"0"``), or minus the signal number for a
process killed by a signal (``"-9"``), as Python's ``returncode`` has it. Status is
COMPLETE for exit 0, ERROR otherwise.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from provisioner._proto.meta import meta_pb2
from provisioner._proto.runtime import runtime_pb2 as rpb
from provisioner._proto.runtime import runtime_pb2_grpc as rpb_grpc
from provisioner._proto.schedule import schedule_pb2 as spb
from provisioner._proto.schedule import schedule_pb2_grpc as spb_grpc
from provisioner.daemon.context import DaemonContext
from provisioner.daemon.status import handles_errors
from provisioner.errors import InvalidArgument
from provisioner.model import PersistentExecutableSpec
from provisioner.names import check_dns_label
from provisioner.node import DEFAULT_PATH, NodeLayer, check_exec_size, persistent
from provisioner.node import leaf as leafops

__all__ = ["EXEC_LEAF_PREFIX", "MAX_OUTPUT_BYTES", "ExecResult", "RuntimeService",
           "ScheduleExecutableService", "ScheduleService", "cleanup_exec_leaves",
           "exec_command"]

MAX_OUTPUT_BYTES = 2 * 1024 * 1024
#: A leaf name no executable can have ('_' is not allowed in a DNS label).
EXEC_LEAF_PREFIX = "_x.exec_"
_AFTER_EXIT_S = 0.2  # how long output may still arrive after the command ended
# Waits for the parent's go (a newline on stdin, sent once the shell is in its leaf),
# then runs the command; EOF without the go means "do not run".
_GATE = 'IFS= read -r _ || exit 125; exec /bin/sh -c "$1"'


@dataclass
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


@dataclass
class ExecResult:
    pid: int
    returncode: int | None  # None: killed because of the deadline or a cancelled call
    stdout: str
    stderr: str
    timed_out: bool = False


def exec_command(layer: NodeLayer, command: str, deadline: float | None,
                 active: Callable[[], bool]) -> ExecResult:
    """Run ``sh -c command`` in a fresh leaf of the root cell until it ends, ``deadline``
    (time.monotonic) passes, or ``active()`` turns False; the leaf ends empty and gone."""
    leaf_name = f"{EXEC_LEAF_PREFIX}{uuid.uuid4().hex[:16]}"
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
    """Kill and remove Exec leaves a crashed daemon left behind (at daemon start)."""
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


def _describe(result: ExecResult) -> str:
    if result.timed_out:
        return "killed: the call's deadline passed"
    if result.returncode is None:
        return "killed: the call was cancelled"
    if result.returncode < 0:
        return f"killed by signal {-result.returncode}"
    return f"exited with {result.returncode}"


class RuntimeService(rpb_grpc.RuntimeServicer):
    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx

    @handles_errors
    def Exec(self, request: rpb.Executable,
             context: grpc.ServicerContext) -> rpb.ExecutableStatus:
        if not request.command.strip() or "\0" in request.command:
            raise InvalidArgument("command is empty or contains a NUL byte")
        check_exec_size("Exec", request.command)
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        result = exec_command(self.ctx.layer, request.command, deadline, context.is_active)
        status = meta_pb2.STATUS_COMPLETE if result.returncode == 0 else meta_pb2.STATUS_ERROR
        if result.timed_out:
            context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
            context.set_details(f"command did not finish before the deadline; its process "
                                f"tree (pid {result.pid}) was killed")
        return rpb.ExecutableStatus(
            meta=meta_pb2.AuraeMeta(name=request.meta.name, message=_describe(result)),
            proc=meta_pb2.ProcessMeta(pid=result.pid), status=status,
            stdout=result.stdout, stderr=result.stderr,
            exit_code="" if result.returncode is None else str(result.returncode))


# -- schedule --------------------------------------------------------------------------

def _executable(spec: PersistentExecutableSpec, running: bool) -> rpb.Executable:
    state = "disabled" if not spec.enabled else "running" if running else "not running"
    return rpb.Executable(meta=meta_pb2.AuraeMeta(name=spec.name, message=state),
                          command=spec.command, comment=spec.comment)


class ScheduleService(spb_grpc.ScheduleServicer):
    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx

    def _show(self, enabled: bool) -> tuple[meta_pb2.AuraeMeta, list[rpb.Executable]]:
        shown = [_executable(spec, running) for spec, running
                 in persistent.list_persistent(self.ctx.layer) if spec.enabled == enabled]
        what = "enabled" if enabled else "disabled"
        return meta_pb2.AuraeMeta(message=f"{len(shown)} {what}"), shown

    @handles_errors
    def ShowEnabled(self, request: spb.ShowEnabledRequest,
                    context: grpc.ServicerContext) -> spb.ShowEnabledResponse:
        meta, shown = self._show(True)
        meta.name = request.meta.name
        return spb.ShowEnabledResponse(meta=meta, Executables=shown)

    @handles_errors
    def ShowDisabled(self, request: spb.ShowDisabledRequest,
                     context: grpc.ServicerContext) -> spb.ShowDisabledResponse:
        meta, shown = self._show(False)
        meta.name = request.meta.name
        return spb.ShowDisabledResponse(meta=meta, Executables=shown)


class ScheduleExecutableService(spb_grpc.ScheduleExecutableServicer):
    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx

    @handles_errors
    def Enable(self, request: rpb.Executable,
               context: grpc.ServicerContext) -> spb.ExecutableEnableResponse:
        layer = self.ctx.layer
        name = check_dns_label(request.meta.name, "executable name (meta.name)")
        found = persistent.get_persistent(layer, name)
        command, comment = request.command, request.comment
        if not command.strip() and found is not None:  # re-enable as registered
            command, comment = found[0].command, comment or found[0].comment
        manifest_set = found[1].manifest_set if found else ""
        check_exec_size(f"persistent executable {name!r}", command)  # before any lock file
        with self.ctx.executor.locked(reconcile_first=False):
            persistent.enable(layer, PersistentExecutableSpec(name, command, comment),
                              manifest_set)
        status = layer.read_shim_status(name)
        pid = status.child_pid if status else None
        return spb.ExecutableEnableResponse(meta=meta_pb2.AuraeMeta(
            name=name, message=f"enabled, running as pid {pid}" if pid else "enabled"))

    @handles_errors
    def Disable(self, request: rpb.Executable,
                context: grpc.ServicerContext) -> spb.ExecutableDisableResponse:
        name = check_dns_label(request.meta.name, "executable name (meta.name)")
        with self.ctx.executor.locked(reconcile_first=False):
            persistent.disable(self.ctx.layer, name)
        return spb.ExecutableDisableResponse(meta=meta_pb2.AuraeMeta(name=name,
                                                                     message="disabled"))

    @handles_errors
    def Destroy(self, request: rpb.Executable,
                context: grpc.ServicerContext) -> spb.ExecutableDestroyResponse:
        name = check_dns_label(request.meta.name, "executable name (meta.name)")
        with self.ctx.executor.locked(reconcile_first=False):
            persistent.destroy(self.ctx.layer, name)
        return spb.ExecutableDestroyResponse(meta=meta_pb2.AuraeMeta(name=name,
                                                                     message="destroyed"))

