"""What both cgroup drivers share: limit validation, cpu lists, file access, ownership.

Import the public names from :mod:`provisioner.node.cgroups.layout`; this module exists so that
the v1 and v2 drivers can share code without importing each other.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time

from provisioner.cpulist import MAX_ID, parse_cpu_list
from provisioner.errors import (
    FailedPrecondition,
    InvalidArgument,
    NodeError,
    NotFound,
    NotOwned,
    Unavailable,
)
from provisioner.lazylog import LazyLogger
from provisioner.model import CellLimits
from provisioner.names import check_artifact_name, check_cell_path
from provisioner.records import fields

log = LazyLogger(__name__)

#: Extended attribute that marks a cgroup directory as created by the provisioner.
OWNER_XATTR = "trusted.provisioner.owner"
OWNER_VALUE = b"provisioner"
#: The limits last asked for (JSON), kept on the cell so that read-back can tell an unset
#: limit from one explicitly set to the kernel's default (cpu.weight 100 looks the same).
LIMITS_XATTR = "trusted.provisioner.limits"

#: Leaf of an isolated cell's namespace holder; executables use ``_x.<name>``.
HOLDER_LEAF = "_holder"
EXECUTABLE_LEAF_PREFIX = "_x."

CPU_WEIGHT_MIN, CPU_WEIGHT_MAX, CPU_WEIGHT_DEFAULT = 1, 10000, 100
#: The kernel refuses a CPU quota below 1 ms per period (v1 cfs_quota_us and v2 cpu.max).
CPU_MAX_MIN_US = 1000
#: Period of a CPU quota: the API's ``max`` is CPU time per second.
CPU_PERIOD_US = 1_000_000
CPU_LIST_MAX_ID = MAX_ID


def validate_limits(limits: CellLimits) -> None:
    """Refuse out-of-range or malformed limits before anything touches the kernel."""
    weight = limits.cpu_weight
    if weight is not None and (
        isinstance(weight, bool) or not isinstance(weight, int)
        or not CPU_WEIGHT_MIN <= weight <= CPU_WEIGHT_MAX
    ):
        raise InvalidArgument(
            f"cpu weight {weight!r} is out of range {CPU_WEIGHT_MIN}..{CPU_WEIGHT_MAX}"
        )
    cpu_max = limits.cpu_max_us
    if cpu_max is not None and (
        isinstance(cpu_max, bool) or not isinstance(cpu_max, int) or cpu_max < CPU_MAX_MIN_US
    ):
        raise InvalidArgument(
            f"cpu max {cpu_max!r} must be an integer of at least {CPU_MAX_MIN_US} "
            "(microseconds of CPU time per second; the kernel's minimum quota is 1 ms)"
        )
    for what, value in (("cpuset cpus", limits.cpuset_cpus), ("cpuset mems", limits.cpuset_mems)):
        if value is not None:
            try:
                parse_cpu_list(value)
            except InvalidArgument as exc:
                raise InvalidArgument(f"{what}: {exc}") from None


def same_cpu_list(a: str | None, b: str | None) -> bool:
    """True when two lists name the same ids (``0,1`` equals ``0-1``); None only equals None."""
    if a is None or b is None:
        return a is b
    try:
        return parse_cpu_list(a) == parse_cpu_list(b)
    except InvalidArgument:
        return a == b


def same_limits(a: CellLimits, b: CellLimits) -> bool:
    """Equal as the kernel sees them: cpusets compare as sets (``0,1`` is ``0-1``)."""
    return all(
        (same_cpu_list if f.name.startswith("cpuset") else _same_value)(
            getattr(a, f.name), getattr(b, f.name))
        for f in fields(CellLimits))


def reconcile_limits(kernel: CellLimits, default: CellLimits,
                     asked: CellLimits | None) -> CellLimits:
    """Turn what the kernel files hold into the limits as the user would write them.

    Per field: if the kernel value matches what was asked, report what was asked (so that
    ``"0,1"`` reads back as ``"0,1"``); if nothing was asked and the kernel holds its
    default, report None; otherwise report the kernel's value - that is drift.
    """
    out: dict[str, object] = {}
    for f in fields(CellLimits):
        have = getattr(kernel, f.name)
        want = getattr(asked, f.name) if asked is not None else None
        dflt = getattr(default, f.name)
        same = same_cpu_list if f.name.startswith("cpuset") else _same_value
        if want is not None and same(have, want):
            out[f.name] = want
        elif want is None and same(have, dflt):
            out[f.name] = None
        else:
            out[f.name] = have
    return CellLimits(**out)  # type: ignore[arg-type]


def _same_value(a: object, b: object) -> bool:
    return a == b


def check_cell(cell: str, *, allow_root: bool) -> str:
    """A checked cell path; ``""`` (the root cell) only where ``allow_root``."""
    if cell == "" and allow_root:
        return cell
    return check_cell_path(cell)


def executable_leaf(executable: str) -> str:
    """The leaf directory name of one executable: ``_x.<name>``."""
    return EXECUTABLE_LEAF_PREFIX + check_artifact_name(executable, what="executable name")


def check_leaf_name(leaf_name: str) -> str:
    """Accept ``_holder`` or ``_x.<executable name>``; refuse anything else."""
    if leaf_name == HOLDER_LEAF:
        return leaf_name
    if isinstance(leaf_name, str) and leaf_name.startswith(EXECUTABLE_LEAF_PREFIX):
        check_artifact_name(leaf_name[len(EXECUTABLE_LEAF_PREFIX):], what="leaf name")
        return leaf_name
    raise InvalidArgument(
        f"leaf name {leaf_name!r} must be {HOLDER_LEAF!r} or '_x.<executable name>'"
    )


# --- files -------------------------------------------------------------------------

def read_text(path: str) -> str:
    """The stripped ASCII content of a (small) cgroup file; NodeError if unreadable."""
    # Raw os.open/os.read: a cgroup file is tiny, and a Python file object costs three
    # times the syscalls' own time on paths taken at every start and stop.
    try:
        return _read_all(path).decode("ascii").strip()
    except OSError as exc:
        raise NodeError(f"cannot read {path}: {exc.strerror}") from exc


def _read_all(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        return data
    finally:
        os.close(fd)


def write_text(path: str, value: str, hint: str = "") -> None:
    """Write ``value`` with one write(2), as cgroupfs expects.

    A value the kernel refuses (EINVAL, ERANGE, ...) is :class:`InvalidArgument` naming the
    file and the value; EBUSY (a child or a process stands in the way) is
    :class:`FailedPrecondition`; anything else is :class:`NodeError`.
    """
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode("ascii"))
        finally:
            os.close(fd)
    except OSError as exc:
        message = f"the kernel refused {value!r} for {path}: {exc.strerror}"
        if hint:
            message += f" ({hint})"
        if exc.errno in (errno.EINVAL, errno.ERANGE, errno.EOVERFLOW, errno.ENOSPC):
            raise InvalidArgument(message) from exc
        if exc.errno == errno.EBUSY:
            raise FailedPrecondition(message) from exc
        raise NodeError(message) from exc


def read_procs(path: str) -> set[int]:
    """Pids listed in one ``cgroup.procs`` (empty if the directory vanished meanwhile)."""
    try:
        return {int(tok) for tok in _read_all(path).split()}
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise NodeError(f"cannot read {path}: {exc.strerror}") from exc


#: Name prefix of a directory being created (see make_owned_dir). No cell or leaf name
#: can start with '.', so such a directory can only be one the provisioner made.
NEW_DIR_PREFIX = ".provisioner-new."


def staging_is_dead(name: str) -> bool:
    """True if ``name`` is a staging directory (``.provisioner-new.<name>.<tid>``) whose
    creating thread is gone. Thread ids are unique among the live threads of every
    process of this pid namespace, so a live id may be its creator (left alone) or an
    unrelated thread that reused it (left for a later sweep); a dead one can come back
    only through reuse, which makes a new name the sweep then leaves alone."""
    if not name.startswith(NEW_DIR_PREFIX):
        return False
    tid = name.rpartition(".")[2]
    return tid.isdigit() and not os.path.exists(f"/proc/{tid}")


def sweep_staging(parent: str, only: str | None = None) -> list[str]:
    """Remove the staging directories in ``parent`` left by dead threads (a creation
    killed between its mkdir and its rename); ``only``: just those staging ``only``.
    They are always empty (nothing uses a directory before its rename). Returns the
    paths removed."""
    removed: list[str] = []
    prefix = NEW_DIR_PREFIX if only is None else f"{NEW_DIR_PREFIX}{only}."
    for name in subdirs(parent):
        if name.startswith(prefix) and staging_is_dead(name):
            path = os.path.join(parent, name)
            try:
                os.rmdir(path)
            except FileNotFoundError:
                continue  # another sweep was first
            except OSError as exc:
                log.warning("cannot remove staging cgroup %s: %s", path, exc.strerror)
                continue
            removed.append(path)
    return removed


def is_marked(path: str) -> bool:
    """True if the directory carries the provisioner's ownership mark."""
    if os.path.basename(path).startswith(NEW_DIR_PREFIX):
        return True  # a creation the provisioner did not finish (crash): ours
    try:
        return os.getxattr(path, OWNER_XATTR) == OWNER_VALUE
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOENT):
            return False
        if exc.errno == errno.ENOTSUP:
            raise Unavailable(f"{path}: this cgroupfs does not support trusted.* xattrs "
                              "(needed to mark what the provisioner owns)") from exc
        raise NodeError(f"cannot read {OWNER_XATTR} of {path}: {exc.strerror}") from exc


def mark_state(path: str) -> bool | None:
    """Like :func:`is_marked`, but None when the directory does not exist (one syscall
    answers both "is it there" and "is it ours")."""
    if os.path.basename(path).startswith(NEW_DIR_PREFIX):
        return True
    try:
        return os.getxattr(path, OWNER_XATTR) == OWNER_VALUE
    except FileNotFoundError:
        return None
    except OSError:
        return is_marked(path)  # the same errors, explained


class ParentMissing(NotFound):
    """The directory a cgroup was to be created in does not exist."""


def make_owned_dir(path: str, *, staged: bool = True, probe: bool = True,
                   tid: int | None = None) -> bool:
    """Create ``path`` and mark it ours; True if created, False if it was already ours.

    An existing directory without the mark raises :class:`NotOwned`; a missing parent
    raises :class:`ParentMissing`. With ``staged`` (v1: the cgroupfs allows rename) the
    directory is made and marked under a temporary name and then renamed into place, so
    that a process killed at any moment never leaves an unmarked directory under a real
    name (which would block that name as "not ours"). cgroup v2 refuses rename (a
    driver for it passes ``staged=False``, and a refused rename falls back to it): there
    the mark follows mkdir immediately.

    ``probe=False`` skips the up-front "is it there, is it ours" getxattr when the
    caller expects the directory to be new: an existing one is then found by the
    creation itself (rename, or mkdir, fails with EEXIST) and judged the same way, at
    the price of a staging directory made and removed.

    The staging name ends with the calling thread's id (``tid``: given by a caller that
    makes several, to spare a gettid each), unique among live threads of all processes:
    two creations never share one, and one found already there is the leftover of a
    dead thread.
    """
    if probe:
        mark = mark_state(path)
        if mark is not None:
            return _judge_existing(path, mark)
    if not staged:
        return _create_unstaged(path)
    parent, name = os.path.split(path)
    staging = os.path.join(parent, f"{NEW_DIR_PREFIX}{name}.{tid or threading.get_native_id()}")
    try:
        _mkdir_marked(staging)
    except FileExistsError:
        # Left by a dead thread of the same id (a crash, then id reuse): ours by its
        # name, so it goes.
        remove_dir(staging)
        _mkdir_marked(staging)
    try:
        os.rename(staging, path)
    except FileExistsError:  # it exists (an adopted leftover, or made meanwhile)
        remove_dir(staging)
        return _existing(path)
    except OSError as exc:
        remove_dir(staging)
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EINVAL):
            raise NodeError(f"cannot create cgroup {path}: {exc.strerror}") from exc
        return _create_unstaged(path)
    return True


def _create_unstaged(path: str) -> bool:
    try:
        _mkdir_marked(path)
    except FileExistsError:
        return _existing(path)
    return True


def _judge_existing(path: str, mark: bool) -> bool:
    if not mark:
        raise NotOwned(f"cgroup {path} exists but was not created by the provisioner "
                       f"(no {OWNER_XATTR} attribute)")
    return False


def _existing(path: str) -> bool:
    return _judge_existing(path, is_marked(path))


def _mkdir_marked(path: str) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        raise
    except FileNotFoundError as exc:
        raise ParentMissing(f"cannot create cgroup {path}: its parent "
                            f"{os.path.dirname(path)} does not exist") from exc
    except OSError as exc:
        raise NodeError(f"cannot create cgroup {path}: {exc.strerror}") from exc
    try:
        os.setxattr(path, OWNER_XATTR, OWNER_VALUE)
    except OSError as exc:
        remove_dir(path)
        raise Unavailable(f"cannot mark cgroup {path} with {OWNER_XATTR}: {exc.strerror}") from exc


def remove_dir(path: str) -> None:
    """rmdir a cgroup, retrying EBUSY briefly: a task that has just exited can keep a
    cgroup busy until its parent has reaped it (and the kernel has let go of it - on
    the order of a millisecond, hence short, growing pauses)."""
    deadline = 0.0  # taken at the first EBUSY: the usual rmdir needs no clock
    pause = 0.0005
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                now = time.monotonic()
                deadline = deadline or now + 2.0
                if now < deadline:
                    time.sleep(pause)
                    pause = min(pause * 2, 0.02)
                    continue
            raise NodeError(f"cannot remove cgroup {path}: {exc.strerror}") from exc


def subdirs(path: str) -> list[str]:
    """Names of the child cgroups of ``path`` (none if it does not exist)."""
    try:
        # cgroupfs (kernfs) counts a directory's subdirectories in its link count, as
        # ext4 does: 2 means none, and one stat spares listing its dozens of files.
        if os.stat(path).st_nlink == 2:
            return []
        with os.scandir(path) as it:
            return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def walk_bottom_up(path: str) -> list[str]:
    """``path`` and every cgroup below it, deepest first (the order rmdir needs)."""
    out: list[str] = []
    for name in subdirs(path):
        out.extend(walk_bottom_up(os.path.join(path, name)))
    out.append(path)
    return out


_LIMIT_FIELDS = tuple(sorted(f.name for f in fields(CellLimits)))


def record_limits(path: str, limits: CellLimits) -> None:
    """Remember the limits a cell was made with in an extended attribute of its
    cgroup directory (read back by observe to report drift).
    """
    # The fields by hand, not records.asdict (which walks deep): same JSON.
    value = {name: getattr(limits, name) for name in _LIMIT_FIELDS}
    try:
        os.setxattr(path, LIMITS_XATTR, json.dumps(value).encode())
    except OSError as exc:
        raise NodeError(f"cannot record limits on {path}: {exc.strerror}") from exc


def recorded_limits(path: str) -> CellLimits | None:
    """The limits last asked for, or None if never recorded (e.g. an adopted leftover)."""
    try:
        raw = json.loads(os.getxattr(path, LIMITS_XATTR))
        return CellLimits(**{k: v for k, v in raw.items() if k in _LIMIT_FIELDS})
    except (OSError, ValueError, TypeError, AttributeError):
        return None
