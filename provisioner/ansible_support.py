"""What the ``provisioner_manifest`` Ansible module does, as plain, typed, testable code
(and the part ``provisioner_resource``, in ``provisioner.ansible_resource``, shares).

The module file (``modules/provisioner_manifest.py``) only declares its options and
documentation and turns the outcome into ``exit_json`` / ``fail_json``; everything else
is here, in the package that must be installed on the target anyway:

- :class:`NodeOptions` — the options of every module (which node, how to reach it);
  :class:`ManifestOptions` — the module's parameters, typed;
- :class:`Converger` — what every module does once it knows the desired state of one
  manifest set: open the node, observe, plan, apply, report, honouring check mode (no
  lock taken, nothing applied) and diff mode; ``provisioner.ansible_resource`` (the
  ``provisioner_resource`` module) builds on it too;
- :class:`ManifestManager` — ``present()`` (validate, plan, apply) and ``absent()``
  (destroy the manifest set);
- :func:`diff_text` / :func:`resource_text` — the ``diff`` before/after texts;
- :class:`ApplyOutcome` — the apply events folded into ``actions`` and failures.

Every error a user can cause comes out as :class:`ModuleFailure` (message plus the
return values known so far), which the module passes to ``fail_json`` once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from provisioner.errors import ProvisionerError
from provisioner.executors.base import ApplyEvent, EventType, Summary
from provisioner.executors.choose import DEFAULT_CGROUP_ROOT, open_executor
from provisioner.executors.local import DEFAULT_LOCK_TIMEOUT_S, LocalExecutor
from provisioner.manifest import load
from provisioner.manifest.loader import default_set_name
from provisioner.model import DesiredState, Ref, ResourceSpec
from provisioner.model_json import spec_to_dict
from provisioner.node.store import DEFAULT_STATE_DIR
from provisioner.plan.compiler import compile_plan
from provisioner.plan.render import change_counts, render_plan
from provisioner.plan.steps import Change, Plan
from provisioner.state import NodeState, ObservedResource, ProcessPhase

if TYPE_CHECKING:
    from provisioner.executors.choose import NodeExecutor


class ModuleFailure(Exception):
    """A failure to report with ``fail_json(msg=msg, **fields)``."""

    def __init__(self, msg: str, **fields: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.fields = fields


@dataclass(frozen=True)
class NodeOptions:
    """The options every module has: ``state`` and where the node is (the modules'
    DOCUMENTATION says what each one means)."""

    state: str = "present"
    target: str | None = None
    state_dir: str = DEFAULT_STATE_DIR
    cgroup_root: str = DEFAULT_CGROUP_ROOT
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        """From ``AnsibleModule.params`` (unknown keys, such as Ansible's own, ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in params.items() if k in names and v is not None}
        return cls(**cls._normalised(given))

    @classmethod
    def _normalised(cls, given: dict[str, Any]) -> dict[str, Any]:
        return given


@dataclass(frozen=True)
class ManifestOptions(NodeOptions):
    """The parameters of ``provisioner_manifest``."""

    path: tuple[str, ...] = ()
    manifest_set: str | None = None
    prune: bool = False
    vars: Mapping[str, Any] = field(default_factory=dict)
    parallelism: int = 0

    @classmethod
    def _normalised(cls, given: dict[str, Any]) -> dict[str, Any]:
        return {**given, "path": tuple(str(p) for p in given.get("path", ()))}

    def set_name(self) -> str:
        if self.manifest_set:
            return self.manifest_set
        if not self.path:
            raise ModuleFailure("state=absent needs path or manifest_set")
        return default_set_name(list(self.path))


@dataclass
class ApplyOutcome:
    """Apply events folded into what the module reports. Filled as events arrive, so
    that what was done is known even when the apply is cut short by an error."""

    actions: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    succeeded: int = 0
    summary: Summary | None = None

    def add(self, event: ApplyEvent) -> None:
        step = event.step
        if event.type is EventType.SUMMARY:
            self.summary = event.summary
        elif step is None or event.type is EventType.STEP_STARTED:
            return
        elif event.type is EventType.STEP_SUCCEEDED:
            self.succeeded += 1
            self.actions.append(step.describe())
        elif event.type is EventType.STEP_FAILED:
            self.failures.append(f"step #{event.index} ({step.describe()}) failed: "
                                 f"{event.message}")
            self.actions.append(f"{step.describe()} -- FAILED: {event.message}")
        else:
            self.actions.append(f"{step.describe()} -- skipped: {event.message}")

    def collect(self, events: Iterable[ApplyEvent]) -> ApplyOutcome:
        for event in events:
            self.add(event)
        return self


def planned_summary(plan: Plan) -> Summary:
    """What the summary of applying ``plan`` would be if every step succeeded."""
    counts = change_counts(plan)
    return Summary(created=counts[Change.CREATE], updated=counts[Change.UPDATE],
                   replaced=counts[Change.REPLACE], deleted=counts[Change.DELETE],
                   unchanged=len(plan.unchanged), generation=plan.generation)


# -- diff texts ----------------------------------------------------------------------

#: Cell limits as the kernel (and the manifests' cpu / cpuset blocks) name them.
_LIMIT_LABELS = {"cpu_weight": "cpu.weight", "cpu_max_us": "cpu.max",
                 "cpuset_cpus": "cpuset.cpus", "cpuset_mems": "cpuset.mems"}
#: Model fields spelt differently in manifests.
_FIELD_LABELS = {"stop_grace_s": "stopGracePeriod", "source_path": "source"}
#: Mappings whose values may be secrets: only their keys are shown.
_SECRET_MAPS = frozenset({"env"})
HIDDEN = "<hidden>"
HIDDEN_CHANGED = "<hidden, changed>"


def _label(name: str) -> str:
    if name in _FIELD_LABELS:
        return _FIELD_LABELS[name]
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def spec_fields(spec: ResourceSpec,
                previous: ResourceSpec | None = None) -> list[tuple[str, str]]:
    """``(label, value)`` for every field of ``spec`` that differs from its default, in
    the model's field order: limits and mappings flattened (``cpu.weight``,
    ``labels.tier``). Values of secret mappings (``env``) are hidden; one whose value
    differs from ``previous`` reads ``<hidden, changed>``, so that a diff shows it."""
    old = dict(getattr(previous, "env", ()))
    defaults = {f.name: f.default for f in dataclasses.fields(spec)
                if f.default is not dataclasses.MISSING}
    out: list[tuple[str, str]] = []
    data = spec_to_dict(spec)
    for name, value in data.items():
        if name in ("kind", "name") or getattr(spec, name) == defaults.get(name, object()):
            continue
        if name == "limits":
            out.extend((_LIMIT_LABELS.get(k, k), _value(v)) for k, v in value.items()
                       if v is not None)
        elif name in _SECRET_MAPS:
            out.extend((f"{name}.{k}", HIDDEN_CHANGED if k in old and old[k] != v else HIDDEN)
                       for k, v in value)
        elif name == "labels":
            out.extend((f"labels.{k}", _value(v)) for k, v in value)
        elif name == "stop_grace_s":
            out.append((_label(name), f"{value:g}s"))
        else:
            out.append((_label(name), _value(value)))
    return out


def resource_text(ref: Ref, spec: ResourceSpec | None,
                  observed: ObservedResource | None = None,
                  previous: ResourceSpec | None = None) -> list[str]:
    """One resource as diff lines: ``Cell/web:`` then ``  cpu.weight: 200``... or
    ``Cell/web: absent``. With ``observed`` (the before side) its drift is noted: the
    reason a resource whose spec did not change is in the plan. ``previous``: see
    :func:`spec_fields`."""
    if spec is None:
        return [f"{ref}: absent"]
    lines = [f"{ref}:"] + [f"  {label}: {value}"
                           for label, value in spec_fields(spec, previous)]
    if observed is not None:
        if not observed.present:
            lines.append("  drift: missing on the node")
        process = observed.process
        if process is not None and process.phase not in (ProcessPhase.RUNNING,
                                                         ProcessPhase.BACKOFF):
            word = process.describe_exit() if process.phase is ProcessPhase.EXITED \
                else process.phase.value
            lines.append(f"  drift: process {word}")
        lines.extend(f"  drift: {note}" for note in observed.drift)
    return lines


def diff_text(plan: Plan, desired: DesiredState, observed: NodeState | None,
              destroy: bool = False) -> dict[str, str]:
    """Ansible's ``diff``: the resources the plan changes, as the node has them (before)
    and as declared (after). Env values are never shown (the plan names changed keys)."""
    wanted = {} if destroy else desired.by_ref()
    have = observed.by_ref() if observed is not None else {}
    before: list[str] = []
    after: list[str] = []
    seen: set[Ref] = set()
    for step in plan.steps:
        if step.ref in seen:
            continue
        seen.add(step.ref)
        current = have.get(step.ref)
        before += resource_text(step.ref, current.spec if current else None, current)
        after += resource_text(step.ref, wanted.get(step.ref),
                               previous=current.spec if current else None)
    return {"before": "".join(f"{line}\n" for line in before),
            "after": "".join(f"{line}\n" for line in after)}


# -- the managers --------------------------------------------------------------------


class Converger:
    """Makes the node match (``present``) or drops (``absent``) one manifest set: the
    part every module shares. A subclass says what is desired (``present`` /
    ``absent``), and may check it against the node it observes (:meth:`_on_node`)."""

    #: The module's name, in what the writer lock tells other processes.
    module_name = "provisioner"

    def __init__(self, options: NodeOptions, check_mode: bool = False,
                 want_diff: bool = False) -> None:
        self.node_options = options
        self.check_mode = check_mode
        self.want_diff = want_diff
        self.prune = False
        self.parallelism = 0

    def run(self) -> dict[str, Any]:
        """``present()`` or ``absent()`` as the options say; ModuleFailure on any error."""
        try:
            return self.absent() if self.node_options.state == "absent" else self.present()
        except ProvisionerError as exc:
            raise ModuleFailure(str(exc), changed=False) from None

    def present(self) -> dict[str, Any]:
        raise NotImplementedError

    def absent(self) -> dict[str, Any]:
        raise NotImplementedError

    def _needs_node(self, desired: DesiredState, destroy: bool) -> bool:
        """Whether :meth:`_on_node` needs the node observed even through a daemon."""
        return False

    def _on_node(self, desired: DesiredState, destroy: bool,
                 observed: NodeState | None) -> DesiredState:
        """``desired`` checked against the node (``observed``: None through a daemon
        unless :meth:`_needs_node` or a diff asked for it); raise ModuleFailure to stop
        before anything is planned. Here: ``desired`` as it is."""
        return desired

    def _open(self, manifest_set: str) -> contextlib.AbstractContextManager[NodeExecutor]:
        o = self.node_options
        return open_executor(o.target, o.state_dir, o.cgroup_root, o.lock_timeout,
                             tls_ca=o.tls_ca, tls_cert=o.tls_cert, tls_key=o.tls_key,
                             purpose=f"ansible {self.module_name} (manifest set "
                             f"{manifest_set!r}, state={o.state})",
                             read_only=self.check_mode)

    def _converge(self, desired: DesiredState, destroy: bool) -> dict[str, Any]:
        with self._open(desired.manifest_set) as ex:
            if self.check_mode:  # no lock, nothing applied: observe and compile only
                plan, desired, observed = self._plan(ex, desired, destroy)
                return self._result(plan, desired, observed, destroy, None)
            with ex.locked():
                plan, desired, observed = self._plan(ex, desired, destroy)
                outcome = ApplyOutcome()
                try:
                    outcome.collect(ex.apply(plan, self.parallelism))
                except ProvisionerError as exc:
                    result = self._result(plan, desired, observed, destroy, outcome)
                    raise ModuleFailure(f"apply stopped: {exc}", **result) from None
        result = self._result(plan, desired, observed, destroy, outcome)
        if outcome.failures or (outcome.summary and outcome.summary.skipped):
            what = "; ".join(outcome.failures) or "steps were skipped"
            raise ModuleFailure(f"{what} (what succeeded is recorded; fix the cause and "
                                "run again to converge)", **result)
        return result

    def _plan(self, ex: NodeExecutor, desired: DesiredState,
              destroy: bool) -> tuple[Plan, DesiredState, NodeState | None]:
        """Compile here against the observed node, or let the daemon compile it (then
        the node is observed only when a diff or :meth:`_on_node` needs it). Returns the
        plan, the desired state as checked and the node as observed (or None)."""
        prune = self.prune
        if isinstance(ex, LocalExecutor):
            node = ex.observe()
            desired = self._on_node(desired, destroy, node)
            return compile_plan(desired, node, prune=prune, destroy=destroy), desired, node
        wanted = self.want_diff or self._needs_node(desired, destroy)
        observed = ex.observe() if wanted else None
        desired = self._on_node(desired, destroy, observed)
        return ex.plan(desired, prune=prune, destroy=destroy), desired, observed

    def _result(self, plan: Plan, desired: DesiredState, observed: NodeState | None,
                destroy: bool, outcome: ApplyOutcome | None) -> dict[str, Any]:
        if outcome is None:  # check mode: what would be done
            changed = plan.has_changes
            actions = [step.describe() for step in plan.steps]
            summary = planned_summary(plan)
        else:
            changed = plan.has_changes and outcome.succeeded > 0
            actions = outcome.actions
            summary = outcome.summary or Summary(generation=plan.generation)
        result: dict[str, Any] = {
            "changed": changed,
            "manifest_set": plan.manifest_set,
            "plan": render_plan(plan),
            "actions": actions,
            "summary": dataclasses.asdict(summary),
            "would_prune": [str(noop.ref) for noop in plan.would_prune],
        }
        if self.want_diff:
            result["diff"] = diff_text(plan, desired, observed, destroy)
        return result


class ManifestManager(Converger):
    """``provisioner_manifest``: one manifest set read from files."""

    module_name = "provisioner_manifest"

    def __init__(self, options: ManifestOptions, check_mode: bool = False,
                 want_diff: bool = False) -> None:
        super().__init__(options, check_mode, want_diff)
        self.options = options
        self.prune = options.prune
        self.parallelism = options.parallelism

    def present(self) -> dict[str, Any]:
        return self._converge(self._desired(), destroy=False)

    def absent(self) -> dict[str, Any]:
        desired = self._desired() if self.options.path else DesiredState(
            (), self.options.set_name())
        return self._converge(desired, destroy=True)

    def _desired(self) -> DesiredState:
        """The validated manifests, or ModuleFailure listing every error."""
        if not self.options.path:
            raise ModuleFailure("path is required (manifest files or directories)")
        result = load(list(self.options.path), dict(self.options.vars))
        if not result.ok:
            errors = [issue.render() for issue in result.issues]
            raise ModuleFailure(f"invalid manifests ({len(errors)} error(s)), nothing was "
                                "changed:\n" + "\n".join(errors), errors=errors, changed=False)
        return DesiredState(result.state.resources, self.options.set_name())
