"""compile_plan(desired, observed) -> Plan. Pure: no I/O, no clock, no randomness.

Decides, for every resource, whether it is created, replaced, updated in place,
restarted after drift, removed or left alone (and why), cascades replacements and
removals to what runs inside a cell, then orders the steps by their dependencies:
parents before children, cells before what runs in them, ``dependsOn`` targets first;
removals in exactly the reverse order, and every removal of a resource before its
re-creation.
"""

from __future__ import annotations

import itertools

from provisioner.errors import FailedPrecondition
from provisioner.model import (
    CellSpec,
    DesiredState,
    DriverSpec,
    ExecutableSpec,
    Kind,
    PersistentExecutableSpec,
    PodSpec,
    Ref,
    ResourceSpec,
    RestartPolicy,
    ref_of,
)
from provisioner.names import cell_parent
from provisioner.plan.diff import describe_changes, in_place_change, needs_replacement
from provisioner.plan.graph import stable_toposort
from provisioner.plan.steps import Action, Change, NoOp, Plan, Step
from provisioner.podnet import host_port_clashes
from provisioner.records import field, record
from provisioner.state import NodeState, ObservedResource, ProcessPhase

_DOWN = {Action.STOP, Action.FREE, Action.DELETE}


def requirements(spec: ResourceSpec) -> list[Ref]:
    """What must exist first: dependsOn, the parent cell, the cell a process runs in."""
    refs = list(spec.depends_on)
    if isinstance(spec, CellSpec):
        parent = cell_parent(spec.name)
        if parent:
            refs.append(Ref(Kind.CELL, parent))
    elif isinstance(spec, ExecutableSpec | PodSpec) and spec.cell:
        refs.append(Ref(Kind.CELL, spec.cell))
    return refs


def _inside(spec: ResourceSpec, cell: str) -> bool:
    """Whether ``spec`` lives in cell ``cell`` or in a cell nested in it."""
    if isinstance(spec, CellSpec):
        where = cell_parent(spec.name) or ""
    elif isinstance(spec, ExecutableSpec | PodSpec):
        where = spec.cell
    else:
        return False
    return where == cell or where.startswith(cell + "/")


@record(frozen=False)
class _Decision:
    change: Change | None = None  # None: left alone
    reason: str = ""
    update: str = ""  # "limits" | "enable" | "disable" | "record" for in-place updates
    restart: bool = False  # start again after drift


@record(frozen=False)
class _Draft:
    action: Action
    ref: Ref
    reason: str
    change: Change
    spec: ResourceSpec | None
    requires: set[int] = field(default_factory=set)


class _Compiler:
    def __init__(
        self, desired: DesiredState, observed: NodeState, prune: bool, destroy: bool
    ) -> None:
        self.desired = {} if destroy else desired.by_ref()
        self.order = [] if destroy else [ref_of(s) for s in desired.resources]
        self.observed = observed.by_ref()
        self.manifest_set = desired.manifest_set
        self.prune = prune or destroy
        self.destroy = destroy
        self.decisions: dict[Ref, _Decision] = {}
        self.unchanged: list[NoOp] = []
        self.would_prune: list[NoOp] = []

    # -- deciding ---------------------------------------------------------------
    def decide(self) -> None:
        conflicts = []
        for ref in self.order:
            obs = self.observed.get(ref)
            if obs and obs.manifest_set not in ("", self.manifest_set):
                conflicts.append(f"{ref} belongs to manifest set {obs.manifest_set!r}")
                continue
            self.decisions[ref] = self._decide_desired(self.desired[ref], obs)
        if conflicts:
            raise FailedPrecondition(
                "resources are managed by another manifest set (use that set's name, or "
                "remove them there first): " + "; ".join(conflicts)
            )
        for ref, obs in self.observed.items():
            if ref in self.desired or obs.manifest_set != self.manifest_set:
                continue
            if self.prune:
                reason = "destroy requested" if self.destroy else "pruned: no longer declared"
                self.decisions[ref] = _Decision(Change.DELETE, reason)
            else:
                self.would_prune.append(NoOp(ref, "no longer declared"))
        self._cascade()
        self._check_host_ports()

    def _check_host_ports(self) -> None:
        """Refuse a host port that two pods would publish once the plan ran: one
        desired, the other one the node keeps (of another manifest set, or not pruned)."""
        kept = [obs.spec for ref, obs in self.observed.items()
                if isinstance(obs.spec, PodSpec) and ref not in self.desired
                and (ref not in self.decisions
                     or self.decisions[ref].change is not Change.DELETE)]
        wanted = [s for s in self.desired.values() if isinstance(s, PodSpec)]
        sets = {ref.name: obs.manifest_set for ref, obs in self.observed.items()
                if ref.kind is Kind.POD}
        clashes = [
            f"host port {port}/{protocol} of Pod/{second} is published by Pod/{first}"
            + (f" (manifest set {sets[first]!r}), which stays"
               if first not in {s.name for s in wanted} else "")
            for port, protocol, first, second in host_port_clashes([*kept, *wanted])]
        if clashes:
            raise FailedPrecondition("two pods cannot publish one host port: "
                                     + "; ".join(clashes))

    def _decide_desired(self, spec: ResourceSpec, obs: ObservedResource | None) -> _Decision:
        if obs is None:
            return _Decision(Change.CREATE, "created")
        adopt = f"adopted into manifest set {self.manifest_set!r}" if not obs.manifest_set else ""
        if not obs.present:
            what = "cgroup missing" if spec.kind is Kind.CELL else "missing"
            return _Decision(Change.CREATE, f"drift: {what}, re-created")
        if needs_replacement(obs.spec, spec):
            return _Decision(Change.REPLACE, f"spec changed: {describe_changes(obs.spec, spec)}")
        if in_place_change(obs.spec, spec):
            update = (
                "limits"
                if isinstance(spec, CellSpec)
                else (
                    "enable"
                    if isinstance(spec, PersistentExecutableSpec) and spec.enabled
                    else "disable"
                )
            )
            return _Decision(
                Change.UPDATE,
                f"spec changed: {describe_changes(obs.spec, spec)}" + " (in place)",
                update=update,
            )
        drift = _process_drift(spec, obs)
        if drift:
            return _Decision(Change.CREATE, drift, restart=True)
        if obs.spec != spec or adopt:
            changes = describe_changes(obs.spec, spec)
            words = [f"spec changed: {changes}" if changes else "", adopt]
            reason = "; ".join(w for w in words if w) + " (nothing to change on the node)"
            return _Decision(Change.UPDATE, reason, update="record")
        return _Decision(None, _steady_reason(obs))

    def _cascade(self) -> None:
        """A replaced or removed cell takes down everything inside it."""
        changed = True
        while changed:
            changed = False
            for cell_ref, decision in list(self.decisions.items()):
                if cell_ref.kind is not Kind.CELL or decision.change not in (
                    Change.REPLACE,
                    Change.DELETE,
                ):
                    continue
                for ref, obs in self.observed.items():
                    if ref == cell_ref or not _inside(obs.spec, cell_ref.name):
                        continue
                    current = self.decisions.get(ref)
                    if current and current.change in (Change.REPLACE, Change.DELETE):
                        continue
                    verb = "replaced" if decision.change is Change.REPLACE else "removed"
                    if obs.manifest_set not in ("", self.manifest_set):
                        # Never cascaded into another set (a per-resource set's
                        # executable in this set's cell): that set removes it.
                        raise FailedPrecondition(
                            f"{cell_ref} must be {verb} but {ref} of manifest set "
                            f"{obs.manifest_set!r} runs in it: remove it there first"
                        )
                    if ref not in self.desired:
                        raise FailedPrecondition(
                            f"{cell_ref} must be replaced but {ref}, which is not declared, "
                            "runs in it: declare it, or apply with --prune"
                        )
                    self.decisions[ref] = _Decision(
                        Change.REPLACE, f"{cell_ref} it runs in is {verb}"
                    )
                    changed = True

    # -- emitting ---------------------------------------------------------------
    def emit(self) -> list[_Draft]:
        drafts: list[_Draft] = []
        downs: dict[Ref, list[int]] = {}
        ups: dict[Ref, list[int]] = {}

        def add(
            bucket: dict[Ref, list[int]],
            action: Action,
            ref: Ref,
            reason: str,
            change: Change,
            spec: ResourceSpec | None,
        ) -> None:
            bucket.setdefault(ref, []).append(len(drafts))
            drafts.append(_Draft(action, ref, reason, change, spec))

        # Removals first, dependents before what they depend on (reverse declaration).
        removal_order = [r for r in reversed(self._known_order()) if self._goes_down(r)]
        for ref in removal_order:
            decision, obs = self.decisions[ref], self.observed[ref]
            for action in _down_actions(obs.spec, decision.change):
                add(downs, action, ref, decision.reason, decision.change or Change.DELETE, obs.spec)
        for ref in self.order:
            decision = self.decisions[ref]
            spec = self.desired[ref]
            if decision.change is None:
                self.unchanged.append(NoOp(ref, decision.reason))
                continue
            for action in _up_actions(spec, decision):
                add(ups, action, ref, decision.reason, decision.change, spec)
        self._link(drafts, downs, ups)
        return drafts

    def _known_order(self) -> list[Ref]:
        extra = [r for r in self.observed if r not in self.desired]
        return self.order + sorted(extra, key=lambda r: (r.kind.value, r.name))

    def _goes_down(self, ref: Ref) -> bool:
        decision = self.decisions.get(ref)
        return bool(
            decision and decision.change in (Change.REPLACE, Change.DELETE) and ref in self.observed
        )

    def _link(
        self, drafts: list[_Draft], downs: dict[Ref, list[int]], ups: dict[Ref, list[int]]
    ) -> None:
        def chain(indexes: list[int]) -> None:
            for before, after in itertools.pairwise(indexes):
                drafts[after].requires.add(before)

        for ref in set(downs) | set(ups):
            chain(downs.get(ref, []) + ups.get(ref, []))
        for ref, indexes in ups.items():
            for need in requirements(self.desired[ref]):
                if need in ups:
                    drafts[indexes[0]].requires.add(ups[need][-1])
        for ref, indexes in downs.items():
            for need in requirements(self.observed[ref].spec):
                if need in downs:
                    drafts[downs[need][0]].requires.add(indexes[-1])
        # A pod that takes over a host port waits for the free of the pod giving it up
        # (steps may run in parallel).
        for ref, indexes in ups.items():
            wanted = _published(self.desired[ref])
            for gone, down in downs.items():
                if gone != ref and wanted & _published(self.observed[gone].spec):
                    drafts[indexes[0]].requires.add(down[-1])

    def build(self, generation: int) -> Plan:
        self.decide()
        drafts = self.emit()
        edges = [(before, i) for i, d in enumerate(drafts) for before in d.requires]
        order = stable_toposort(len(drafts), edges)
        position = {old: new for new, old in enumerate(order)}
        steps = tuple(
            Step(
                d.action,
                d.ref,
                d.reason,
                d.change,
                d.spec,
                tuple(sorted(position[r] for r in d.requires)),
            )
            for d in (drafts[i] for i in order)
        )
        return Plan(
            generation, self.manifest_set, steps, tuple(self.unchanged), tuple(self.would_prune)
        )


def _published(spec: ResourceSpec) -> set[tuple[int, str]]:
    """The host ports (and protocols) a pod publishes; none for other kinds."""
    if not isinstance(spec, PodSpec):
        return set()
    return {(port, protocol.value) for port, protocol, _ in spec.host_ports()}


def _process_drift(spec: ResourceSpec, obs: ObservedResource) -> str:
    if not isinstance(spec, ExecutableSpec | PodSpec) or obs.process is None:
        return ""
    process = obs.process
    if process.phase in (ProcessPhase.RUNNING, ProcessPhase.BACKOFF):
        return ""
    if process.phase is ProcessPhase.EXITED:
        completed = process.exit_code == 0 and not process.exit_signal
        if completed and spec.restart_policy is RestartPolicy.NEVER:
            return ""
        return f"drift: process {process.describe_exit()}"
    if process.phase is ProcessPhase.STOPPED:
        return "drift: process was stopped"
    if process.phase is ProcessPhase.FAILED:
        return "drift: process failed to start"
    return "not started yet"


def _steady_reason(obs: ObservedResource) -> str:
    process = obs.process
    if process is None:
        return "unchanged"
    if process.phase is ProcessPhase.RUNNING:
        return f"unchanged, running (pid {process.pid})"
    if process.phase is ProcessPhase.BACKOFF:
        return f"unchanged, restarting after it {process.describe_exit()}"
    return "unchanged, completed (exit 0)"


def _down_actions(spec: ResourceSpec, change: Change | None) -> list[Action]:
    if isinstance(spec, ExecutableSpec):
        return [Action.STOP]
    if isinstance(spec, CellSpec):
        return [Action.FREE]
    if isinstance(spec, PodSpec):
        return [Action.STOP, Action.FREE]
    if isinstance(spec, DriverSpec):
        return [] if change is Change.REPLACE else [Action.DELETE]  # a push overwrites
    return [Action.DELETE]  # PersistentExecutableSpec: Destroy stops it too


def _up_actions(spec: ResourceSpec, decision: _Decision) -> list[Action]:
    if decision.change is Change.UPDATE:
        return {
            "limits": [Action.UPDATE],
            "enable": [Action.ENABLE],
            "disable": [Action.DISABLE],
        }.get(decision.update, [Action.UPDATE])
    if decision.restart:
        return [Action.START]
    if isinstance(spec, CellSpec):
        return [Action.ALLOCATE]
    if isinstance(spec, ExecutableSpec):
        return [Action.START]
    if isinstance(spec, PodSpec):
        return [Action.ALLOCATE, Action.START]
    if isinstance(spec, DriverSpec):
        return [Action.PUSH]
    return [Action.ENABLE if spec.enabled else Action.DISABLE]


def compile_plan(
    desired: DesiredState, observed: NodeState, *, prune: bool = False, destroy: bool = False
) -> Plan:
    """The ordered steps that take ``observed`` to ``desired`` (see the module doc).

    ``prune`` removes resources of the desired manifest set that are no longer declared;
    ``destroy`` removes every resource of the set. Resources of other sets are never
    touched; declaring one of them is an error (FailedPrecondition), and so is replacing
    or removing a cell that a resource of another set runs in. A desired resource may
    need one of another set (its cell, its parent cell, a ``dependsOn`` target): that
    resource is left alone and orders nothing, as it already exists.
    """
    return _Compiler(desired, observed, prune, destroy).build(observed.generation)
