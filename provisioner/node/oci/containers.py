"""OCI containers run with runc: their bundles and the command a shim runs for each.

A container runs as a supervised executable (see :mod:`provisioner.node.process.supervise`)
whose command is ``runc run`` in the foreground (:func:`container_command`): runc
forwards signals to the container, its stdio (terminal false) is the container's, so
the output lands in the executable's log files, and it deletes the container when the
container exits. runc's state lives in ``<state_dir>/runc`` (``runc --root``), not in
/run/runc. The container's cgroup is one level below the shim's leaf
(``.../_x.<name>/ctr``, the ``cgroups_path`` given to :func:`prepare_bundle`), so the
shim's stop - SIGTERM, grace, kill everything in the leaf *and its sub-cgroups* - also
reaches a container that ignores SIGTERM, and a restart never runs next to leftovers.

A bundle is ``<state_dir>/pods/<pod>/<container>/``:

- ``rootfs/``: an **overlay** mount, lowerdir the unpacked image (read-only, shared by
  every container of that image), upperdir ``upper/`` and workdir ``work/`` inside the
  bundle: each container writes to its own layer, the image is never touched;
- ``config.json``: the OCI runtime config (:mod:`provisioner.node.oci.config`).

(Mounting and unmounting: :mod:`provisioner.node.oci.mounts`.)

:func:`prepare_bundle` starts from scratch every time (a leftover bundle, say from a
crash, is unmounted and removed first - its writes go with it; a restart by the shim
reuses the bundle and keeps them). It refuses while a runc container of that bundle
still runs. :func:`remove_bundle` deletes the runc container (``delete --force``),
unmounts and removes the bundle.

After the grace period the shim kills the container (the leaf's sub-cgroups) first and
gives runc :data:`RUNC_SETTLE_S` to exit by itself (``ShimSpec.settle_s``): runc then
removes the container's state and cgroups, and :func:`remove_bundle` has no ``runc
delete`` to run (~10 ms of a pod's removal). A runc SIGKILLed anyway (it did not exit
in time, or a stop without a shim) leaves its state and its container's (empty) cgroups
behind: the ``runc delete --force`` that starts the command clears them before ``runc
run``, as :func:`remove_bundle` does.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re

from provisioner.errors import (
    FailedPrecondition,
    InvalidArgument,
    NodeError,
    NotFound,
    ProvisionerError,
    Unavailable,
)
from provisioner.names import check_cell_path, check_dns_label, container_process_name
from provisioner.node.cgroups.base import EXECUTABLE_LEAF_PREFIX, mark_state, walk_bottom_up
from provisioner.node.oci.config import check_cgroups_path, runtime_config
from provisioner.node.oci.mounts import (
    OVERLAY_UNSAFE,
    mount_overlay,
    mountinfo,
    mounts_under,
    unmount,
)
from provisioner.node.process.shimspec import DEFAULT_PATH
from provisioner.pathnames import find_program

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["bundle_dir", "check_container_id", "container_command", "prepare_bundle",
           "remove_bundle", "remove_pod_dir", "remove_runc_cgroups", "runc_root",
           "runtime_config"]

PODS_DIR = "pods"
RUNC_DIR = "runc"
#: How long a shim waits for ``runc run`` to exit once its container is killed (it
#: deletes the container then, in a few ms); then runc is killed too.
RUNC_SETTLE_S = 1.0
ROOTFS, UPPER, WORK, CONFIG = "rootfs", "upper", "work", "config.json"
#: runc's own rule is [\w+-.]+ (which, as a range, also admits ','); ours is stricter.
_CONTAINER_ID_RE = re.compile(r"[A-Za-z0-9_+.-]{1,1024}")
_RUNC_TIMEOUT_S = 30.0
_LIVE_STATES = ("created", "running", "paused", "creating")


# --- paths -------------------------------------------------------------------------

def runc_root(state_dir: str) -> str:
    """runc's state directory (``runc --root``): ours, not /run/runc."""
    return os.path.join(state_dir, RUNC_DIR)


def _runc_state(state_dir: str, container_id: str) -> str:
    """The directory runc keeps for one container in its root while it knows it."""
    return os.path.join(runc_root(state_dir), container_id)


def pod_dir(state_dir: str, pod: str) -> str:
    return os.path.join(state_dir, PODS_DIR, check_dns_label(pod, what="pod name"))


def bundle_dir(state_dir: str, pod: str, container: str) -> str:
    """``<state_dir>/pods/<pod>/<container>``; both names must be DNS labels (UnsafeName
    otherwise), so the bundle stays inside the state directory."""
    return os.path.join(pod_dir(state_dir, pod),
                        check_dns_label(container, what="container name"))


def check_container_id(container_id: str) -> str:
    """A runc container id (e.g. ``<pod>.<container>``): 1-1024 of A-Z a-z 0-9 _ + . -,
    not ``.`` or ``..``; InvalidArgument otherwise."""
    if (not isinstance(container_id, str) or not _CONTAINER_ID_RE.fullmatch(container_id)
            or container_id in (".", "..")):
        raise InvalidArgument(f"container id {container_id!r} is not valid for runc "
                              "(1-1024 of A-Z a-z 0-9 _ + . -, not '.' or '..')")
    return container_id


# --- external programs -------------------------------------------------------------

def runc_binary() -> str:
    """The runc executable (looked up on the standard PATH); Unavailable if missing."""
    found = find_program("runc", DEFAULT_PATH)
    if found is None:
        raise Unavailable("runc is not installed (apt-get install runc): it runs containers")
    return found


def run_program(argv: list[str], what: str) -> str:
    """Run ARGV (a list: no shell ever sees our input); its stdout. NodeError naming
    WHAT with the program's stderr if it fails."""
    import subprocess  # (~1.5 ms: no runc runs on the way of most applies and destroys)

    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", timeout=_RUNC_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise NodeError(f"{what}: {argv[0]} did not finish within {_RUNC_TIMEOUT_S:g} s") \
            from exc
    except OSError as exc:
        raise NodeError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        why = done.stderr.strip() or done.stdout.strip() or "no message"
        raise NodeError(f"{what} failed (exit {done.returncode}): {why}")
    return done.stdout


def _runc(state_dir: str, *args: str, what: str) -> str:
    return run_program([runc_binary(), "--root", runc_root(state_dir), *args], what)


def _containers_of(state_dir: str, bundle: str) -> list[dict[str, Any]]:
    """runc's containers (``runc list``) whose bundle is BUNDLE."""
    try:
        if not os.listdir(runc_root(state_dir)):
            return []  # runc keeps a directory per container there: none, nothing to list
    except (FileNotFoundError, NotADirectoryError):
        return []
    for attempt in range(5):
        try:
            out = _runc(state_dir, "list", "--format", "json", what="listing runc containers")
            break
        except NodeError as exc:
            # runc list fails when another container's state goes while it lists (the
            # pods of one plan are freed in parallel): list again.
            if "no such file or directory" not in str(exc) or attempt == 4:
                raise
    try:
        listed = json.loads(out) or []
    except ValueError as exc:
        raise NodeError(f"runc list printed something that is not JSON: {out[:200]!r}") \
            from exc
    real = os.path.realpath(bundle)
    return [c for c in listed if isinstance(c, dict) and isinstance(c.get("bundle"), str)
            and os.path.realpath(c["bundle"]) == real]


def _delete_container(state_dir: str, container_id: str) -> None:
    _runc(state_dir, "delete", "--force", container_id,
          what=f"deleting runc container {container_id}")


# --- bundles -----------------------------------------------------------------------

def prepare_bundle(state_dir: str, pod: str, container: str, *, rootfs_lower: str,
                   args: list[str], env: list[str], cwd: str, cgroups_path: str,
                   hostname: str, uid: int = 0, gid: int = 0,
                   netns: str | None = None) -> str:
    """Make the container's bundle (see the module docstring); its path.

    ``netns``: the path of a network namespace to join (the pod's), else a new one.

    ``rootfs_lower``: the unpacked image (an absolute directory, never written to);
    ``cgroups_path``: runc's ``linux.cgroupsPath``, absolute under each hierarchy's
    mount, below the executable's leaf (``/<root>/<cell...>/_x.<name>/ctr``).
    Raises UnsafeName / InvalidArgument for bad names and values, NotFound if the image
    directory is missing, FailedPrecondition while a container of this bundle runs.
    """
    bundle = bundle_dir(state_dir, pod, container)
    config = runtime_config(args=args, env=env, cwd=cwd, cgroups_path=cgroups_path,
                            hostname=hostname, uid=uid, gid=gid, root=ROOTFS, netns=netns)
    lower = _check_lower(rootfs_lower)
    if OVERLAY_UNSAFE.search(bundle):
        raise InvalidArgument(f"state directory {state_dir!r}: a bundle path may not "
                              "contain ',', ':', '\\' or white space (overlay options)")
    if os.path.lexists(bundle):
        for ctr in _containers_of(state_dir, bundle):
            if ctr.get("status") in _LIVE_STATES:
                raise FailedPrecondition(
                    f"runc container {ctr.get('id')} of bundle {bundle} is "
                    f"{ctr.get('status')} (pid {ctr.get('pid')}); stop it first")
            _delete_container(state_dir, str(ctr.get("id")))
        _clear(bundle)
    os.makedirs(os.path.dirname(bundle), mode=0o700, exist_ok=True)
    os.mkdir(bundle, 0o700)
    try:
        rootfs, upper, work = (os.path.join(bundle, n) for n in (ROOTFS, UPPER, WORK))
        for d in (rootfs, upper, work):
            os.mkdir(d, 0o700)
        # The merged root directory *is* the upper one: give it the image root's mode
        # and owner, or a non-root container user could not even look up /bin.
        top = os.stat(lower)
        os.chown(upper, top.st_uid, top.st_gid)
        os.chmod(upper, top.st_mode & 0o7777)
        mount_overlay(lower, upper, work, rootfs)
        tmp = os.path.join(bundle, CONFIG + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=1)
        os.replace(tmp, os.path.join(bundle, CONFIG))
    except BaseException:
        with contextlib.suppress(Exception):
            _clear(bundle)
        raise
    return bundle


def _check_lower(rootfs_lower: str) -> str:
    if not isinstance(rootfs_lower, str) or not os.path.isabs(rootfs_lower):
        raise InvalidArgument(f"image root file system {rootfs_lower!r} is not an "
                              "absolute path")
    if OVERLAY_UNSAFE.search(rootfs_lower) or "\0" in rootfs_lower:
        raise InvalidArgument(f"image root file system {rootfs_lower!r}: the path may not "
                              "contain ',', ':', '\\' or white space (overlay options)")
    if not os.path.isdir(rootfs_lower):
        if os.path.lexists(rootfs_lower):
            raise InvalidArgument(f"image root file system {rootfs_lower} is not a directory")
        raise NotFound(f"image root file system {rootfs_lower} does not exist")
    return rootfs_lower


def _clear(bundle: str) -> None:
    """Detach every mount at or below BUNDLE (mounts.unmount) and remove it."""
    try:
        if not os.path.isdir(bundle) or os.path.islink(bundle):
            os.unlink(bundle)  # not ours to follow
            return
        for mount_point in mounts_under(bundle):
            unmount(mount_point)
        left = mounts_under(bundle)
        if left:
            raise NodeError(f"cannot remove bundle {bundle}: {left[0]} is still mounted")
        import shutil  # (with bz2 and lzma, ~2 ms: only where a bundle is removed)

        shutil.rmtree(bundle)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise NodeError(f"cannot remove bundle {bundle}: {exc}") from exc


def remove_bundle(state_dir: str, pod: str, container: str) -> None:
    """Delete the runc container of the bundle (``runc delete --force``: it is killed
    if it still runs), unmount its root file system and remove the bundle; what is
    missing is fine. Also removes the (empty) cgroups runc made for it in hierarchies
    the provisioner does not manage (devices, blkio...: see _prune_cgroups).

    The runc container's id is ``<pod>.<container>`` (the process name the pods module
    runs it under, :func:`container_command`), and runc keeps a directory per container
    in its root: without one under that id, no runc is run at all."""
    bundle = bundle_dir(state_dir, pod, container)
    cgroups_path = _configured_cgroups_path(bundle)
    container_id = container_process_name(pod, container)
    if os.path.lexists(_runc_state(state_dir, container_id)):
        _delete_container(state_dir, container_id)
    if cgroups_path is not None:
        _prune_cgroups(cgroups_path)
    if os.path.lexists(bundle):
        _clear(bundle)


def remove_pod_dir(state_dir: str, pod: str) -> bool:
    """Remove ``<state_dir>/pods/<pod>`` if it is empty; True if it is gone."""
    path = pod_dir(state_dir, pod)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise NodeError(f"cannot remove {path}: {exc.strerror}") from exc
    return True


def _configured_cgroups_path(bundle: str) -> str | None:
    try:
        with open(os.path.join(bundle, CONFIG), encoding="utf-8") as f:
            path = json.load(f)["linux"]["cgroupsPath"]
        return check_cgroups_path(path)
    except (OSError, ValueError, KeyError, TypeError, ProvisionerError):
        return None


def _prune_cgroups(cgroups_path: str) -> None:
    """Remove the container's cgroup and the leaf-level directory above it in every
    hierarchy where runc made them and the provisioner did not (unmarked): runc creates
    the whole path in every hierarchy it knows (devices, blkio, cpuacct, name=systemd,
    the unified one of a hybrid layout) but deletes only the last directory. Marked
    directories (the provisioner's leaf) are its cgroup driver's; busy ones (processes
    or sub-cgroups) and the cell levels above (shared with other executables) stay."""
    rel = cgroups_path.strip("/")
    seen: set[str] = set()
    for root, mount_point, fstype in mountinfo():
        if fstype not in ("cgroup", "cgroup2") or root != "/" or mount_point in seen:
            continue
        seen.add(mount_point)
        ctr = os.path.join(mount_point, rel)
        leaf = os.path.dirname(ctr)
        for d in [ctr, *([leaf] if os.path.basename(leaf).startswith(EXECUTABLE_LEAF_PREFIX)
                         else [])]:
            try:
                if mark_state(d):
                    break
                os.rmdir(d)
            except FileNotFoundError:
                continue
            except (OSError, ProvisionerError):
                break


def remove_runc_cgroups(root_name: str, cell: str = "") -> None:
    """Remove the empty cgroup directories runc made under ``<mount>/<root_name>`` in
    the hierarchies the provisioner does not manage (its own root there carries the
    ownership mark and is left to the cgroup driver). :func:`remove_bundle` leaves the
    cell levels there (shared by the containers of a cell); with ``cell`` only that
    cell's directories go (when the cell is freed: a stat per hierarchy when runc made
    nothing there), without it everything below the root (for an uninstall or a
    teardown, when no container of the root is starting). Busy directories stay."""
    check_dns_label(root_name, what="cgroup root name")
    parts = check_cell_path(cell).split("/") if cell else []
    for mount_point in cgroup_mounts():
        top = os.path.join(mount_point, root_name, *parts)
        if not os.path.isdir(top):
            continue
        with contextlib.suppress(OSError, ProvisionerError):
            if mark_state(top) is not False:
                continue  # the provisioner's own directory: the cgroup driver's
            for path in walk_bottom_up(top):
                with contextlib.suppress(OSError):
                    os.rmdir(path)


_cgroup_mounts: tuple[str, ...] | None = None


def cgroup_mounts() -> tuple[str, ...]:
    """Mount points of every cgroup hierarchy (read once: they do not move)."""
    global _cgroup_mounts
    if _cgroup_mounts is None:
        seen: dict[str, None] = {}
        for root, mount_point, fstype in mountinfo():
            if fstype in ("cgroup", "cgroup2") and root == "/":
                seen.setdefault(mount_point)
        _cgroup_mounts = tuple(seen)
    return _cgroup_mounts


# --- the command ---------------------------------------------------------------------

#: runc's own log in a bundle (JSON lines): an ``error`` entry there means runc could
#: not start the container (its command does not exist, say), not that it exited.
RUNC_LOG = "runc.log"


def container_command(state_dir: str, bundle: str, container_id: str) -> str:
    """The shell command a shim runs for the container: clear what a SIGKILLed runc may
    have left under this id and empty runc's log of the last run, then ``exec runc run`` in
    the foreground (its own messages also in ``<bundle>/runc.log``)."""
    check_container_id(container_id)
    if not isinstance(bundle, str) or not os.path.isabs(bundle) or "\0" in bundle:
        raise InvalidArgument(f"bundle {bundle!r} is not an absolute path")
    import shlex  # (only to start a container: destroy never needs it)

    runc = shlex.quote(runc_binary())
    root = shlex.quote(runc_root(state_dir))
    ident = shlex.quote(container_id)
    log = shlex.quote(os.path.join(bundle, RUNC_LOG))
    # no runc state under this id: nothing to delete, and no second runc process to
    # wait for (~5 ms); the last run's log is emptied by the shell itself (no rm: ~2 ms)
    left = shlex.quote(_runc_state(state_dir, container_id))
    return (f"[ ! -e {left} ] || {runc} --root {root} delete --force {ident} "
            f">/dev/null 2>&1; : > {log}; "
            f"exec {runc} --root {root} --log {log} --log-format json run "
            f"--bundle {shlex.quote(bundle)} {ident}")


def runc_failure(bundle: str) -> str:
    """runc's reason when it could not start the container of ``bundle`` (the last
    ``error`` entry of its log), or "" when it did (or left no log)."""
    try:
        with open(os.path.join(bundle, RUNC_LOG), "rb") as f:
            lines = f.read(1 << 20).decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            return str(entry.get("msg", "")).strip()
    return ""
