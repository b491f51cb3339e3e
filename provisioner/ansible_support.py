"""What the ``provisioner.node`` Ansible modules do, as plain, typed, testable code.

The collection's modules (``ansible_collections/provisioner/node/plugins/modules``) only
declare their options and documentation and turn the outcome into ``exit_json`` /
``fail_json``; everything else is here, in the package installed on the managed node:

- :class:`NodeOptions` — the options of every module (which node, how to reach it);
  :class:`ManifestOptions` — ``provisioner.node.manifest``'s parameters, typed;
- :class:`Converger` — what every module does once it knows the desired state of one
  manifest set: open the node, observe, plan, apply, report, honouring check mode (no
  lock taken, nothing applied) and diff mode; ``provisioner.ansible_resource`` builds on
  it too;
- :class:`ManifestManager` — ``present()`` (validate, plan, apply) and ``absent()``
  (destroy the manifest set), with manifests from files on the node (``path``), from the
  controller (``src``, rendered there: see :mod:`provisioner.ansible_content`) or inline
  (``definition``).

Results are data (:mod:`provisioner.ansible_results`), the diff texts are
:mod:`provisioner.ansible_diff`'s. Every error a user can cause comes out as
:class:`ModuleFailure` (message plus the return values known so far), which the module
passes to ``fail_json`` once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Self

from provisioner import records
from provisioner.ansible_results import (
    ApplyOutcome,
    plan_records,
    planned_actions,
    planned_summary,
    prune_warning,
)
from provisioner.defaults import DEFAULT_CGROUP_ROOT, DEFAULT_LOCK_TIMEOUT_S, DEFAULT_STATE_DIR
from provisioner.errors import ProvisionerError
from provisioner.events import Summary
from provisioner.executors.base import Executor
from provisioner.executors.choose import open_executor
from provisioner.manifest import load
from provisioner.manifest.loader import LoadResult, load_texts
from provisioner.manifest.set_name import default_set_name
from provisioner.model import DesiredState
from provisioner.plan.render import render_plan
from provisioner.plan.steps import Plan
from provisioner.records import field, record
from provisioner.state import NodeState

__all__ = ["ApplyOutcome", "Converger", "ManifestManager", "ManifestOptions",
           "ModuleFailure", "NodeOptions"]


class ModuleFailure(Exception):
    """A failure to report with ``fail_json(msg=msg, **fields)``."""

    def __init__(self, msg: str, **fields: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.fields = fields


@record
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
        names = {f.name for f in records.fields(cls)}
        given = cls._normalised({k: v for k, v in params.items() if v is not None})
        return cls(**{k: v for k, v in given.items() if k in names})

    @classmethod
    def _normalised(cls, given: dict[str, Any]) -> dict[str, Any]:
        return given


@record
class ManifestOptions(NodeOptions):
    """The parameters of ``provisioner.node.manifest``. Exactly one source of manifests:
    ``path`` (files on the managed node), ``texts`` (``src`` rendered on the controller:
    ``(controller file, text)`` pairs) or ``definition`` (inline)."""

    path: tuple[str, ...] = ()
    texts: tuple[tuple[str, str], ...] = ()
    definition: Any = None
    manifest_set: str | None = None
    prune: bool = False
    vars: Mapping[str, Any] = field(default_factory=dict)
    parallelism: int = 0

    @classmethod
    def _normalised(cls, given: dict[str, Any]) -> dict[str, Any]:
        # What the collection's action plugin sends in place of src.
        files = given.pop("_rendered_files", None) or ()
        texts = given.pop("_rendered_texts", None) or ()
        if len(files) != len(texts):
            raise ModuleFailure("the action plugin sent a different number of rendered "
                                "files and texts", changed=False)
        return {**given, "path": tuple(str(p) for p in given.get("path", ())),
                "texts": tuple(zip(files, texts, strict=True))}

    @property
    def has_source(self) -> bool:
        """Whether one of ``path``, ``texts`` or ``definition`` was given."""
        return bool(self.path or self.texts or self.definition is not None)

    def set_name(self) -> str:
        """The manifest set: as given, else named after the source; ModuleFailure
        when it cannot be named (``definition`` alone, or nothing to name it after)."""
        if self.manifest_set:
            return self.manifest_set
        if self.path:
            return default_set_name(list(self.path))
        if self.texts:  # the action plugin names the set after src; this is a fallback
            return default_set_name([self.texts[0][0]])
        raise ModuleFailure("manifest_set is required with definition, and with "
                            "state=absent when no manifests are given", changed=False)


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
        """Make the node match what the options declare (a subclass says how)."""
        raise NotImplementedError

    def absent(self) -> dict[str, Any]:
        """Remove what the options name from the node (a subclass says how)."""
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

    def _open(self, manifest_set: str) -> contextlib.AbstractContextManager[Executor]:
        """The node's executor (read-only in check mode), its lock naming this task."""
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

    def _plan(self, ex: Executor, desired: DesiredState,
              destroy: bool) -> tuple[Plan, DesiredState, NodeState | None]:
        """The executor's plan (compiled here or by the daemon); the node is observed
        first only when a diff or :meth:`_on_node` needs it, and the plan is then
        compiled against that observation. Returns the plan, the desired state as
        checked and the node as observed (or None)."""
        wanted = self.want_diff or self._needs_node(desired, destroy)
        observed = ex.observe() if wanted else None
        desired = self._on_node(desired, destroy, observed)
        plan = ex.plan(desired, prune=self.prune, destroy=destroy, observed=observed)
        return plan, desired, observed

    def _result(self, plan: Plan, desired: DesiredState, observed: NodeState | None,
                destroy: bool, outcome: ApplyOutcome | None) -> dict[str, Any]:
        if outcome is None:  # check mode: what would be done
            changed = plan.has_changes
            actions, actions_text = planned_actions(plan)
            summary = planned_summary(plan)
        else:
            changed = plan.has_changes and outcome.succeeded > 0
            actions, actions_text = outcome.actions, outcome.actions_text
            summary = outcome.summary or Summary(generation=plan.generation)
        result: dict[str, Any] = {
            "changed": changed,
            "manifest_set": plan.manifest_set,
            "plan": plan_records(plan),
            "plan_text": render_plan(plan),
            "actions": actions,
            "actions_text": actions_text,
            "summary": records.asdict(summary),
            "would_prune": [str(noop.ref) for noop in plan.would_prune],
        }
        warning = None if destroy else prune_warning(plan)
        if warning:
            result["warnings"] = [warning]
        if self.want_diff:
            from provisioner.ansible_diff import diff_text

            result["diff"] = diff_text(plan, desired, observed, destroy)
        return result


class ManifestManager(Converger):
    """``provisioner.node.manifest``: one manifest set from files on the node, texts
    rendered on the controller or an inline definition."""

    module_name = "provisioner.node.manifest"

    def __init__(self, options: ManifestOptions, check_mode: bool = False,
                 want_diff: bool = False) -> None:
        super().__init__(options, check_mode, want_diff)
        self.options = options
        self.prune = options.prune
        self.parallelism = options.parallelism

    def present(self) -> dict[str, Any]:
        """Validate the manifests, plan and apply them (or only plan, in check mode)."""
        return self._converge(self._desired(), destroy=False)

    def absent(self) -> dict[str, Any]:
        """Destroy the manifest set (named by the manifests or ``manifest_set``)."""
        desired = self._desired() if self.options.has_source else DesiredState(
            (), self.options.set_name())
        return self._converge(desired, destroy=True)

    def _desired(self) -> DesiredState:
        """The validated manifests, or ModuleFailure listing every error."""
        o = self.options
        if not o.has_source:
            raise ModuleFailure("one of src (on the controller), path (on the managed "
                                "node) or definition is required", changed=False)
        name = o.set_name()
        if o.texts:
            result = load_texts(o.texts, name)
        elif o.definition is not None:
            # Only now: it brings Jinja2 (~40 ms), which a task without one never needs.
            from provisioner.ansible_content import load_definition

            try:
                result = load_definition(o.definition, name)
            except ValueError as exc:
                raise ModuleFailure(str(exc), changed=False) from None
        else:
            result = self._load_paths(name)
        if not result.ok:
            errors = [issue.render() for issue in result.issues]
            raise ModuleFailure(f"invalid manifests ({len(errors)} error(s)), nothing was "
                                "changed:\n" + "\n".join(errors), errors=errors, changed=False)
        return DesiredState(result.state.resources, name)

    def _load_paths(self, name: str) -> LoadResult:
        """Manifests from files on the managed node; missing ones are named as such."""
        result = load(list(self.options.path), dict(self.options.vars), name)
        for index, issue in enumerate(result.issues):
            if issue.message in ("no such file or directory",
                                 "directory holds no *.yaml or *.yml files"):
                result.issues[index] = records.replace(
                    issue, message=f"{issue.message} on the managed node (path names files "
                    "there; use src for files on the controller)")
        return result
