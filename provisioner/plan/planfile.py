"""Plans as versioned JSON: saved by ``plan --out``, applied later, printed by ``--json``.

A saved plan records the node generation it was compiled against and the identity of
the node, so that ``apply`` can refuse it when the node changed since (or it was made
for another node), like Terraform's "saved plan is stale".
"""

from __future__ import annotations

import json

from provisioner.errors import InvalidArgument, UsageError
from provisioner.model import Kind, Ref
from provisioner.model_json import spec_from_dict, spec_to_dict
from provisioner.plan.steps import PLAN_FORMAT_VERSION, Action, Change, NoOp, Plan, Step

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

PLAN_KIND = "provisioner-plan"


def plan_to_dict(plan: Plan, node_id: str = "") -> dict[str, Any]:
    """A plan as the JSON document ``provisioner plan --out`` writes, bound to the
    node it was compiled for (``node_id``) and its generation.
    """
    return {
        "format_version": plan.format_version,
        "kind": PLAN_KIND,
        "node_id": node_id,
        "generation": plan.generation,
        "manifest_set": plan.manifest_set,
        "steps": [
            {"index": index, "action": step.action.value, "kind": step.ref.kind.value,
             "name": step.ref.name, "change": step.change.value, "reason": step.reason,
             "requires": list(step.requires),
             "spec": spec_to_dict(step.spec) if step.spec is not None else None}
            for index, step in enumerate(plan.steps)
        ],
        "unchanged": [_noop(n) for n in plan.unchanged],
        "would_prune": [_noop(n) for n in plan.would_prune],
    }


def _noop(noop: NoOp) -> dict[str, str]:
    return {"kind": noop.ref.kind.value, "name": noop.ref.name, "reason": noop.reason}


def plan_from_dict(data: dict[str, Any]) -> tuple[Plan, str]:
    """The plan and the node id it was made for."""
    if not isinstance(data, dict) or data.get("kind") != PLAN_KIND:
        raise InvalidArgument("not a provisioner plan (no \"kind\": \"provisioner-plan\")")
    version = data.get("format_version")
    if version != PLAN_FORMAT_VERSION:
        raise InvalidArgument(f"plan format_version {version!r} is not supported (this "
                              f"provisioner reads version {PLAN_FORMAT_VERSION}); plan again")
    try:
        steps = tuple(
            Step(Action(s["action"]), Ref(Kind(s["kind"]), s["name"]), s["reason"],
                 Change(s["change"]),
                 spec_from_dict(s["spec"]) if s.get("spec") is not None else None,
                 tuple(int(r) for r in s["requires"]))
            for s in data["steps"])
        for index, step in enumerate(steps):
            if any(not 0 <= r < index for r in step.requires):
                raise InvalidArgument(f"step {index} requires a step that does not come "
                                      "before it")
        plan = Plan(int(data["generation"]), str(data["manifest_set"]), steps,
                    tuple(_noop_from(n) for n in data.get("unchanged", [])),
                    tuple(_noop_from(n) for n in data.get("would_prune", [])))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgument(f"the plan file is damaged: {exc}") from None
    return plan, str(data.get("node_id", ""))


def _noop_from(data: dict[str, str]) -> NoOp:
    return NoOp(Ref(Kind(data["kind"]), data["name"]), data["reason"])


def save_plan(path: str, plan: Plan, node_id: str) -> None:
    """Write a plan file (see :func:`plan_to_dict`)."""
    text = json.dumps(plan_to_dict(plan, node_id), indent=1) + "\n"  # before truncating
    with open(path, "w") as handle:
        handle.write(text)


def is_plan_file(path: str) -> bool:
    """A ``.json`` file whose first bytes announce a plan (manifests are YAML)."""
    if not path.endswith(".json"):
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return PLAN_KIND in head


def load_plan(path: str) -> tuple[Plan, str]:
    """Read a plan file written by :func:`save_plan`: the plan and the node id it is
    for. A file that is not a plan of this format raises :class:`UsageError`.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise UsageError(f"cannot read plan {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"plan {path} is not valid JSON: {exc}") from None
    return plan_from_dict(data)
