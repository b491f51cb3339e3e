"""Rules of a pod's network and ports, checked by validation, the plan and the node.

Pure functions of the model: the manifest cross-check reports them with their file
and line, the plan compiler refuses a host port that a pod the node keeps already
publishes, and the node layer refuses what reaches it anyway.
"""

from __future__ import annotations

from collections.abc import Iterable

from provisioner.model import PodNetwork, PodSpec

#: A place in a pod's spec (``("containers", 0, "ports", 1, "hostPort")``) and a message.
Problem = tuple[tuple[str | int, ...], str]


def pod_network_problems(spec: PodSpec) -> list[Problem]:
    """What contradicts itself in one pod: a port without ``containerPort`` (the
    schema cannot require it in either spelling), ``hostNetwork: true`` with another
    ``network``, a published port of a loopback pod, a host-network port published on
    another number, one host port (and protocol) twice."""
    problems: list[Problem] = []
    if spec.host_network and spec.network is not PodNetwork.HOST:
        problems.append((("network",), f"hostNetwork: true contradicts network: "
                                       f"{spec.network}"))
    seen: set[tuple[int, str]] = set()
    for index, container in enumerate(spec.containers):
        for number, port in enumerate(container.ports):
            if not 1 <= port.container_port <= 65535:
                problems.append((("containers", index, "ports", number),
                                 "missing required field 'containerPort' (1-65535)"))
            where = ("containers", index, "ports", number, "hostPort")
            if not port.host_port:
                continue
            if spec.network is PodNetwork.LOOPBACK:
                problems.append((where, f"container {container.name!r} publishes host port "
                                        f"{port.host_port}, which a loopback pod cannot "
                                        "(use network: bridge)"))
            elif spec.network is PodNetwork.HOST and port.host_port != port.container_port:
                problems.append((where, f"on the host's network hostPort {port.host_port} "
                                        f"must equal containerPort {port.container_port}"))
            key = (port.host_port, port.protocol.value)
            if key in seen:
                problems.append((where, f"host port {port.host_port}/{port.protocol.value} "
                                        "published twice in this pod"))
            seen.add(key)
    return problems


def host_port_clashes(pods: Iterable[PodSpec]) -> list[tuple[int, str, str, str]]:
    """``(host port, protocol, first pod, second pod)`` for every host port that two
    pods publish."""
    owner: dict[tuple[int, str], str] = {}
    clashes = []
    for spec in pods:
        for port, protocol, _container in dict.fromkeys(
                (p, proto.value, c) for p, proto, c in spec.host_ports()):
            key = (port, protocol)
            if key in owner and owner[key] != spec.name:
                clashes.append((port, protocol, owner[key], spec.name))
            owner.setdefault(key, spec.name)
    return clashes
