"""Model specs <-> plain JSON objects, for the store and for saved plans.

Kept next to the model, and free of protobuf: the store keeps the spec a resource was
applied with as JSON text, and reading it back must give an equal spec.
"""

from __future__ import annotations

import json

from provisioner import records
from provisioner.errors import InvalidArgument
from provisioner.limits import MAX_STOP_GRACE_S, clamp
from provisioner.model import (
    CellLimits,
    CellSpec,
    ContainerPort,
    ContainerSpec,
    DriverSpec,
    ExecutableSpec,
    Kind,
    PersistentExecutableSpec,
    PodNetwork,
    PodSpec,
    Protocol,
    PullPolicy,
    Ref,
    ResourceSpec,
    RestartPolicy,
)

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

_CLASSES: dict[Kind, type[Any]] = {
    Kind.CELL: CellSpec,
    Kind.EXECUTABLE: ExecutableSpec,
    Kind.POD: PodSpec,
    Kind.DRIVER: DriverSpec,
    Kind.PERSISTENT_EXECUTABLE: PersistentExecutableSpec,
}


def spec_to_dict(spec: ResourceSpec) -> dict[str, Any]:
    """A JSON-ready dict; ``source`` (where it was declared) is not part of a spec."""
    out: dict[str, Any] = {"kind": spec.kind.value}
    for field in records.fields(spec):
        if field.name == "source":
            continue
        value = getattr(spec, field.name)
        out[field.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Ref):
        return str(value)
    if records.is_record(value):
        return {f.name: _plain(getattr(value, f.name)) for f in records.fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, RestartPolicy | PodNetwork | Protocol | PullPolicy):
        return value.value
    return value


def spec_from_dict(data: dict[str, Any]) -> ResourceSpec:
    """Rebuild a resource spec from :func:`spec_to_dict`'s output; a damaged record
    raises :class:`~provisioner.errors.InvalidArgument`.
    """
    try:
        kind = Kind(data["kind"])
        fields = {k: v for k, v in data.items() if k != "kind"}
        fields["labels"] = _pairs(fields.get("labels", ()))
        fields["depends_on"] = tuple(_ref(r) for r in fields.get("depends_on", ()))
        if kind is Kind.CELL:
            fields["limits"] = CellLimits(**fields.get("limits", {}))
        if kind in (Kind.EXECUTABLE, Kind.POD):
            fields["restart_policy"] = RestartPolicy(fields.get("restart_policy", "never"))
            grace = fields.get("stop_grace_s")
            if isinstance(grace, int | float) and not 0 <= grace <= MAX_STOP_GRACE_S:
                # Stored by a version without the limit: never let it block a stop.
                fields["stop_grace_s"] = clamp(float(grace), 0.0, MAX_STOP_GRACE_S,
                                               f"stored {kind.value}/{fields.get('name')}: "
                                               "stop_grace_s")
        if kind is Kind.EXECUTABLE:
            fields["env"] = _pairs(fields.get("env", ()))
        if kind is Kind.POD:
            fields["containers"] = tuple(
                ContainerSpec(**{**c, "command": tuple(c.get("command", ())),
                                 "env": _pairs(c.get("env", ())),
                                 "ports": tuple(_port(p) for p in c.get("ports", ())),
                                 "pull_policy": PullPolicy(c.get("pull_policy",
                                                                 "IfNotPresent"))})
                for c in fields.get("containers", ())
            )
            network = fields.get("network")
            fields["network"] = PodNetwork(network) if network is not None else None
        spec: ResourceSpec = _CLASSES[kind](**fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgument(f"not a stored resource spec: {exc}") from None
    return spec


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in value)


def _port(data: dict[str, Any]) -> ContainerPort:
    return ContainerPort(container_port=int(data["container_port"]),
                         host_port=int(data.get("host_port", 0)),
                         protocol=Protocol(data.get("protocol", "TCP")))


def _ref(text: str) -> Ref:
    kind, _, name = text.partition("/")
    return Ref(Kind(kind), name)


def dumps(spec: ResourceSpec) -> str:
    """A resource spec as compact, key-sorted JSON (the store's ``spec_json``)."""
    return json.dumps(spec_to_dict(spec), sort_keys=True, separators=(",", ":"))


def loads(text: str) -> ResourceSpec:
    """The resource spec of a :func:`dumps` text."""
    return spec_from_dict(json.loads(text))
