"""The provisioner's pods as the rkt API shows them (a :class:`~provisioner.daemon.rkt.PodSource`).

What is a pod: a provisioner **pod** (its apps are its containers), and each plain or
persistent **executable** (a pod of one app of the same name: it is what runs and what
the daemon restarts). Cells are not pods: a cell is a cgroup that holds pods and
executables, each reported on its own, and never appears in ListPods or in events.

- ``id``: a UUID (the form rkt uses), ``uuid5`` of the resource's kind, name and
  creation time (:func:`pod_uuid`): the same in ListPods, InspectPod and ListenEvents,
  across daemon restarts, and new when a pod of the same name is made again after a
  free. InspectPod and GetLogs also accept the pod's name (an extension).
- ``state``: RUNNING while any app runs, EXITED once apps ran and none runs, PREPARED
  when recorded and never started. ``pid``: the first running app's process (``runc``
  for a container).
- ``cgroup`` (empty unless running): the cgroup the pod's processes live in, as a path
  below the hierarchy root - on cgroup v1 and hybrid nodes the same in every hierarchy
  the provisioner manages (cpu, cpuset, pids, freezer), on v2 in the unified one.
  A pod of one app (every executable, a one-container pod) has its own: the app's leaf
  ``/<root>/<cell...>/_x.<process>``. A pod of several containers has no cgroup of its
  own (each container has a leaf in the pod's cell), so ``cgroup`` is the deepest one
  that holds them all - its cell - and each app carries its own leaf in its annotation
  ``provisioner/cgroup``; the ``pod_sub_cgroups`` filter checks those (see
  ``rkt_match.py``), so it names only the pod the given cgroup belongs to.
- apps: ``exit_code`` -1 until the app exited (rkt's value when no status is written),
  then its exit status; an app killed by signal N reports N, as rkt's systemd stage1
  does (it writes ``ExecMainStatus``, which systemd sets to the signal number), and
  ``runc``'s 128+N for a container killed by signal N is reported as N too. The app
  annotation ``provisioner/exit-signal`` names the signal then; ``provisioner/started-at``
  (ns) and ``provisioner/restarts`` describe its current or last run (the events are
  derived from them), ``provisioner/cgroup`` is its own cgroup.
- images: a container app's image ``id`` is its manifest digest, its ``name`` the
  reference, with the store's metadata (manifest bytes, size, import time; see
  ``provisioner.node.oci.image_info``). ListImages lists the unpacked images.
- pod annotations: ``provisioner/kind`` and ``provisioner/name`` (what the pod is in
  the provisioner), ``manifest-set``, then the pod's labels; ``manifest``: the recorded
  spec (JSON).
- logs: the apps' log files, every app's lines in time order without ``app_name``.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence

from provisioner._proto.v1alpha import api_pb2 as rkt
from provisioner.daemon.rkt_match import CGROUP_KEY
from provisioner.errors import NotFound
from provisioner.model import Kind, PodSpec
from provisioner.model_json import loads
from provisioner.names import container_process_name
from provisioner.node import (
    ImageInfo,
    LogLine,
    LogReader,
    NodeLayer,
    Pods,
    ShimStatus,
    executable_leaf,
    is_running,
)

_OCI = rkt.ImageFormat(type=rkt.IMAGE_TYPE_OCI, version="1.0")
#: Namespace of pod ids: uuid5(this, "<kind>/<name>/<created_at_ns>").
POD_ID_NAMESPACE = uuid.UUID("5d2a4c0e-4f6b-4f3c-9a55-7a1c6a0d2b10")
KIND_KEY, NAME_KEY = "provisioner/kind", "provisioner/name"
SIGNAL_KEY = "provisioner/exit-signal"
#: App annotations of its current (or last) run: start (ns) and restarts by the daemon.
STARTED_KEY, RESTARTS_KEY = "provisioner/started-at", "provisioner/restarts"
#: runc exits with 128 + N when its container was killed by signal N.
_RUNC_SIGNAL_BASE, _MAX_SIGNAL = 128, 64
_EXECUTABLE_KINDS = (Kind.EXECUTABLE, Kind.PERSISTENT_EXECUTABLE)


def pod_uuid(kind: str, name: str, created_at_ns: int) -> str:
    """The rkt id of a pod: stable for one incarnation of a resource."""
    return str(uuid.uuid5(POD_ID_NAMESPACE, f"{kind}/{name}/{created_at_ns}"))


def app_exit(status: ShimStatus, container: bool) -> tuple[int, int]:
    """(exit code as rkt reports it, signal number or 0) of an ended app."""
    if status.exit_signal:
        return status.exit_signal, status.exit_signal
    code = status.exit_code
    if code is None:
        return -1, 0
    if container and _RUNC_SIGNAL_BASE < code <= _RUNC_SIGNAL_BASE + _MAX_SIGNAL:
        return code - _RUNC_SIGNAL_BASE, code - _RUNC_SIGNAL_BASE
    return code, 0


def annotation(values: Iterable[rkt.KeyValue], key: str) -> str:
    """The value of ``key`` among ``values`` ("" when absent)."""
    return next((kv.value for kv in values if kv.Key == key), "")


def _common(paths: list[str]) -> str:
    """The deepest cgroup path that holds every one of ``paths``."""
    if not paths:
        return ""
    common = os.path.commonpath(paths)
    return common if common != "/" else ""


class ProvisionerPods:
    """Pods and images of a node layer, read fresh at every call."""

    def __init__(self, layer: NodeLayer) -> None:
        self.layer = layer
        self._images: dict[str, ImageInfo | None] = {}  # by digest: an image never changes

    def _image_info(self, pods: Pods, digest: str) -> ImageInfo | None:
        if digest not in self._images or self._images[digest] is None:
            self._images[digest] = pods.images.info(digest) if digest else None
        return self._images[digest]

    def _cell_path(self, cell: str) -> str:
        """A cell's cgroup, below the hierarchy root (the root cell ``""``: ``/<root>``)."""
        return "/" + "/".join([self.layer.cgroups.root_name,
                               *(cell.split("/") if cell else [])])

    def _leaf_path(self, cell: str, process: str) -> str:
        return f"{self._cell_path(cell)}/{executable_leaf(process)}"

    def _app(self, name: str, process: str, cell: str, image: rkt.Image,
             container: bool) -> tuple[rkt.App, ShimStatus | None, bool]:
        status = self.layer.read_shim_status(process)
        running = status is not None and is_running(status)
        app = rkt.App(name=name, image=image, exit_code=-1, annotations=[
            rkt.KeyValue(Key=CGROUP_KEY, value=self._leaf_path(cell, process))])
        if status is not None:
            app.annotations.extend([
                rkt.KeyValue(Key=STARTED_KEY, value=str(status.started_at_ns or 0)),
                rkt.KeyValue(Key=RESTARTS_KEY, value=str(status.restart_count))])
        if running:
            app.state = rkt.APP_STATE_RUNNING
        elif status is not None:
            app.state = rkt.APP_STATE_EXITED
            app.exit_code, sig = app_exit(status, container)
            if sig:
                with_name = signal.Signals(sig).name if sig in signal.valid_signals() else ""
                app.annotations.append(rkt.KeyValue(Key=SIGNAL_KEY, value=with_name or str(sig)))
        return app, status, running

    def _pod(self, kind: Kind, name: str, created_at_ns: int, cell: str, spec_json: str,
             apps: list[tuple[rkt.App, ShimStatus | None, bool]],
             annotations: list[rkt.KeyValue]) -> rkt.Pod:
        pid, started, ran, cgroups = 0, 0, False, []
        for app, status, running in apps:
            ran = ran or status is not None
            if running and status is not None:
                pid = pid or status.child_pid or 0
                cgroups.append(annotation(app.annotations, CGROUP_KEY))
            if status is not None and status.started_at_ns:
                started = min(started or status.started_at_ns, status.started_at_ns)
        state = (rkt.POD_STATE_RUNNING if pid else
                 rkt.POD_STATE_EXITED if ran else rkt.POD_STATE_PREPARED)
        if pid and len(apps) > 1:  # no cgroup of its own: the cell holds its apps' leaves
            cgroups = [self._cell_path(cell)]
        return rkt.Pod(
            id=pod_uuid(kind.value, name, created_at_ns), pid=pid, state=state,
            apps=[app for app, _, _ in apps], manifest=spec_json.encode(),
            annotations=[rkt.KeyValue(Key=KIND_KEY, value=kind.value),
                         rkt.KeyValue(Key=NAME_KEY, value=name), *annotations],
            cgroup=_common(cgroups) if pid else "", created_at=created_at_ns,
            started_at=started)

    def pods(self) -> list[rkt.Pod]:
        """Every declared pod with its apps, state, cgroup, networks and images."""
        out = []
        pods = Pods(self.layer)
        for record in self.layer.store.list_resources(Kind.POD):
            spec = loads(record.spec_json)
            if not isinstance(spec, PodSpec):
                continue
            digests = pods.image_digests(spec.name)
            apps = []
            for container in spec.containers:
                digest = digests.get(container.name, "")
                image = _image(digest, container.image, self._image_info(pods, digest))
                apps.append(self._app(container.name,
                                      container_process_name(spec.name, container.name),
                                      spec.cell, image, container=True))
            address = pods.networks.address(spec.name)
            pod = self._pod(Kind.POD, spec.name, record.created_at_ns, spec.cell,
                            record.spec_json, apps,
                            [rkt.KeyValue(Key="manifest-set", value=record.manifest_set),
                             *(rkt.KeyValue(Key=k, value=v) for k, v in spec.labels)])
            if address is not None and pod.state == rkt.POD_STATE_RUNNING:
                pod.networks.append(rkt.Network(name=pods.networks.name,
                                                ipv4=address.address))
            out.append(pod)
        persistent = {r.name for r in self.layer.store.list_resources(
            Kind.PERSISTENT_EXECUTABLE)}
        for kind in _EXECUTABLE_KINDS:
            for record in self.layer.store.list_resources(kind):
                if kind is Kind.EXECUTABLE and record.name in persistent:
                    continue  # the shadow record of a persistent one being started
                cell = str(getattr(loads(record.spec_json), "cell", "") or "")
                app = self._app(record.name, record.name, cell, rkt.Image(), container=False)
                out.append(self._pod(kind, record.name, record.created_at_ns, cell,
                                     record.spec_json, [app],
                                     [rkt.KeyValue(Key="manifest-set",
                                                   value=record.manifest_set)]))
        return out

    def images(self) -> list[rkt.Image]:
        """Every unpacked image of the store, with its manifest data."""
        pods = Pods(self.layer)
        return [_image(digest, "", self._image_info(pods, digest))
                for digest in sorted(pods.images.digests())]

    def logs(self, pod: rkt.Pod, app_name: str,
             stop: threading.Event) -> tuple[list[LogLine], Iterable[LogLine]]:
        """The pod's log lines: every app's (merged by time) or only ``app_name``'s."""
        names = [app.name for app in pod.apps]
        if app_name and app_name not in names:
            raise NotFound(f"pod {pod.id} has no app {app_name!r} (it has {', '.join(names)})")
        if not names:
            raise NotFound(f"pod {pod.id} has no apps")
        name = annotation(pod.annotations, NAME_KEY)
        is_pod = annotation(pod.annotations, KIND_KEY) == Kind.POD.value
        backlog: list[LogLine] = []
        followers = []
        for app in [app_name] if app_name else names:
            process = container_process_name(name, app) if is_pod else app
            reader = LogReader(self.layer.log_dir(process))
            existing = reader.read()
            since = existing[-1].ts_ns + 1 if existing else None
            backlog.extend(existing)
            followers.append(reader.follow(since_ns=since, stop=stop))
        backlog.sort(key=lambda line: line.ts_ns)  # stable: each app's order is kept
        return backlog, followers[0] if len(followers) == 1 else _merged(followers, stop)


def _image(digest: str, reference: str, info: ImageInfo | None) -> rkt.Image:
    """An rkt image: the digest as id, the reference (or the first one pulled) as name."""
    if not digest:
        return rkt.Image(base_format=_OCI, name=reference)
    name = reference or (info.reference if info is not None else "") or digest
    tag = name.rsplit(":", 1)[1] if name.startswith("oci:") and name.count(":") > 1 else ""
    image = rkt.Image(base_format=_OCI, id=digest, name=name, version=tag or "latest")
    if info is not None:
        image.import_timestamp = info.imported_at_ns // 1_000_000_000
        image.size = info.size
        image.manifest = info.manifest
        image.labels.extend(rkt.KeyValue(Key=k, value=v) for k, v in info.labels)
    return image


def _merged(followers: Sequence[Iterable[LogLine]], stop: threading.Event) -> Iterator[LogLine]:
    """The lines of several followers as they come (one thread each, until ``stop``)."""
    lines: queue.Queue[LogLine] = queue.Queue()

    def pump(follower: Iterable[LogLine]) -> None:
        for line in follower:
            lines.put(line)

    for follower in followers:
        threading.Thread(target=pump, args=(follower,), daemon=True,
                         name="rkt-logs").start()
    while not stop.is_set():
        try:
            yield lines.get(timeout=0.1)
        except queue.Empty:
            continue
