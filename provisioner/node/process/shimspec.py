"""What the launcher tells a shim (``ShimSpec``) and what a shim reports (``ShimStatus``).

The shim is the compiled supervisor ``provisioner-shim`` (``csrc/``). It gets the spec
as NUL-separated key / value pairs (:func:`native_spec`), with everything that needs a
lookup already resolved here: the argv (``sh -c COMMAND``, or nsenter into the cell
first), the environment, uid and gid. It rewrites ``status.json`` atomically (tmp +
rename) on every change with exactly the fields of :class:`ShimStatus`, so a reader
never sees a half-written status.
"""

from __future__ import annotations

import json
import os

from provisioner.errors import InvalidArgument, NodeError, NotFound
from provisioner.limits import MAX_BACKOFF_S, MAX_SETTLE_S, MAX_STOP_GRACE_S, clamp
from provisioner.node.process.exec_limits import check_exec_size
from provisioner.node.process.logs import LogLimits
from provisioner.node.types import LeafCgroup, NamespaceTarget
from provisioner.records import field, record, replace

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
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


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NSENTER = "/usr/bin/nsenter"


@record
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
    #: After the grace period, kill the leaf's sub-cgroups first and give the main
    #: process this long to exit by itself (a container runtime, which then cleans
    #: up after its container); 0: the whole leaf at once.
    settle_s: float = 0.0

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
        check_exec_size(self.name, self.command, self.env)
        if not 0 <= self.stop_grace_s <= MAX_STOP_GRACE_S:
            raise InvalidArgument(f"{self.name}: stop grace period {self.stop_grace_s!r} s is "
                                  f"not within 0..{MAX_STOP_GRACE_S:g} s")
        if not 0 <= self.settle_s <= MAX_SETTLE_S:
            raise InvalidArgument(f"{self.name}: settle time {self.settle_s!r} s is not "
                                  f"within 0..{MAX_SETTLE_S:g} s")
        for what in ("backoff_base_s", "backoff_cap_s", "backoff_reset_s"):
            value = getattr(self, what)
            if not 0 <= value <= MAX_BACKOFF_S:
                raise InvalidArgument(f"{self.name}: {what} {value!r} is not within "
                                      f"0..{MAX_BACKOFF_S:g}")
        self.log_limits.check()

    def to_json(self) -> dict[str, Any]:
        """The spec file's object (what the shim reads)."""
        # By hand rather than records.asdict (a deep walk, ~5x slower): this is on
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
        """A spec as written by :meth:`to_json`, numbers out of range (written by an
        older version) clamped to the limits, with a warning."""
        ns = data.get("namespace")
        name = f"spec of {data.get('name')!r}"
        return cls(**{
            **data,
            **_clamped(data, name, ("stop_grace_s", MAX_STOP_GRACE_S),
                       ("backoff_base_s", MAX_BACKOFF_S), ("backoff_cap_s", MAX_BACKOFF_S),
                       ("backoff_reset_s", MAX_BACKOFF_S), ("settle_s", MAX_SETTLE_S)),
            "leaf": leaf_from_json(data["leaf"]),
            "namespace": None if ns is None else NamespaceTarget(
                int(ns["holder_pid"]), int(ns["holder_start_time"]),
                tuple(ns["namespaces"])),
            "log_limits": LogLimits(**data.get("log_limits", {})),
            "env": dict(data.get("env", {})),
        })


@record
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
        """The status file's object."""
        return {**vars(self), "leaf": _leaf_json(self.leaf)}  # see ShimSpec.to_json

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShimStatus:
        """A status file's object; a grace period out of range (a shim of an older
        version) is clamped, with a warning, so a stop always ends."""
        grace = _clamped(data, f"status of {data.get('name')!r}",
                         ("stop_grace_s", MAX_STOP_GRACE_S))
        return cls(**{**data, **grace, "leaf": leaf_from_json(data["leaf"])})

    def with_(self, **changes: Any) -> ShimStatus:
        """A copy of this status with ``changes`` applied."""
        return replace(self, **changes)


def _clamped(data: dict[str, Any], where: str,
             *fields: tuple[str, float]) -> dict[str, float]:
    """The FIELDS of DATA (name, upper bound; lower bound 0) that are out of range,
    clamped; nothing for those in range (the usual case: no copy, no float())."""
    out: dict[str, float] = {}
    for key, high in fields:
        value = data.get(key)
        if isinstance(value, int | float) and not 0 <= value <= high:
            out[key] = clamp(float(value), 0.0, high, f"{where}: {key}")
    return out


def _leaf_json(leaf: LeafCgroup) -> dict[str, Any]:
    return {"dirs": list(leaf.dirs), "v2": leaf.v2, "freezer_dir": leaf.freezer_dir}


def leaf_from_json(data: dict[str, Any]) -> LeafCgroup:
    """The leaf cgroup a status or spec file describes."""
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


def write_status(status: ShimStatus) -> None:
    """Write ``status`` to its status file atomically."""
    write_json_atomic(status.status_file, status.to_json())


def _identity(spec: ShimSpec) -> tuple[int | None, int | None, dict[str, str]]:
    """(uid, gid, environment) of the child; gid defaults to the user's primary group."""
    import pwd  # only here: most executables run as root and never need it

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


def native_spec(spec: ShimSpec, crash_log: str) -> bytes:
    """SPEC as provisioner-shim reads it: ``key\0value\0`` pairs, list keys repeated.

    The argv is ``/bin/sh -c COMMAND``; for a cell with namespaces it is nsenter with
    the holder as target, which then also switches directory and user inside the cell.
    In a cell with ``isolate_process`` the child first unshares a cgroup namespace once
    it is in its leaf (``unshare_cgroup``), so it sees itself at ``/`` in
    ``/proc/self/cgroup``, as in an upstream Aurae cell; nsenter keeps that one.
    """
    uid, gid, env = _identity(spec)
    pairs: list[tuple[str, str]] = [
        ("name", spec.name), ("status_file", spec.status_file), ("log_dir", spec.log_dir),
        ("launch_id", spec.launch_id), ("crash_log", crash_log),
        ("working_dir", spec.working_dir), ("restart_policy", str(spec.restart_policy)),
        ("stop_grace_s", repr(float(spec.stop_grace_s))),
        ("backoff_base_s", repr(float(spec.backoff_base_s))),
        ("backoff_cap_s", repr(float(spec.backoff_cap_s))),
        ("backoff_reset_s", repr(float(spec.backoff_reset_s))),
        ("settle_s", repr(float(spec.settle_s))),
        ("log_max_bytes", str(spec.log_limits.max_bytes)),
        ("log_keep", str(spec.log_limits.keep)),
        ("log_max_line_bytes", str(spec.log_limits.max_line_bytes)),
        ("leaf_v2", "1" if spec.leaf.v2 else "0"),
        *(("leaf", d) for d in spec.leaf.dirs),
        *(("env", f"{k}={v}") for k, v in env.items()),
    ]
    if spec.leaf.freezer_dir is not None:
        pairs.append(("freezer_dir", spec.leaf.freezer_dir))
    ns = spec.namespace
    if ns is None:
        argv = ["/bin/sh", "-c", spec.command]
        pairs.append(("chdir", spec.working_dir))
        pairs += [(k, str(v)) for k, v in (("uid", uid), ("gid", gid)) if v is not None]
    else:
        argv = [NSENTER, f"--target={ns.holder_pid}", *(f"--{n}" for n in ns.namespaces),
                f"--wdns={spec.working_dir}"]
        if gid is not None:
            argv.append(f"--setgid={gid}")
        if uid is not None:
            argv.append(f"--setuid={uid}")
        argv += ["--", "/bin/sh", "-c", spec.command]
        pairs += [("holder_pid", str(ns.holder_pid)),
                  ("holder_start_time", str(ns.holder_start_time))]
        if "pid" in ns.namespaces:  # isolate_process: a cgroup namespace at the leaf
            pairs.append(("unshare_cgroup", "1"))
    pairs += [("argv", a) for a in argv]
    return b"".join(os.fsencode(k) + b"\0" + os.fsencode(v) + b"\0" for k, v in pairs)


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
