"""Field-by-field differences between an applied spec and a desired one, in words."""

from __future__ import annotations

from provisioner.model import (
    CellSpec,
    DriverSpec,
    ExecutableSpec,
    PersistentExecutableSpec,
    PodSpec,
    ResourceSpec,
)
from provisioner.records import fields

#: Fields whose change needs the resource replaced (stop + start, free + allocate).
#: Every other field changes in place (cell limits) or only in the record (labels...).
REPLACING_FIELDS: dict[type, frozenset[str]] = {
    CellSpec: frozenset({"isolate_process", "isolate_network"}),
    ExecutableSpec: frozenset(
        {"command", "cell", "env", "working_dir", "uid", "gid", "restart_policy"}
    ),
    PodSpec: frozenset({"containers", "cell", "restart_policy", "host_network", "network"}),
    DriverSpec: frozenset({"version", "runtime_version", "sha256"}),
    PersistentExecutableSpec: frozenset({"command", "comment"}),
}
#: Fields applied to the live object without replacing it.
IN_PLACE_FIELDS: dict[type, frozenset[str]] = {
    CellSpec: frozenset({"limits"}),
    PersistentExecutableSpec: frozenset({"enabled"}),
}
#: Values never printed (they may hold secrets): only the changed keys are named.
_SECRET_MAPS = frozenset({"env"})
_LIMIT_NAMES = {
    "cpu_weight": "cpu.weight",
    "cpu_max_us": "cpu.max",
    "cpuset_cpus": "cpuset.cpus",
    "cpuset_mems": "cpuset.mems",
}


#: How manifests spell model fields that differ from their lowerCamelCase form.
_MANIFEST_NAMES = {"stop_grace_s": "stopGracePeriod", "source_path": "source"}


def _field_label(name: str) -> str:
    if name in _MANIFEST_NAMES:
        return _MANIFEST_NAMES[name]
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _show(value: object, name: str = "") -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if name == "stop_grace_s" and isinstance(value, float):
        return f"{value:g}s"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def changed_fields(old: ResourceSpec, new: ResourceSpec) -> list[str]:
    """Names of the spec fields that differ (``source`` never counts)."""
    return [
        f.name
        for f in fields(old)
        if f.name != "source" and getattr(old, f.name) != getattr(new, f.name)
    ]


def describe_changes(old: ResourceSpec, new: ResourceSpec) -> str:
    """``cpu.weight 100 -> 300, env changed (PORT)``."""
    parts: list[str] = []
    for name in changed_fields(old, new):
        before, after = getattr(old, name), getattr(new, name)
        if name == "limits":
            for limit, label in _LIMIT_NAMES.items():
                b, a = getattr(before, limit), getattr(after, limit)
                if b != a:
                    parts.append(f"{label} {_show(b)} -> {_show(a)}")
        elif name in _SECRET_MAPS or name in ("labels",):
            keys = sorted(
                {k for k, _ in before} ^ {k for k, _ in after}
                | {k for (k, v) in before if (k, v) not in after}
            )
            parts.append(f"{name} changed ({', '.join(keys)})")
        elif name == "containers":
            parts.append("containers changed")
        elif name == "depends_on":
            parts.append(f"dependsOn {[str(r) for r in before]} -> {[str(r) for r in after]}")
        else:
            label = _field_label(name)
            parts.append(f"{label} {_show(before, name)} -> {_show(after, name)}")
    return ", ".join(parts)


def needs_replacement(old: ResourceSpec, new: ResourceSpec) -> bool:
    """True when a changed field cannot change in place: the resource is freed and
    made again.
    """
    replacing = REPLACING_FIELDS.get(type(new), frozenset())
    return any(name in replacing for name in changed_fields(old, new))


def in_place_change(old: ResourceSpec, new: ResourceSpec) -> bool:
    """True when a field that can change in place (a cell's limits) differs."""
    in_place = IN_PLACE_FIELDS.get(type(new), frozenset())
    return any(name in in_place for name in changed_fields(old, new))
