"""Turn schema-valid documents into model records (snake_case, defaults applied)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache

from provisioner.lazyre import lazy_pattern
from provisioner.manifest.document import Document
from provisioner.model import (
    DEFAULT_STOP_GRACE_S,
    CellLimits,
    CellSpec,
    ContainerPort,
    ContainerSpec,
    DriverSpec,
    ExecutableSpec,
    Kind,
    Pairs,
    PersistentExecutableSpec,
    PodNetwork,
    PodSpec,
    Protocol,
    PullPolicy,
    Ref,
    ResourceSpec,
    RestartPolicy,
    Source,
)
from provisioner.pathnames import tidy_path

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

_DURATION_PART = lazy_pattern(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``"1m30s"`` -> 90.0 seconds (the schema has already checked the syntax)."""
    return sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text))


@cache
def camel(name: str) -> str:
    """The camelCase spelling of a snake_case field name."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _Fields:
    """Reads one mapping by proto field name, accepting snake_case or lowerCamelCase."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    def get(self, name: str, default: Any = None) -> Any:
        # Both spellings at once was refused by schema_check before we get here.
        if name in self.data:
            return self.data[name]
        return self.data.get(camel(name), default)

    def sub(self, name: str) -> _Fields:
        return _Fields(self.get(name) or {})


def _pairs(mapping: Mapping[str, Any] | None) -> Pairs:
    return tuple(sorted((str(k), str(v)) for k, v in (mapping or {}).items()))


def _refs(values: list[str] | None) -> tuple[Ref, ...]:
    refs = []
    for value in values or []:
        kind, _, name = value.partition("/")
        refs.append(Ref(Kind(kind), name))
    return tuple(refs)


def build_resource(doc: Document) -> ResourceSpec:
    """The model object of one schema-valid document."""
    data = doc.data
    meta = data["metadata"]
    name = meta["name"]
    labels = _pairs(meta.get("labels"))
    spec = _Fields(data.get("spec") or {})
    source = Source(doc.file, doc.line, doc.column)
    depends_on = _refs(spec.get("depends_on"))
    kind = Kind(data["kind"])
    if kind is Kind.CELL:
        cpu, cpuset = spec.sub("cpu"), spec.sub("cpuset")
        limits = CellLimits(
            cpu_weight=cpu.get("weight"),
            cpu_max_us=cpu.get("max"),
            cpuset_cpus=cpuset.get("cpus"),
            cpuset_mems=cpuset.get("mems"),
        )
        return CellSpec(
            name=name,
            limits=limits,
            isolate_process=bool(spec.get("isolate_process", False)),
            isolate_network=bool(spec.get("isolate_network", False)),
            labels=labels,
            depends_on=depends_on,
            source=source,
        )
    if kind is Kind.EXECUTABLE:
        return ExecutableSpec(
            name=name,
            command=spec.get("command"),
            cell=spec.get("cell", ""),
            description=spec.get("description", ""),
            env=_pairs(spec.get("env")),
            working_dir=spec.get("working_dir") or "/",
            uid=spec.get("uid"),
            gid=spec.get("gid"),
            restart_policy=RestartPolicy(spec.get("restart_policy", "never")),
            stop_grace_s=_grace(spec),
            labels=labels,
            depends_on=depends_on,
            source=source,
        )
    if kind is Kind.POD:
        containers = []
        for raw in spec.get("containers") or []:
            container = _Fields(raw)
            containers.append(
                ContainerSpec(
                    name=container.get("name"),
                    image=container.get("image"),
                    registry=container.get("registry", ""),
                    command=tuple(container.get("command") or ()),
                    env=_pairs(container.get("env")),
                    working_dir=container.get("working_dir", ""),
                    ports=tuple(_port(_Fields(p)) for p in container.get("ports") or ()),
                    pull_policy=PullPolicy(container.get("pull_policy", "IfNotPresent")),
                )
            )
        return PodSpec(
            name=name,
            containers=tuple(containers),
            cell=spec.get("cell", ""),
            host_network=bool(spec.get("host_network", False)),
            network=PodNetwork(spec.get("network")) if spec.get("network") else None,
            restart_policy=RestartPolicy(spec.get("restart_policy", "never")),
            stop_grace_s=_grace(spec),
            labels=labels,
            depends_on=depends_on,
            source=source,
        )
    if kind is Kind.DRIVER:
        folder = os.path.dirname(os.path.realpath(doc.file))
        source_path = tidy_path(os.path.join(folder, spec.get("source")))
        return DriverSpec(
            name=name,
            version=spec.get("version"),
            runtime_version=spec.get("runtime_version", ""),
            source_path=source_path,
            sha256=spec.get("sha256") or file_sha256(source_path),
            labels=labels,
            depends_on=depends_on,
            source=source,
        )
    return PersistentExecutableSpec(
        name=name,
        command=spec.get("command"),
        comment=spec.get("comment", ""),
        enabled=bool(spec.get("enabled", True)),
        labels=labels,
        depends_on=depends_on,
        source=source,
    )


def _port(port: _Fields) -> ContainerPort:
    return ContainerPort(container_port=int(port.get("container_port", 0) or 0),
                         host_port=int(port.get("host_port", 0) or 0),
                         protocol=Protocol(port.get("protocol", "TCP")))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Lowercase hex SHA-256 of a file; "" when it cannot be read (reported elsewhere)."""
    import hashlib  # (~4 ms to import; only Drivers need it)

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()


def _grace(spec: _Fields) -> float:
    text = spec.get("stop_grace_period")
    return parse_duration(text) if text else DEFAULT_STOP_GRACE_S
