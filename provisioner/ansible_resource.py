"""What the ``provisioner.node.resource`` Ansible module does: one task, one resource.

Each resource is its own manifest set, named after it (:func:`resource_set_name`:
``cell.web.cache``, ``executable.api``), so ``state: absent`` (destroying that set)
removes exactly this resource, and a resource that another set declares (a
``provisioner.node.manifest`` task, say) is refused by the plan compiler rather than taken
over. The task's ``kind`` / ``name`` / ``labels`` / ``spec`` become one manifest
document, validated like a daemon request (:func:`provisioner.manifest.from_data.
validate_data`): the same JSON Schemas and the same cross-document checks, except that
a reference (a nested cell's parent, ``spec.cell``, ``dependsOn``) may name a resource
the node already has, of any set, since the other resources are other tasks.

Schema errors fail the task before the node is touched. References are checked once
the node is open, against what it has (inside the writer lock when applying locally).
Observing, planning, applying, check mode, diff and the results are the shared
:class:`provisioner.ansible_support.Converger`'s.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from provisioner.ansible_support import ApplyOutcome, Converger, ModuleFailure, NodeOptions
from provisioner.errors import UnsafeName
from provisioner.manifest.from_data import validate_data
from provisioner.manifest.issues import Issue
from provisioner.model import DesiredState, Kind, Ref
from provisioner.names import check_artifact_name, check_cell_path, check_dns_label
from provisioner.plan.compiler import requirements
from provisioner.plan.steps import Plan
from provisioner.records import field, record
from provisioner.state import NodeState

API_VERSION = "provisioner/v1"
#: The ``kind`` choices, as manifests spell them.
KINDS = tuple(kind.value for kind in Kind)


def resource_set_name(kind: str, name: str) -> str:
    """The manifest set of one resource: ``<kind lowercase>.<name, '/' -> '.'>``.

    Unique per resource: the kind has no dot, cell names and executable, pod and
    persistent executable names have none either (so a cell's '/' can become one), and
    a driver's name, which may hold dots, is kept as it is."""
    return f"{kind.lower()}.{name.replace('/', '.')}"


def check_name(kind: Kind, name: str) -> str:
    """``name`` if it can name a ``kind``, else UnsafeName (the schemas' rules)."""
    if kind is Kind.CELL:
        return check_cell_path(name)
    if kind is Kind.DRIVER:
        return check_artifact_name(name, "driver name")
    return check_dns_label(name, f"{kind.value} name")


def issue_text(issue: Issue) -> str:
    """An issue of the task's document: its JSON path and message (the line and column
    would point into a document the user never wrote)."""
    return f"{issue.path}: {issue.message}" if issue.path else issue.message


@record
class ResourceOptions(NodeOptions):
    """The parameters of ``provisioner.node.resource`` (see its DOCUMENTATION)."""

    kind: str = ""
    name: str = ""
    spec: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> Ref:
        """The resource, or ModuleFailure for an unknown kind or an invalid name."""
        if self.kind not in KINDS:
            raise ModuleFailure(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}",
                                changed=False)
        kind = Kind(self.kind)
        try:
            return Ref(kind, check_name(kind, self.name))
        except UnsafeName as exc:
            raise ModuleFailure(str(exc), changed=False) from None

    def set_name(self) -> str:
        """The resource's own manifest set (:func:`resource_set_name`)."""
        ref = self.ref
        return resource_set_name(ref.kind.value, ref.name)

    def document(self) -> dict[str, Any]:
        """The manifest document this task declares."""
        metadata: dict[str, Any] = {"name": self.name}
        if self.labels:
            metadata["labels"] = dict(self.labels)
        return {"apiVersion": API_VERSION, "kind": self.kind, "metadata": metadata,
                "spec": dict(self.spec)}


#: How cross-document checks against a node word a reference to what it lacks.
_MISSING_ON_NODE = ("does not exist on the node", "the node does not have")


class ResourceManager(Converger):
    """Declares (``present``) or removes (``absent``) one resource, in its own set."""

    module_name = "provisioner.node.resource"

    def __init__(self, options: ResourceOptions, check_mode: bool = False,
                 want_diff: bool = False) -> None:
        super().__init__(options, check_mode, want_diff)
        self.options = options
        self.check_warnings: list[str] = []

    def present(self) -> dict[str, Any]:
        """Declare the resource: schema-checked now, its references on the node."""
        # Schema errors first, before the node is opened; references on the node.
        return self._converge(self._validated(existing=None), destroy=False)

    def absent(self) -> dict[str, Any]:
        """Remove the resource: destroy its one-resource manifest set."""
        return self._converge(DesiredState((), self.options.set_name()), destroy=True)

    def _validated(self, existing: Collection[Ref] | None) -> DesiredState:
        """The task's document validated: alone (``existing`` None: the schema only), or
        with the cross-document checks, its references satisfied by ``existing``."""
        o = self.options  # kind and name are checked by the schema here, with their path
        result = validate_data([o.document()], resource_set_name(o.kind, o.name),
                               label=f"task:{o.kind}/{o.name}", cross=existing is not None,
                               existing=existing)
        if result.issues:
            errors = [issue_text(issue) for issue in result.issues]
            raise ModuleFailure(f"invalid {o.kind}/{o.name} ({len(errors)} error(s)), "
                                "nothing was "
                                "changed:\n" + "\n".join(errors), errors=errors,
                                changed=False)
        return result.state

    def _needs_node(self, desired: DesiredState, destroy: bool) -> bool:
        """Through a daemon, observe only for references to check, or for a warning
        about a resource of another set (absent)."""
        return destroy or any(requirements(spec) for spec in desired.resources)

    def _on_node(self, desired: DesiredState, destroy: bool,
                 observed: NodeState | None) -> DesiredState:
        if destroy:
            return desired
        existing = [resource.ref for resource in observed.resources] if observed else []
        try:
            return self._validated(existing)
        except ModuleFailure as failure:
            errors = failure.fields.get("errors") or []
            if not (self.check_mode and errors and
                    all(any(m in error for m in _MISSING_ON_NODE) for error in errors)):
                raise
            # Check mode changes nothing, so what an earlier task of the play would
            # create is not there: predict, and say so, rather than fail the check.
            self.check_warnings = [f"{error} (check mode: an earlier task may create it)"
                                   for error in errors]
            return desired

    def _result(self, plan: Plan, desired: DesiredState, observed: NodeState | None,
                destroy: bool, outcome: ApplyOutcome | None) -> dict[str, Any]:
        result = super()._result(plan, desired, observed, destroy, outcome)
        del result["would_prune"]  # a one-resource set never has anything to prune
        warnings: list[str] = list(self.check_warnings)
        have = observed.by_ref().get(self.options.ref) if observed is not None else None
        if destroy and have is not None and have.manifest_set != plan.manifest_set:
            owner = repr(have.manifest_set) if have.manifest_set else "none (adoptable)"
            warnings.append(f"{self.options.ref} exists but its manifest set is "
                            f"{owner}, not {plan.manifest_set!r}: left alone")
        if warnings:
            result["warnings"] = warnings
        return result
