"""A spare shim: a shim forked ahead of its launch, so that a launch finds one waiting.

The zygote (see :mod:`provisioner.node.zygote`) keeps one spare at all times: a process
already detached exactly like a shim (forked, ``setsid``, forked again), which then
prepares everything a launch needs that does not depend on the spec -

* its child, forked ahead as a :class:`~provisioner.node.child.Standby` (session,
  signals and stdio done; it waits for the rest of its plan on a pipe);
* the directories and the file a launch creates: ``run/.spare-<pid>/`` holding the file
  its first status will be written to, and ``logs/.spare-<pid>/``. A new executable's
  ``run/<name>`` and ``logs/<name>`` are these, renamed; an existing one's keep theirs
  and the status file is renamed across. Creating a file or directory means allocating
  an inode, and on ext4 that costs ~0.02 ms normally but ~0.5-1 ms in a block group
  with many recently deleted inodes (any directory with churn: test runs, benchmarks,
  restarts of many executables) - off the launch's path it costs nothing;
* its memory: right after a fork every page the process writes to is first copied
  (copy-on-write), so it runs the code a launch runs once, on a template spec;

- and blocks on its own socket to the zygote. The zygote hands the next launch request
(with the launcher's readiness pipe) to the spare and forks a new spare for the one
after; the spare becomes that executable's shim. A launch then costs no fork and no
inode allocation on its path, only the stand-by child's exec.

A spare that gets EOF instead (the zygote exited) removes what it made, lets its
stand-by go (EOF on its go pipe) and exits: it never runs anything. What a killed
spare leaves behind, the next zygote sweeps (:func:`sweep`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket

from provisioner.node import child, shim
from provisioner.node.logs import LogLimits, LogWriter
from provisioner.node.procs import proc_start_time, set_comm
from provisioner.node.shimspec import (
    MAX_REQUEST_BYTES,
    STARTING,
    ShimSpec,
    ShimStatus,
    decode_request,
    parse_spec,
    spec_bytes,
)
from provisioner.node.types import LeafCgroup

#: Name prefix of what a spare makes ahead (no executable name starts with a dot).
SPARE_PREFIX = ".spare-"
_STATUS_TMP = "status.json.spare"
_TEMPLATE = spec_bytes(ShimSpec(
    name="template", command="true", leaf=LeafCgroup(("/nonexistent",), False),
    log_dir="/nonexistent", status_file="/nonexistent/status.json", env={"A": "b"},
    log_limits=LogLimits()))


class Prepared:
    """What a spare made ahead under ``<state>/run`` and ``<state>/logs``."""

    def __init__(self, state_dir: str) -> None:
        name = f"{SPARE_PREFIX}{os.getpid()}"
        self.run_dir = os.path.join(state_dir, "run", name)
        self.log_dir = os.path.join(state_dir, "logs", name)
        self.status_fd = -1
        try:
            os.mkdir(self.run_dir, 0o755)
            os.mkdir(self.log_dir, 0o755)
            self.status_fd = os.open(os.path.join(self.run_dir, _STATUS_TMP),
                                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                     0o640)
        except OSError:
            self.discard()  # a launch then makes its own (e.g. no state directory)

    def adopt(self, spec: ShimSpec) -> tuple[int, str] | None:
        """Put the prepared directories in place for SPEC (where its own do not exist
        yet); the prepared status file (fd, path) for its first status write."""
        if self.status_fd < 0:
            return None
        run_dir = os.path.dirname(spec.status_file)
        status_tmp = os.path.join(run_dir, _STATUS_TMP)
        if not _rename_dir(self.run_dir, run_dir):
            # The executable's directory exists already: move just the file over.
            os.makedirs(run_dir, exist_ok=True)
            try:
                os.rename(os.path.join(self.run_dir, _STATUS_TMP), status_tmp)
            except OSError:  # e.g. EXDEV: the writer makes its own file then
                status_tmp = os.path.join(self.run_dir, _STATUS_TMP)
            with contextlib.suppress(OSError):
                os.rmdir(self.run_dir)
        if not _rename_dir(self.log_dir, spec.log_dir):
            with contextlib.suppress(OSError):
                os.rmdir(self.log_dir)
        fd, self.status_fd = self.status_fd, -1
        return fd, status_tmp

    def discard(self) -> None:
        if self.status_fd >= 0:
            os.close(self.status_fd)
            self.status_fd = -1
        _remove_prepared(self.run_dir)
        with contextlib.suppress(OSError):
            os.rmdir(self.log_dir)


def _rename_dir(prepared: str, target: str) -> bool:
    """Move PREPARED to TARGET if TARGET does not exist; False if it did (or the move
    is impossible, e.g. another file system)."""
    if os.path.lexists(target):
        return False
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(prepared, target)
        return True
    except OSError:  # made meanwhile (EEXIST/ENOTEMPTY), or EXDEV
        return False


def _remove_prepared(run_dir: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(run_dir, _STATUS_TMP))
    with contextlib.suppress(OSError):
        os.rmdir(run_dir)


def run(sock: socket.socket, state_dir: str | None, ready_fd: int) -> int:
    """The spare's life: prepare, wait for a request, then be its shim; the exit code.

    Closing ``ready_fd`` tells the zygote we are prepared. (A pipe, not a message on
    the socket: a message the zygote never reads would make its close of the socket a
    connection *reset*, and our read of a request queued before that would fail.)
    """
    set_comm("prov-spare")
    standby = child.Standby.fork(close_in_child=(sock.fileno(), ready_fd))
    prepared = Prepared(state_dir) if state_dir is not None else None
    _warm_up()
    os.close(ready_fd)
    try:
        data, fds, _flags, _addr = socket.recv_fds(sock, MAX_REQUEST_BYTES, 1,
                                                   socket.MSG_CMSG_CLOEXEC)
    except OSError:
        data, fds = b"", []
    sock.close()
    if not data or len(fds) != 1:  # the zygote is gone (or confused): not needed
        for fd in fds:
            os.close(fd)
        if standby is not None:
            standby.discard()
        if prepared is not None:
            prepared.discard()
        return 0
    ready_w = fds[0]
    status_tmp: tuple[int, str] | None = None
    try:
        crash_log, spec_json = decode_request(data)
        spec = parse_spec(spec_json)
        if prepared is not None:
            status_tmp = prepared.adopt(spec)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        with contextlib.suppress(OSError):
            os.write(ready_w, f"Ebad launch request: {exc}".encode())
        if standby is not None:
            standby.discard()
        if prepared is not None:
            prepared.discard()
        return 1
    return shim.serve(spec, ready_w, crash_log, standby, status_tmp)


def _warm_up() -> None:
    """Run, on a template, the code a launch runs before the child's exec, so that its
    copy-on-write page faults happen now rather than on the launch's path."""
    spec = parse_spec(_TEMPLATE)
    child.plan(spec)
    me = os.getpid()
    status = ShimStatus(
        name=spec.name, state=STARTING, shim_pid=me, shim_start_time=proc_start_time(me) or 0,
        leaf=spec.leaf, status_file=spec.status_file, log_dir=spec.log_dir,
        stop_grace_s=spec.stop_grace_s, launch_id=spec.launch_id)
    json.dumps(status.with_(state=STARTING).to_json(), separators=(",", ":")).encode()
    LogWriter(spec.log_dir, spec.log_limits)


def sweep(state_dir: str) -> None:
    """Remove what spares that died (killed) had made ahead and not used."""
    for sub in ("run", "logs"):
        parent = os.path.join(state_dir, sub)
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            pid = name[len(SPARE_PREFIX):]
            if name.startswith(SPARE_PREFIX) and pid.isdigit() and \
                    proc_start_time(int(pid)) is None:
                _remove_prepared(os.path.join(parent, name))
