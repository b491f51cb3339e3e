"""The ``diff`` the Ansible modules return with ``--diff``: the resources a plan changes
as the node has them (before) and as declared (after), one ``Kind/name:`` block each,
with the fields that differ from their defaults; environment values are never shown."""

from __future__ import annotations

import json
from typing import Any

from provisioner import records
from provisioner.model import DesiredState, Ref, ResourceSpec
from provisioner.model_json import spec_to_dict
from provisioner.plan.steps import Plan
from provisioner.state import NodeState, ObservedResource, ProcessPhase

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
    defaults = {f.name: f.default for f in records.fields(spec)
                if f.default is not records.MISSING}
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
