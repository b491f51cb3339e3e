"""The cgroup driver interface and the tree logic shared by cgroup v1 and v2.

A driver manages one subtree, the *root* (``<mount>/<root_name>``), in each hierarchy
it uses: one on cgroup v2, several on v1 (cpu, cpuset, pids, freezer, memory). A cell
``a/b`` is ``<root>/a/b`` in every hierarchy; processes live only in leaves
``<cell>/_x.<executable>`` and ``<cell>/_holder``. Every directory created is marked with
the ``trusted.provisioner.owner`` xattr, and nothing unmarked is ever changed or removed.

Subclasses supply the limit files (:meth:`_write_limits`, :meth:`_kernel_limits`) and
any per-directory preparation (v1 cpuset needs cpus/mems before a task may join).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence

from provisioner.errors import AlreadyExists, FailedPrecondition, NodeError, NotFound, NotOwned
from provisioner.lazylog import LazyLogger
from provisioner.model import CellLimits
from provisioner.names import DNS_LABEL_RE, cell_parent, check_dns_label
from provisioner.node.cgroups.base import (
    ParentMissing,
    check_cell,
    check_leaf_name,
    is_marked,
    make_owned_dir,
    mark_state,
    read_procs,
    reconcile_limits,
    record_limits,
    recorded_limits,
    remove_dir,
    same_limits,
    staging_is_dead,
    subdirs,
    sweep_staging,
    validate_limits,
    walk_bottom_up,
)
from provisioner.node.types import LeafCgroup
from provisioner.records import replace

log = LazyLogger(__name__)


class CgroupDriver(ABC):
    """Cells as cgroup directories. ``cell`` is a cell path; ``""`` is the root cell."""

    #: True when the cpu controller (and so a cell's limits) is on cgroup v2.
    cgroup_v2: bool

    #: Directories are made under a staging name and renamed into place (see
    #: make_owned_dir); False where the cgroupfs refuses rename (v2).
    _staged = True

    def __init__(self, hierarchies: Sequence[tuple[str, str]], root_name: str) -> None:
        """``hierarchies``: (label, mount path) pairs; the first one is the primary."""
        self.root_name = check_dns_label(root_name, what="cgroup root name")
        self._hierarchies = tuple(hierarchies)
        self._roots = tuple(os.path.join(mount, self.root_name) for _, mount in hierarchies)
        # ensure_root has run. Afterwards a root that vanished is noticed by the mkdir
        # below it failing (ENOENT), and re-made then, not looked for before each create.
        self._root_ready = False

    # --- paths -------------------------------------------------------------------

    def cell_dirs(self, cell: str) -> list[str]:
        """The cell's directory in every hierarchy (``cell`` must already be checked)."""
        # A checked cell path is relative, '/'-separated, without '.' or '..' parts:
        # concatenation is os.path.join without its cost (this runs many times per call).
        if not cell:
            return list(self._roots)
        return [f"{root}/{cell}" for root in self._roots]

    def _parent_dirs(self, cell: str) -> list[str]:
        return [os.path.dirname(d) for d in self.cell_dirs(cell)]

    def _leaf_dirs(self, cell: str, leaf_name: str) -> list[str]:
        return [os.path.join(d, leaf_name) for d in self.cell_dirs(cell)]

    # --- hooks -------------------------------------------------------------------

    def _check_supported(self, limits: CellLimits) -> None:  # noqa: B027 - optional hook
        """Raise if this node cannot apply ``limits`` at all (before anything is made)."""

    def _prepare_dir(self, index: int, path: str,  # noqa: B027 - optional hook
                     fresh: bool = False) -> None:
        """Make a directory of hierarchy ``index`` usable (v1 cpuset: cpus/mems);
        ``fresh``: it was just created (so it holds the kernel's initial values)."""

    @abstractmethod
    def _write_limits(self, cell: str, limits: CellLimits, fresh: bool = False) -> None:
        """Write every limit file of the cell; an unset limit gets the kernel default.
        ``fresh``: the cell was just created (nothing below it, files at their initial
        values), which lets a driver skip read-backs and cascades."""

    def _fields_of(self, index: int) -> tuple[str, ...]:
        """The CellLimits fields held by the files of hierarchy ``index``."""
        return ()

    @abstractmethod
    def _kernel_limits(self, cell: str) -> tuple[CellLimits, CellLimits]:
        """(what the files hold, what they would hold had nothing been asked)."""

    @abstractmethod
    def _leaf_cgroup(self, dirs: list[str]) -> LeafCgroup:
        """Wrap a leaf's directories."""

    # --- root --------------------------------------------------------------------

    def ensure_root(self) -> None:
        """Create (or adopt) the root in every hierarchy; NotOwned if someone else made it."""
        for index, path in enumerate(self.cell_dirs("")):
            self._prepare_dir(index, path, make_owned_dir(path, staged=self._staged))
        self._root_ready = True

    def _require_root(self) -> None:
        """ensure_root, unless it has run (a root removed since is re-made on demand:
        see _make_dir)."""
        if not self._root_ready:
            self.ensure_root()

    def remove_root(self) -> bool:
        """Remove the whole root subtree (for uninstall and tests): same rules as remove."""
        return self._remove_tree("")

    def sweep_staging(self) -> list[str]:
        """Remove the staging directories of dead runs (see make_owned_dir: a creation
        killed between mkdir and rename leaves an empty ``.provisioner-new.*``) in every
        hierarchy - the root's own, beside it, and those in the root and in any cell.
        Those of live threads (a concurrent apply, a daemon) are left alone. Returns
        the paths removed. (``list_cells(sweep=...)`` does the same on its walk.)"""
        swept: list[str] = []
        self.list_cells(sweep=swept)
        return swept

    def _remove_staging(self, path: str, swept: list[str]) -> None:
        try:
            remove_dir(path)
        except NodeError as exc:  # never in the way of what called the sweep
            log.warning("%s", exc)
            return
        swept.append(path)

    # --- cells -------------------------------------------------------------------

    def exists(self, cell: str) -> bool:
        """True if any directory of the cell exists in any hierarchy used."""
        cell = check_cell(cell, allow_root=True)
        return any(os.path.isdir(d) for d in self.cell_dirs(cell))

    def is_owned(self, cell: str) -> bool:
        """True if the cell exists and every one of its directories carries our mark."""
        return self.ownership(cell) == (True, True)

    def ownership(self, cell: str) -> tuple[bool, bool]:
        """(exists, owned): whether any directory of the cell exists, and whether every
        existing one carries our mark - one getxattr per hierarchy."""
        cell = check_cell(cell, allow_root=True)
        marks = [m for m in map(mark_state, self.cell_dirs(cell)) if m is not None]
        return bool(marks), bool(marks) and all(marks)

    def create(self, cell: str, limits: CellLimits) -> bool:
        """Create the cell with ``limits``; True if created, False if it already was so.

        The parent cell must exist (NotFound); the root is created on demand. An existing
        cell we own with the same limits is left alone (directories missing after a crash
        are re-made); with other limits it is AlreadyExists (use :meth:`update`). An
        existing cgroup we did not create is NotOwned. A failure removes what this call
        made.
        """
        cell = check_cell(cell, allow_root=False)
        validate_limits(limits)
        self._check_supported(limits)
        parent = cell_parent(cell)
        if parent is None:
            self._require_root()
        else:
            exists, owned = self.ownership(parent)
            if not exists:
                raise NotFound(f"parent cell {parent!r} of {cell!r} does not exist")
            if not owned:
                raise NotOwned(f"parent cell {parent!r} of {cell!r} was not created by the "
                               "provisioner")
        dirs = self.cell_dirs(cell)
        # One getxattr tells a new cell (the usual case: then the directories are made
        # without looking first) from an existing one (each is looked at first).
        first = mark_state(dirs[0])
        if first is False:
            raise NotOwned(f"cell {cell!r} exists as a cgroup the provisioner did not "
                           f"create ({self._unowned(cell)})")
        # Directories missing after a crash are re-made; a foreign one in any hierarchy
        # is NotOwned, and what this call made is removed again.
        made = self._make_dirs(dirs, new=first is None)
        if len(made) < len(dirs):  # it existed: adopt it if the limits match
            current = self.read_limits(cell)
            # A hierarchy re-made just now holds the kernel's initial values, not the
            # cell's: its limits are judged by the hierarchies that survived, then given.
            remade = [f for i, d in enumerate(dirs) if d in made for f in self._fields_of(i)]
            current = replace(current, **{f: getattr(limits, f) for f in remade})
            if not same_limits(current, limits):
                raise AlreadyExists(f"cell {cell!r} exists with limits {current}, "
                                    f"not {limits}")
            if remade or dirs[0] in made:  # (the limits xattr is on dirs[0])
                self._write_limits(cell, limits)
                record_limits(dirs[0], limits)
            return False
        try:
            self._write_limits(cell, limits, fresh=True)
            record_limits(dirs[0], limits)
        except BaseException:
            for path in reversed(made):
                remove_dir(path)
            raise
        return True

    def update(self, cell: str, limits: CellLimits) -> None:
        """Change the limits of an existing cell in place; processes inside stay put.

        If the kernel refuses a value, the previous limits are written back (best
        effort) and the error names the file and value.
        """
        cell = check_cell(cell, allow_root=False)
        validate_limits(limits)
        self._check_supported(limits)
        self._require_owned(cell)
        self._make_dirs(self.cell_dirs(cell), new=False)
        previous = self.read_limits(cell)
        try:
            self._write_limits(cell, limits)
        except BaseException:
            # The first error is the one to report; restoring is best effort.
            with contextlib.suppress(Exception):
                self._write_limits(cell, previous)
            raise
        record_limits(self.cell_dirs(cell)[0], limits)

    def read_limits(self, cell: str) -> CellLimits:
        """The cell's limits as read back from the kernel files (drift shows up here)."""
        cell = check_cell(cell, allow_root=True)
        if not self.exists(cell):
            raise NotFound(f"cell {cell!r} does not exist")
        kernel, default = self._kernel_limits(cell)
        return reconcile_limits(kernel, default, recorded_limits(self.cell_dirs(cell)[0]))

    def list_cells(self, sweep: list[str] | None = None) -> list[str]:
        """Paths of every owned cell under the root, parents before children.

        With ``sweep`` (a list), the walk also removes the staging directories of dead
        runs it meets, and those beside the root, and appends their paths to it (see
        :meth:`sweep_staging`): one walk for reconcile, which needs both.
        """
        found: set[str] = set()
        for (_, mount), root in zip(self._hierarchies, self._roots, strict=True):
            if sweep is not None:
                sweep += sweep_staging(mount, only=self.root_name)
            self._collect(root, "", found, sweep)
        return sorted(found, key=lambda c: (c.count("/"), c))

    def _collect(self, path: str, prefix: str, found: set[str],
                 sweep: list[str] | None) -> None:
        for name in subdirs(path):
            child = os.path.join(path, name)
            # Leaves start with '_', staging names with '.', neither of which a DNS label
            # can; unmarked dirs are not ours.
            if DNS_LABEL_RE.fullmatch(name):
                if is_marked(child):
                    cell = f"{prefix}/{name}" if prefix else name
                    found.add(cell)
                    self._collect(child, cell, found, sweep)
            elif sweep is not None and staging_is_dead(name):
                self._remove_staging(child, sweep)

    def pids(self, cell: str) -> set[int]:
        """Every pid in the cell's subtree (all its leaves and nested cells)."""
        cell = check_cell(cell, allow_root=True)
        out: set[int] = set()
        for top in self.cell_dirs(cell):
            for path in walk_bottom_up(top):
                out |= read_procs(os.path.join(path, "cgroup.procs"))
        return out

    def remove(self, cell: str) -> bool:
        """Remove the cell and everything below it, deepest first.

        False if it did not exist. Refuses (FailedPrecondition, naming the pids) while any
        process remains, and (NotOwned) if any directory in it is not ours.
        """
        cell = check_cell(cell, allow_root=False)
        return self._remove_tree(cell)

    def _remove_tree(self, cell: str) -> bool:
        # One walk per hierarchy serves the ownership check, the process check and the
        # removal order (hierarchies where the cell is missing are skipped). The top's
        # getxattr answers both "is it there" and "is it ours".
        trees: list[list[str]] = []
        for top in self.cell_dirs(cell):
            mark = mark_state(top)
            if mark is None:
                continue
            tree = walk_bottom_up(top)
            for path, owned in zip(tree, [*map(is_marked, tree[:-1]), mark], strict=True):
                if not owned:
                    raise NotOwned(f"cannot remove cell {cell!r}: cgroup {path} was not "
                                   "created by the provisioner")
            trees.append(tree)
        if not trees:
            return False
        # Every directory's processes are listed before any is removed: a refusal
        # leaves the whole tree as it was (a nested cell half removed would lose its
        # limits).
        left: set[int] = set()
        for tree in trees:
            for path in tree:
                left |= read_procs(os.path.join(path, "cgroup.procs"))
        if left:
            raise FailedPrecondition(
                f"cell {cell!r} still has processes: {', '.join(map(str, sorted(left)))}")
        for tree in trees:
            for path in tree:
                remove_dir(path)
        return True

    # --- leaves ------------------------------------------------------------------

    def create_leaf(self, cell: str, leaf_name: str) -> LeafCgroup:
        """Create (or adopt) a leaf in the cell, ready for tasks; see :func:`executable_leaf`."""
        return self.make_leaf(cell, leaf_name)[0]

    def make_leaf(self, cell: str, leaf_name: str) -> tuple[LeafCgroup, bool]:
        """:meth:`create_leaf`, and whether every directory of the leaf was made by this
        call (then it holds no process: an adopted one may hold the remains of one)."""
        cell = check_cell(cell, allow_root=True)
        leaf_name = check_leaf_name(leaf_name)
        if cell == "":
            self._require_root()
        else:
            marks = [mark_state(d) for d in self.cell_dirs(cell)]
            if all(m is None for m in marks):
                raise NotFound(f"cell {cell!r} does not exist")
            if False in marks:
                raise NotOwned(f"cell {cell!r} was not created by the provisioner "
                               f"({self._unowned(cell)})")
            if None in marks:
                self._make_dirs(self.cell_dirs(cell), new=False)  # re-made after a crash
        dirs = self._leaf_dirs(cell, leaf_name)
        # As for a cell: one getxattr tells a new leaf from one to adopt (an adopted leaf
        # is as good as a new one). Leaves get the same staging and mark as cells: an
        # unmarked leaf left by a crash would block the cell's removal.
        made = self._make_dirs(dirs, new=mark_state(dirs[0]) is None)
        return self._leaf_cgroup(dirs), len(made) == len(dirs)

    def leaf(self, cell: str, leaf_name: str) -> LeafCgroup:
        """An existing leaf (NotFound if any of its directories is missing)."""
        cell = check_cell(cell, allow_root=True)
        leaf_name = check_leaf_name(leaf_name)
        dirs = self._leaf_dirs(cell, leaf_name)
        missing = [d for d in dirs if not os.path.isdir(d)]
        if missing:
            raise NotFound(f"leaf {leaf_name!r} of cell {cell!r} does not exist ({missing[0]})")
        return self._leaf_cgroup(dirs)

    def remove_leaf(self, cell: str, leaf_name: str) -> bool:
        """Remove a leaf; False if absent. Refuses while it holds processes.

        The usual leaf is empty, so each directory is simply removed; only one the
        kernel finds busy has the processes of the rest listed. A process that joined
        its leaf did so in hierarchy order, as rmdir goes, so a refusal normally leaves
        the leaf whole; one placed into some hierarchies only (by hand) may find the
        directories before its own removed - still ours, re-made by create_leaf.

        Processes in sub-cgroups of the leaf count as the leaf's (a container runtime
        puts its container in ``<leaf>/ctr``). Sub-cgroups left empty inside our own
        marked leaf (by a runc killed before it could delete its container) are removed
        deepest first, once no directory of the rest of the leaf holds a process.
        """
        cell = check_cell(cell, allow_root=True)
        leaf_name = check_leaf_name(leaf_name)
        dirs: list[str] = []
        for d in self._leaf_dirs(cell, leaf_name):
            mark = mark_state(d)
            if mark is False:
                raise NotOwned(f"leaf {d} was not created by the provisioner")
            if mark:
                dirs.append(d)
        if not dirs:
            return False
        for index, d in enumerate(dirs):
            try:
                os.rmdir(d)
                continue
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise NodeError(f"cannot remove cgroup {d}: {exc.strerror}") from exc
            # Busy: processes (listed with those of the rest, sub-cgroups included),
            # sub-cgroups, or a task that has just exited.
            trees = [walk_bottom_up(rest) for rest in dirs[index:]]
            left: set[int] = set()
            for tree in trees:
                for path in tree:
                    left |= read_procs(os.path.join(path, "cgroup.procs"))
            if left:
                raise FailedPrecondition(f"leaf {leaf_name!r} of cell {cell!r} still has "
                                         f"processes: {', '.join(map(str, sorted(left)))}")
            for path in trees[0]:  # its empty sub-cgroups deepest first, then d itself
                remove_dir(path)  # (busy with a task that has just exited: retried briefly)
        return True

    # --- helpers -----------------------------------------------------------------

    def _make_dirs(self, dirs: list[str], new: bool) -> list[str]:
        """Create and prepare every directory missing; return those made (undone on error).

        ``new``: the directories are expected not to exist, so each is created without
        being looked at first (one that does exist is still found, and judged).
        """
        made: list[str] = []
        tid = threading.get_native_id()
        try:
            for index, path in enumerate(dirs):
                fresh = self._make_dir(index, path, new, tid)
                if fresh:
                    made.append(path)
                self._prepare_dir(index, path, fresh)
        except BaseException:
            for path in reversed(made):
                remove_dir(path)
            raise
        return made

    def _make_dir(self, index: int, path: str, new: bool, tid: int) -> bool:
        try:
            return make_owned_dir(path, staged=self._staged, probe=not new, tid=tid)
        except ParentMissing:
            if os.path.dirname(path) != self._roots[index]:
                raise
        # The root went away since ensure_root (uninstall, a test): made again.
        self.ensure_root()
        return make_owned_dir(path, staged=self._staged, probe=not new, tid=tid)

    def _require_owned(self, cell: str) -> None:
        exists, owned = self.ownership(cell)
        if not exists:
            raise NotFound(f"cell {cell!r} does not exist")
        if not owned:
            raise NotOwned(f"cell {cell!r} was not created by the provisioner "
                           f"({self._unowned(cell)})")

    def _unowned(self, cell: str) -> str:
        bad = [d for d in self.cell_dirs(cell) if os.path.isdir(d) and not is_marked(d)]
        return f"{bad[0]} has no ownership mark" if bad else "ownership mark missing"
