"""The provisioner's pods as the rkt API shows them (a :class:`~provisioner.daemon.rkt.PodSource`).

A pod's rkt ``id`` is its name (rkt used UUIDs; names are unique per node here too), its
apps are its containers, its images the unpacked OCI images (``id`` = manifest digest).
State: RUNNING while any container runs, EXITED once containers ran and none runs,
PREPARED when allocated and never started. ``pid`` is the first running container's
``runc`` process, ``cgroup`` the pod's cell. Logs are the containers' log files.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from provisioner._proto.v1alpha import api_pb2 as rkt
from provisioner.errors import NotFound
from provisioner.model import Kind, PodSpec
from provisioner.model_json import loads
from provisioner.names import container_process_name
from provisioner.node import LogLine, LogReader, NodeLayer, Pods, is_running

_OCI = rkt.ImageFormat(type=rkt.IMAGE_TYPE_OCI, version="1.0")


class ProvisionerPods:
    """Pods and images of a node layer, read fresh at every call."""

    def __init__(self, layer: NodeLayer) -> None:
        self.layer = layer

    def pods(self) -> list[rkt.Pod]:
        out = []
        pods = Pods(self.layer)
        for record in self.layer.store.list_resources(Kind.POD):
            spec = loads(record.spec_json)
            if not isinstance(spec, PodSpec):
                continue
            apps, pid, started, ran = [], 0, 0, False
            for container, status in pods.statuses(spec):
                running = status is not None and is_running(status)
                ran = ran or status is not None
                if running and status is not None and not pid:
                    pid = status.child_pid or 0
                if status is not None and status.started_at_ns:
                    started = min(started or status.started_at_ns, status.started_at_ns)
                apps.append(rkt.App(
                    name=container.name, image=rkt.Image(base_format=_OCI, name=container.image),
                    state=rkt.APP_STATE_RUNNING if running else (
                        rkt.APP_STATE_EXITED if status is not None else rkt.APP_STATE_UNDEFINED),
                    exit_code=(status.exit_code or 0) if status is not None else 0))
            state = (rkt.POD_STATE_RUNNING if pid else
                     rkt.POD_STATE_EXITED if ran else rkt.POD_STATE_PREPARED)
            root = self.layer.cgroups.root_name
            out.append(rkt.Pod(
                id=spec.name, pid=pid, state=state, apps=apps,
                annotations=[rkt.KeyValue(Key="manifest-set", value=record.manifest_set),
                             *(rkt.KeyValue(Key=k, value=v) for k, v in spec.labels)],
                cgroup=f"/{root}/{spec.cell}" if spec.cell and pid else (
                    f"/{root}" if pid else ""),
                created_at=record.created_at_ns, started_at=started))
        return out

    def images(self) -> list[rkt.Image]:
        return [rkt.Image(base_format=_OCI, id=digest, name=digest)
                for digest in sorted(Pods(self.layer).images.digests())]

    def logs(self, pod: rkt.Pod, app_name: str,
             stop: threading.Event) -> tuple[list[LogLine], Iterable[LogLine]]:
        names = [app.name for app in pod.apps]
        if app_name and app_name not in names:
            raise NotFound(f"pod {pod.id} has no app {app_name!r} (it has {', '.join(names)})")
        chosen = app_name or (names[0] if names else "")
        if not chosen:
            raise NotFound(f"pod {pod.id} has no apps")
        reader = LogReader(self.layer.log_dir(container_process_name(pod.id, chosen)))
        existing = reader.read()
        since = existing[-1].ts_ns + 1 if existing else None
        return existing, reader.follow(since_ns=since, stop=stop)
