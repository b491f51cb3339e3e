"""Resources: ``provisioner.v1.Resource`` <-> model specs, and the manifest form in which
resources from requests are validated (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format

from provisioner._proto.provisioner.v1 import manifest_pb2 as mpb
from provisioner.errors import InvalidArgument
from provisioner.manifest.build import parse_duration as parse_manifest_duration
from provisioner.model import (
    API_VERSION,
    DEFAULT_STOP_GRACE_S,
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

#: Annotation of a plan step's resource that carries the step's Change.
CHANGE_ANNOTATION = "provisioner.v1/change"

_POLICY_TO_PROTO = {
    RestartPolicy.NEVER: mpb.RESTART_POLICY_NEVER,
    RestartPolicy.ON_FAILURE: mpb.RESTART_POLICY_ON_FAILURE,
    RestartPolicy.ALWAYS: mpb.RESTART_POLICY_ALWAYS,
}
_POLICY_FROM_PROTO = {v: k for k, v in _POLICY_TO_PROTO.items()}
_POLICY_FROM_PROTO[mpb.RESTART_POLICY_UNSPECIFIED] = RestartPolicy.NEVER
_POLICY_NAMES = {mpb.RestartPolicy.Name(v): k.value for v, k in _POLICY_FROM_PROTO.items()}

#: The oneof field of Resource.spec for each kind.
SPEC_FIELD = {
    Kind.CELL: "cell",
    Kind.EXECUTABLE: "executable",
    Kind.POD: "pod",
    Kind.DRIVER: "driver",
    Kind.PERSISTENT_EXECUTABLE: "persistent_executable",
}


def policy_to_proto(policy: RestartPolicy) -> mpb.RestartPolicy:
    """A restart policy as its protobuf enum value."""
    return _POLICY_TO_PROTO[policy]


def policy_from_proto(value: int) -> RestartPolicy:
    """A protobuf restart policy value as the model's; InvalidArgument if unknown."""
    try:
        return _POLICY_FROM_PROTO[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument(f"unknown restart policy {value}") from None


def format_duration(seconds: float) -> str:
    """``10.0`` -> ``"10s"``, ``0.5`` -> ``"500ms"``; parses back to the same float."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    millis = round(seconds * 1000)
    if millis * 0.001 == seconds:
        return f"{millis}ms"
    text = repr(float(seconds))
    if "e" in text or "n" in text:  # exponent, inf or nan: not representable exactly
        text = f"{seconds:.6f}".rstrip("0")
    return f"{text}s"


def parse_duration(text: str) -> float:
    """The inverse of :func:`format_duration`; empty means the default grace period."""
    return parse_manifest_duration(text) if text else DEFAULT_STOP_GRACE_S


def _refs(values: Any) -> tuple[Ref, ...]:
    refs = []
    for value in values:
        kind, _, name = str(value).partition("/")
        try:
            refs.append(Ref(Kind(kind), name))
        except ValueError:
            raise InvalidArgument(f"bad dependency {value!r} (expected Kind/name)") from None
    return tuple(refs)


def _pairs(mapping: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in mapping.items()))


# -- resources ---------------------------------------------------------------------


_NETWORK_TO_PROTO = {PodNetwork.LOOPBACK: mpb.POD_NETWORK_LOOPBACK,
                     PodNetwork.BRIDGE: mpb.POD_NETWORK_BRIDGE,
                     PodNetwork.HOST: mpb.POD_NETWORK_HOST}
_NETWORK_FROM_PROTO = {v: k for k, v in _NETWORK_TO_PROTO.items()}
_PULL_TO_PROTO = {PullPolicy.IF_NOT_PRESENT: mpb.PULL_POLICY_IF_NOT_PRESENT,
                  PullPolicy.ALWAYS: mpb.PULL_POLICY_ALWAYS,
                  PullPolicy.NEVER: mpb.PULL_POLICY_NEVER}
_PULL_FROM_PROTO = {v: k for k, v in _PULL_TO_PROTO.items()}
_PULL_NAMES = {mpb.PullPolicy.Name(v): k.value for k, v in _PULL_TO_PROTO.items()}


def _port_from_proto(port: mpb.ContainerPort) -> ContainerPort:
    try:
        protocol = Protocol(port.protocol.upper() or "TCP")
    except ValueError:
        raise InvalidArgument(f"port protocol {port.protocol!r} is not TCP or UDP") from None
    return ContainerPort(port.container_port, port.host_port, protocol)


def spec_to_proto(spec: ResourceSpec) -> mpb.Resource:
    """A model spec as a ``provisioner.v1.Resource`` (``source`` is not carried)."""
    res = mpb.Resource(api_version=API_VERSION, kind=spec.kind.value)
    res.metadata.name = spec.name
    res.metadata.labels.update(dict(spec.labels))
    deps = [str(ref) for ref in spec.depends_on]
    if isinstance(spec, CellSpec):
        cell = res.cell
        cell.SetInParent()
        limits = spec.limits
        if limits.cpu_weight is not None:
            cell.cpu.weight = limits.cpu_weight
        if limits.cpu_max_us is not None:
            cell.cpu.max = limits.cpu_max_us
        if limits.cpuset_cpus is not None:
            cell.cpuset.cpus = limits.cpuset_cpus
        if limits.cpuset_mems is not None:
            cell.cpuset.mems = limits.cpuset_mems
        cell.isolate_process = spec.isolate_process
        cell.isolate_network = spec.isolate_network
        cell.depends_on.extend(deps)
    elif isinstance(spec, ExecutableSpec):
        ex = res.executable
        ex.command, ex.description, ex.cell = spec.command, spec.description, spec.cell
        ex.env.update(dict(spec.env))
        ex.working_dir = spec.working_dir
        if spec.uid is not None:
            ex.uid = spec.uid
        if spec.gid is not None:
            ex.gid = spec.gid
        ex.restart_policy = policy_to_proto(spec.restart_policy)
        ex.stop_grace_period = format_duration(spec.stop_grace_s)
        ex.depends_on.extend(deps)
    elif isinstance(spec, PodSpec):
        pod = res.pod
        pod.SetInParent()
        for c in spec.containers:
            added = pod.containers.add(name=c.name, image=c.image, registry=c.registry,
                                       command=list(c.command), env=dict(c.env),
                                       working_dir=c.working_dir,
                                       pull_policy=_PULL_TO_PROTO[c.pull_policy])
            for port in c.ports:
                added.ports.add(container_port=port.container_port,
                                host_port=port.host_port, protocol=port.protocol.value)
        pod.restart_policy = policy_to_proto(spec.restart_policy)
        pod.stop_grace_period = format_duration(spec.stop_grace_s)
        pod.host_network = spec.host_network
        pod.network = _NETWORK_TO_PROTO[spec.network or PodNetwork.LOOPBACK]
        pod.cell = spec.cell
        pod.depends_on.extend(deps)
    elif isinstance(spec, DriverSpec):
        drv = res.driver
        drv.version, drv.runtime_version = spec.version, spec.runtime_version
        drv.source, drv.sha256 = spec.source_path, spec.sha256
        drv.depends_on.extend(deps)
    else:
        pex = res.persistent_executable
        pex.command, pex.comment, pex.enabled = spec.command, spec.comment, spec.enabled
        pex.depends_on.extend(deps)
    return res


def spec_from_proto(res: mpb.Resource) -> ResourceSpec:
    """A model spec from a Resource the daemon produced (not validated: see module doc)."""
    try:
        kind = Kind(res.kind)
    except ValueError:
        raise InvalidArgument(f"unknown resource kind {res.kind!r}") from None
    which = res.WhichOneof("spec")
    if which not in (None, SPEC_FIELD[kind]):
        raise InvalidArgument(f"{kind.value}/{res.metadata.name}: spec is a {which}")
    name, labels = res.metadata.name, _pairs(res.metadata.labels)
    if kind is Kind.CELL:
        c = res.cell
        limits = CellLimits(
            cpu_weight=c.cpu.weight if c.cpu.HasField("weight") else None,
            cpu_max_us=c.cpu.max if c.cpu.HasField("max") else None,
            cpuset_cpus=c.cpuset.cpus if c.cpuset.HasField("cpus") else None,
            cpuset_mems=c.cpuset.mems if c.cpuset.HasField("mems") else None)
        return CellSpec(name, limits, c.isolate_process, c.isolate_network, labels,
                        _refs(c.depends_on))
    if kind is Kind.EXECUTABLE:
        e = res.executable
        return ExecutableSpec(
            name, e.command, e.cell, e.description, _pairs(e.env), e.working_dir or "/",
            e.uid if e.HasField("uid") else None, e.gid if e.HasField("gid") else None,
            policy_from_proto(e.restart_policy), parse_duration(e.stop_grace_period),
            labels, _refs(e.depends_on))
    if kind is Kind.POD:
        p = res.pod
        containers = tuple(ContainerSpec(c.name, c.image, c.registry, tuple(c.command),
                                         _pairs(c.env), c.working_dir,
                                         ports=tuple(_port_from_proto(x) for x in c.ports),
                                         pull_policy=_PULL_FROM_PROTO.get(
                                             c.pull_policy, PullPolicy.IF_NOT_PRESENT))
                           for c in p.containers)
        return PodSpec(name, containers, p.cell, policy_from_proto(p.restart_policy),
                       parse_duration(p.stop_grace_period), labels, _refs(p.depends_on),
                       host_network=p.host_network,
                       network=_NETWORK_FROM_PROTO.get(p.network))
    if kind is Kind.DRIVER:
        d = res.driver
        return DriverSpec(name, d.version, d.runtime_version, d.source, d.sha256, labels,
                          _refs(d.depends_on))
    x = res.persistent_executable
    return PersistentExecutableSpec(name, x.command, x.comment,
                                    x.enabled if x.HasField("enabled") else True, labels,
                                    _refs(x.depends_on))


def resource_to_manifest(res: mpb.Resource) -> dict[str, Any]:
    """A Resource as the manifest document a user would write: ``{apiVersion, kind,
    metadata, spec}`` with proto field names, enum values as manifests spell them and
    64-bit integers as numbers (the JSON mapping makes them strings). Fed to the same
    JSON Schemas and cross-checks as files (``provisioner.manifest.from_data``)."""
    doc: dict[str, Any] = {"apiVersion": res.api_version, "kind": res.kind}
    doc["metadata"] = _plain(res.metadata)
    which = res.WhichOneof("spec")
    if which is not None:
        doc["spec"] = _plain(getattr(res, which))
    return doc


def _plain(message: Any) -> dict[str, Any]:
    data: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True)
    return _fix(message.DESCRIPTOR, data)


_INT64_TYPES = frozenset({3, 4, 6, 16, 18})  # int64, uint64, fixed64, sfixed64, sint64


def _fix(descriptor: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Undo the JSON mapping where manifests differ: 64-bit integers back to numbers,
    RESTART_POLICY_* back to never/on-failure/always, POD_NETWORK_* to
    loopback/bridge/host and PULL_POLICY_* to IfNotPresent/Always/Never (UNSPECIFIED:
    left out)."""
    for field in descriptor.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        if field.type in _INT64_TYPES and isinstance(value, str):
            data[field.name] = int(value)
        elif field.enum_type is not None and field.enum_type.name == "RestartPolicy":
            if value in ("RESTART_POLICY_UNSPECIFIED", 0):
                del data[field.name]
            else:
                data[field.name] = _POLICY_NAMES.get(value, value)
        elif field.enum_type is not None and field.enum_type.name == "PodNetwork":
            if value in ("POD_NETWORK_UNSPECIFIED", 0):
                del data[field.name]
            elif isinstance(value, str) and value.startswith("POD_NETWORK_"):
                data[field.name] = value.removeprefix("POD_NETWORK_").lower()
        elif field.enum_type is not None and field.enum_type.name == "PullPolicy":
            if value in ("PULL_POLICY_UNSPECIFIED", 0):
                del data[field.name]
            else:
                data[field.name] = _PULL_NAMES.get(value, value)
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict):
                    _fix(field.message_type, item)
    return data

