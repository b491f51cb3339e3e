"""What the launcher tells a shim (``ShimSpec``) and what a shim reports (``ShimStatus``).

Both travel as JSON files: the launcher writes ``spec.json`` and the shim rewrites
``status.json`` atomically (tmp + rename) on every change, so a reader never sees a
half-written status. Only the stdlib is used (the shim imports this and starts fast).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field, replace

from provisioner.errors import InvalidArgument, NodeError, NotFound
from provisioner.node.logs import LogLimits
from provisioner.node.types import LeafCgroup, NamespaceTarget

TYPE_CHECKING = False  # spares importing typing at run time; mypy knows the name
if TYPE_CHECKING:
    from typing import Any

RESTART_POLICIES = ("never", "on-failure", "always")  # values of model.RestartPolicy

# Shim states. ``starting``: the shim is up, its first child not yet exec'd. ``failed``:
# the first child could not be started (reason in ``last_error``); the shim has exited.
STARTING = "starting"
RUNNING = "running"
BACKOFF = "backoff"  # the child exited; the shim restarts it at next_start_at_ns
EXITED = "exited"  # the child exited and the policy says no restart; the shim has exited
STOPPED = "stopped"  # stopped on request; nothing of it is left in the leaf
FAILED = "failed"
TERMINAL_STATES = (EXITED, STOPPED, FAILED)


#: Largest launch request the zygote takes in one message (see provisioner.node.zygote);
#: a larger spec is passed as a file instead.
MAX_REQUEST_BYTES = 128 * 1024


def encode_request(spec_json: bytes, crash_log: str, spill_file: str) -> bytes:
    """A zygote launch request: ``J<crash log>\0<spec JSON>``, or, for a spec too large
    for one message, ``F<crash log>\0<spec file>`` after writing the spec there."""
    log = os.fsencode(crash_log)
    request = b"J" + log + b"\0" + spec_json
    if len(request) <= MAX_REQUEST_BYTES:
        return request
    os.makedirs(os.path.dirname(spill_file), exist_ok=True)
    write_bytes_atomic(spill_file, spec_json)
    return b"F" + log + b"\0" + os.fsencode(spill_file)


def decode_request(request: bytes) -> tuple[str, bytes]:
    """(crash log, spec JSON) of a launch request (reading the spec file of an F one)."""
    log, _, payload = request[1:].partition(b"\0")
    if request[:1] == b"F":
        with open(os.fsdecode(payload), "rb") as f:
            payload = f.read()
    return os.fsdecode(log), payload


@dataclass(frozen=True)
class ShimSpec:
    """Everything one shim needs to supervise one executable."""

    name: str
    command: str  # run as ``sh -c COMMAND``
    leaf: LeafCgroup
    log_dir: str
    status_file: str
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = "/"
    uid: int | None = None
    gid: int | None = None  # default with uid: the user's primary group (else gid = uid)
    restart_policy: str = "never"  # a provisioner.model.RestartPolicy value
    stop_grace_s: float = 10.0
    namespace: NamespaceTarget | None = None
    log_limits: LogLimits = field(default_factory=LogLimits)
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    backoff_reset_s: float = 10.0  # a run this long resets the back-off to base
    launch_id: str = ""  # set by the launcher; echoed in the status it waits for

    def check(self) -> None:
        """Raise InvalidArgument for a spec the shim could not run."""
        if not self.name or "/" in self.name or "\0" in self.name:
            raise InvalidArgument(f"bad executable name {self.name!r}")
        if not self.command.strip() or "\0" in self.command:
            raise InvalidArgument(f"{self.name}: empty or NUL-containing command")
        if str(self.restart_policy) not in RESTART_POLICIES:
            raise InvalidArgument(f"{self.name}: bad restart policy {self.restart_policy!r}")
        if not self.leaf.dirs:
            raise InvalidArgument(f"{self.name}: leaf cgroup has no directories")
        for path in (self.log_dir, self.status_file, self.working_dir, *self.leaf.dirs):
            if not os.path.isabs(path):
                raise InvalidArgument(f"{self.name}: path {path!r} is not absolute")
        for key, value in self.env.items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise InvalidArgument(f"{self.name}: bad environment variable {key!r}")
        if self.stop_grace_s < 0 or self.backoff_base_s < 0 or self.backoff_cap_s < 0:
            raise InvalidArgument(f"{self.name}: negative grace or back-off")
        self.log_limits.check()

    def to_json(self) -> dict[str, Any]:
        # By hand rather than dataclasses.asdict (a deep copy, ~5x slower): this is on
        # the path of every launch.
        ns = self.namespace
        return {**vars(self), "leaf": _leaf_json(self.leaf), "env": dict(self.env),
                "restart_policy": str(self.restart_policy),
                "namespace": None if ns is None else {
                    "holder_pid": ns.holder_pid, "holder_start_time": ns.holder_start_time,
                    "namespaces": list(ns.namespaces)},
                "log_limits": vars(self.log_limits).copy()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShimSpec:
        ns = data.get("namespace")
        return cls(**{
            **data,
            "leaf": leaf_from_json(data["leaf"]),
            "namespace": None if ns is None else NamespaceTarget(
                int(ns["holder_pid"]), int(ns["holder_start_time"]),
                tuple(ns["namespaces"])),
            "log_limits": LogLimits(**data.get("log_limits", {})),
            "env": dict(data.get("env", {})),
        })


@dataclass(frozen=True)
class ShimStatus:
    """The state of one supervised executable, as last written by its shim."""

    name: str
    state: str
    shim_pid: int
    shim_start_time: int
    leaf: LeafCgroup
    status_file: str
    log_dir: str
    stop_grace_s: float
    launch_id: str = ""
    child_pid: int | None = None  # with a namespace target: the nsenter process
    child_start_time: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    started_at_ns: int | None = None  # wall clock, of the current / last run
    exited_at_ns: int | None = None
    next_start_at_ns: int | None = None  # in state backoff
    restart_count: int = 0
    last_error: str = ""
    updated_at_ns: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**vars(self), "leaf": _leaf_json(self.leaf)}  # see ShimSpec.to_json

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShimStatus:
        return cls(**{**data, "leaf": leaf_from_json(data["leaf"])})

    def with_(self, **changes: Any) -> ShimStatus:
        return replace(self, **changes)


def _leaf_json(leaf: LeafCgroup) -> dict[str, Any]:
    return {"dirs": list(leaf.dirs), "v2": leaf.v2, "freezer_dir": leaf.freezer_dir}


def leaf_from_json(data: dict[str, Any]) -> LeafCgroup:
    return LeafCgroup(tuple(data["dirs"]), bool(data["v2"]), data.get("freezer_dir"))


def write_json_atomic(path: str, data: dict[str, Any]) -> None:
    """Replace PATH with DATA as JSON: tmp file, then rename (readers see old or new).

    No fsync, on purpose. The rename alone makes the replacement atomic for every
    reader and survives a crash of any *process* (the page cache is the kernel's, not
    ours). What an fsync would add is survival of a power loss or kernel crash - and
    then the processes a status file describes are gone too, so the file describes
    nothing real either way: after a reboot, ``observe`` finds the shim's (pid, start
    time) dead whatever the file says, and records the executable as exited. (A
    truncated file after such a crash reads as "unreadable", which callers handle like
    a missing one.) Each fsync cost ~0.3 ms here, several times per start and stop.
    """
    write_bytes_atomic(path, json.dumps(data, separators=(",", ":")).encode())


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Replace PATH with DATA: tmp file, then rename (see write_json_atomic)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def spec_bytes(spec: ShimSpec) -> bytes:
    return json.dumps(spec.to_json(), separators=(",", ":")).encode()


def write_status(status: ShimStatus) -> None:
    write_json_atomic(status.status_file, status.to_json())


class StatusWriter:
    """Writes one status file (tmp + rename, as write_json_atomic), with the tmp file
    created ahead of time: creating a file is the slow part (on a busy ext4 up to
    ~0.5 ms for the inode), so the shim makes the next one while it is idle - after
    reporting ready, after each non-final write - and a write is then write + rename.
    A spare shim even brings one made before its spec arrived (``ready_tmp``: an open
    empty file on the same file system, renamed across directories)."""

    def __init__(self, path: str, ready_tmp: tuple[int, str] | None = None) -> None:
        self.path = path
        self._next = ready_tmp

    def prepare(self) -> None:
        if self._next is None:
            tmp = f"{self.path}.tmp.{os.getpid()}"
            self._next = (os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                  0o640), tmp)

    def write(self, status: ShimStatus) -> None:
        data = json.dumps(status.to_json(), separators=(",", ":")).encode()
        self.prepare()
        assert self._next is not None
        fd, tmp = self._next
        self._next = None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        try:
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            write_bytes_atomic(self.path, data)  # e.g. EXDEV: made on another file system

    def discard(self) -> None:
        """Remove a prepared, unused tmp file."""
        if self._next is not None:
            fd, tmp = self._next
            self._next = None
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def read_status(status_file: str) -> ShimStatus:
    """The last status written to STATUS_FILE; NotFound if there is none."""
    try:
        fd = os.open(status_file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NotFound(f"no status file {status_file}") from exc
    try:
        raw = b""
        while chunk := os.read(fd, 65536):
            raw += chunk
    finally:
        os.close(fd)
    try:
        return ShimStatus.from_json(json.loads(raw))
    except (ValueError, TypeError, KeyError) as exc:
        raise NodeError(f"unreadable status file {status_file}: {exc}") from exc


def parse_spec(raw: bytes) -> ShimSpec:
    return ShimSpec.from_json(json.loads(raw))


def read_spec(spec_file: str) -> ShimSpec:
    with open(spec_file, "rb") as f:
        return parse_spec(f.read())
