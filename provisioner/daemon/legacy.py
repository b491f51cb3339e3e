"""First-generation Aurae: ``runtime.Runtime.Exec`` and ``schedule.Schedule`` /
``schedule.ScheduleExecutable`` (persistent executables). ``observe.Observe`` is in
``aurae_observe.py``. Decisions are written down in ``docs/apis.md``.

These servicers are adapters: protobuf in, a call of the node layer, protobuf out. Exec
runs ``/bin/sh -c COMMAND`` (a shell, not upstream's split on spaces) synchronously
through :func:`provisioner.node.run_command` (``node/runtime/commands.py`` says how: a
leaf cgroup of its own under the daemon's root cell, killed and removed when the command
ends, the deadline passes or the client goes away; nothing recorded in the store, so the
node's generation does not change; output captured up to ``MAX_OUTPUT_BYTES`` per
stream). ``exit_code`` is the decimal exit status (``"0"``), or minus the signal number
for a process killed by a signal (``"-9"``), as Python's ``returncode`` has it. Status
is COMPLETE for exit 0, ERROR otherwise.
"""

from __future__ import annotations

import time

import grpc

from provisioner._proto.meta import meta_pb2
from provisioner._proto.runtime import runtime_pb2 as rpb
from provisioner._proto.runtime import runtime_pb2_grpc as rpb_grpc
from provisioner._proto.schedule import schedule_pb2 as spb
from provisioner._proto.schedule import schedule_pb2_grpc as spb_grpc
from provisioner.daemon.context import DaemonContext
from provisioner.daemon.status import handles_errors
from provisioner.model import PersistentExecutableSpec
from provisioner.names import check_dns_label
from provisioner.node import (
    EXEC_LEAF_PREFIX,
    MAX_OUTPUT_BYTES,
    check_exec_size,
    persistent,
    run_command,
)

# EXEC_LEAF_PREFIX and MAX_OUTPUT_BYTES are part of what Exec promises (where a command
# runs, how much output comes back); they live with the code, in the node layer.
__all__ = ["EXEC_LEAF_PREFIX", "MAX_OUTPUT_BYTES", "RuntimeService",
           "ScheduleExecutableService", "ScheduleService"]


class RuntimeService(rpb_grpc.RuntimeServicer):
    """``runtime.Runtime``: Exec, one command run to completion on the node."""

    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx

    @handles_errors
    def Exec(self, request: rpb.Executable,
             context: grpc.ServicerContext) -> rpb.ExecutableStatus:
        """Run ``request.command`` until it ends or the call's deadline passes (then
        DEADLINE_EXCEEDED, with the output so far) or the client goes away."""
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        result = run_command(self.ctx.layer, request.command, deadline, context.is_active,
                             what="Exec")
        status = meta_pb2.STATUS_COMPLETE if result.returncode == 0 else meta_pb2.STATUS_ERROR
        if result.timed_out:
            context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
            context.set_details(f"command did not finish before the deadline; its process "
                                f"tree (pid {result.pid}) was killed")
        return rpb.ExecutableStatus(
            meta=meta_pb2.AuraeMeta(name=request.meta.name, message=result.describe()),
            proc=meta_pb2.ProcessMeta(pid=result.pid), status=status,
            stdout=result.stdout, stderr=result.stderr,
            exit_code="" if result.returncode is None else str(result.returncode))


# -- schedule --------------------------------------------------------------------------

def _executable(spec: PersistentExecutableSpec, running: bool) -> rpb.Executable:
    state = "disabled" if not spec.enabled else "running" if running else "not running"
    return rpb.Executable(meta=meta_pb2.AuraeMeta(name=spec.name, message=state),
                          command=spec.command, comment=spec.comment)


class ScheduleService(spb_grpc.ScheduleServicer):
    """``schedule.Schedule``: the persistent executables, enabled or disabled."""

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
        """The enabled persistent executables, each said to be running or not."""
        meta, shown = self._show(True)
        meta.name = request.meta.name
        return spb.ShowEnabledResponse(meta=meta, Executables=shown)

    @handles_errors
    def ShowDisabled(self, request: spb.ShowDisabledRequest,
                     context: grpc.ServicerContext) -> spb.ShowDisabledResponse:
        """The disabled persistent executables."""
        meta, shown = self._show(False)
        meta.name = request.meta.name
        return spb.ShowDisabledResponse(meta=meta, Executables=shown)


class ScheduleExecutableService(spb_grpc.ScheduleExecutableServicer):
    """``schedule.ScheduleExecutable``: enable, disable and destroy one persistent
    executable, each under the node's writer lock."""

    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx

    @handles_errors
    def Enable(self, request: rpb.Executable,
               context: grpc.ServicerContext) -> spb.ExecutableEnableResponse:
        """Register (or re-enable as registered, given no command) and start it."""
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
        """Stop it and keep it registered, disabled."""
        name = check_dns_label(request.meta.name, "executable name (meta.name)")
        with self.ctx.executor.locked(reconcile_first=False):
            persistent.disable(self.ctx.layer, name)
        return spb.ExecutableDisableResponse(meta=meta_pb2.AuraeMeta(name=name,
                                                                     message="disabled"))

    @handles_errors
    def Destroy(self, request: rpb.Executable,
                context: grpc.ServicerContext) -> spb.ExecutableDestroyResponse:
        """Stop it and forget it."""
        name = check_dns_label(request.meta.name, "executable name (meta.name)")
        with self.ctx.executor.locked(reconcile_first=False):
            persistent.destroy(self.ctx.layer, name)
        return spb.ExecutableDestroyResponse(meta=meta_pb2.AuraeMeta(name=name,
                                                                     message="destroyed"))

