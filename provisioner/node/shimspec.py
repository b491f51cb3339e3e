"""What the launcher tells a shim (``ShimSpec``) and what a shim reports (``ShimStatus``).

Both travel as JSON files: the launcher writes ``spec.json`` and the shim rewrites
``status.json`` atomically (tmp + fsync + rename) on every change, so a reader never sees
a half-written status. Only the stdlib is used (the shim imports this and starts fast).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace

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
        data = asdict(self)
        data["restart_policy"] = str(self.restart_policy)
        return data

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
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShimStatus:
        return cls(**{**data, "leaf": leaf_from_json(data["leaf"])})

    def with_(self, **changes: Any) -> ShimStatus:
        return replace(self, **changes)


def leaf_from_json(data: dict[str, Any]) -> LeafCgroup:
    return LeafCgroup(tuple(data["dirs"]), bool(data["v2"]), data.get("freezer_dir"))


def write_json_atomic(path: str, data: dict[str, Any]) -> None:
    """Replace PATH with DATA as JSON: tmp file, fsync, rename (readers see old or new)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, json.dumps(data, separators=(",", ":")).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_status(status: ShimStatus) -> None:
    write_json_atomic(status.status_file, status.to_json())


def read_status(status_file: str) -> ShimStatus:
    """The last status written to STATUS_FILE; NotFound if there is none."""
    try:
        with open(status_file, "rb") as f:
            raw = f.read()
    except FileNotFoundError as exc:
        raise NotFound(f"no status file {status_file}") from exc
    try:
        return ShimStatus.from_json(json.loads(raw))
    except (ValueError, TypeError, KeyError) as exc:
        raise NodeError(f"unreadable status file {status_file}: {exc}") from exc


def read_spec(spec_file: str) -> ShimSpec:
    with open(spec_file, "rb") as f:
        return ShimSpec.from_json(json.loads(f.read()))
