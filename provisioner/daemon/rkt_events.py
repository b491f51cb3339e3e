"""rkt events from what changed on the node: the pods observed, compared with the last
observation, each transition recorded once.

A :class:`EventWatcher` looks at the pods of a :class:`~provisioner.daemon.rkt.PodSource`
(:meth:`EventWatcher.scan`) and compares them with the previous observation, which it
keeps in the store (meta key :data:`SNAPSHOT_KEY`) and replaces in the same transaction
that records the events. So every transition is recorded exactly once, whoever caused
it - an API call, a manifest applied by the local executor, the supervisor restarting a
process, the daemon starting persistent executables at its start - and across daemon
restarts: what changed while no daemon ran is recorded at the next start. A call that
changes nothing changes no observation, and sends nothing.

Every ``interval_s`` (0.2 s) the watcher asks an
:class:`~provisioner.daemon.state_cache.ObservedCache` for the pods, which observes them
again only when GetState's would (the store's generation or the shim status folder's
time changed: one query and one stat), and every ``rescan_s`` (5 s) regardless. An
idle daemon used to observe every pod five times a second: ~4 ms of CPU a scan for 50
resources, 2% of a core for doing nothing (and ten times that for 500).

Transitions (:func:`transitions`), in this order per pod:

- a pod seen for the first time: ``POD_PREPARED``;
- not running -> running: ``POD_STARTED``;
- per app: a run that ended (it ran, and now it does not, or another run replaced it):
  ``APP_EXITED`` (data: ``app``, and ``exit_code`` when the app is not running now);
  a new run: ``APP_STARTED`` (data: ``app``). A run that started and ended between two
  observations gives both, and restarts missed between two observations (the restart
  count grew by more than one) one pair each;
- running -> not running (every app stopped): ``POD_EXITED``; a pod that ran only
  between two observations gets ``POD_STARTED`` and ``POD_EXITED``;
- a pod gone: ``APP_EXITED`` for apps still running, ``POD_EXITED`` if it ran, then
  ``POD_GARBAGE_COLLECTED``.

Event ``id`` is the pod's id, ``from`` the pod's name for pod events and the app's name
for app events; the events are store events of kind ``rkt`` (``rkt_match.event_from_store``).
Timestamps are those of the observation: at most ``interval_s`` late for what the
provisioner and its supervisors do (every start, exit, restart and stop of a process is
a status written in that folder), at most ``rescan_s`` for what only a full look shows
(a process that died after its supervisor was killed by hand).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Protocol

from provisioner._proto.v1alpha import api_pb2 as rkt
from provisioner.daemon.rkt_match import EVENT_KIND
from provisioner.daemon.rkt_pods import NAME_KEY, RESTARTS_KEY, STARTED_KEY, annotation
from provisioner.daemon.state_cache import ObservedCache
from provisioner.errors import ProvisionerError
from provisioner.node import NodeLayer
from provisioner.records import record

log = logging.getLogger("provisioner.daemon.rkt")

SNAPSHOT_KEY = "rkt.observed_pods"
#: How often the watcher looks at every pod even when nothing it knows of has changed.
RESCAN_S = 5.0
E = rkt.EventType


class Pods(Protocol):
    """What the watcher compares: the pods as the rkt API shows them now."""
    def pods(self) -> list[rkt.Pod]:
        """Every pod, as the rkt API describes it."""


@record
class Emitted:
    """One rkt event to record: type, pod id, ``from`` name and data."""

    type: int
    id: str
    name: str
    data: dict[str, str]


def observe(pods: list[rkt.Pod]) -> dict[str, Any]:
    """What the events are derived from: per pod id its name, whether it runs, and per
    app ``[started_at_ns, running, restarts, exit_code]``."""
    out: dict[str, Any] = {}
    for pod in pods:
        apps = {app.name: [int(annotation(app.annotations, STARTED_KEY) or 0),
                           app.state == rkt.APP_STATE_RUNNING,
                           int(annotation(app.annotations, RESTARTS_KEY) or 0),
                           app.exit_code]
                for app in pod.apps}
        out[pod.id] = {"name": annotation(pod.annotations, NAME_KEY) or pod.id,
                       "running": pod.state == rkt.POD_STATE_RUNNING, "apps": apps}
    return out


def transitions(old: dict[str, Any], new: dict[str, Any]) -> list[Emitted]:
    """The events between two observations (see the module docstring)."""
    events: list[Emitted] = []
    for pod_id, pod in new.items():
        before = old.get(pod_id)

        def pod_event(kind: int, pod_id: str = pod_id, name: str = pod["name"]) -> None:
            events.append(Emitted(kind, pod_id, name, {}))

        if before is None:
            pod_event(E.EVENT_TYPE_POD_PREPARED)
            before = {"running": False, "apps": {}}
        ran_between = False
        if pod["running"] and not before["running"]:
            pod_event(E.EVENT_TYPE_POD_STARTED)
        app_events: list[Emitted] = []
        for app, (started, running, restarts, code) in pod["apps"].items():
            was = before["apps"].get(app)
            w_started, w_running, w_restarts = (was[0], was[1], was[2]) if was else (0, False, 0)
            exited = Emitted(E.EVENT_TYPE_APP_EXITED, pod_id, app, {"app": app})
            begun = Emitted(E.EVENT_TYPE_APP_STARTED, pod_id, app, {"app": app})
            final = Emitted(E.EVENT_TYPE_APP_EXITED, pod_id, app,
                            {"app": app, "exit_code": str(code)})
            new_run = bool(started) and started != w_started
            if w_running and (new_run or not running):
                app_events.append(exited if running else final)
            if new_run:
                missed = max(0, restarts - w_restarts - 1) if was else 0
                app_events.extend([begun, exited] * missed)
                app_events.append(begun)
                if not running:
                    app_events.append(final)
                    ran_between = True
        only_between = ran_between and not pod["running"] and not before["running"]
        if only_between:
            pod_event(E.EVENT_TYPE_POD_STARTED)
        events.extend(app_events)
        if (before["running"] and not pod["running"]) or only_between:
            pod_event(E.EVENT_TYPE_POD_EXITED)
    for pod_id, pod in old.items():
        if pod_id in new:
            continue
        for app, (_started, running, _restarts, _code) in pod["apps"].items():
            if running:
                events.append(Emitted(E.EVENT_TYPE_APP_EXITED, pod_id, app, {"app": app}))
        if pod["running"]:
            events.append(Emitted(E.EVENT_TYPE_POD_EXITED, pod_id, pod["name"], {}))
        events.append(Emitted(E.EVENT_TYPE_POD_GARBAGE_COLLECTED, pod_id, pod["name"], {}))
    return events


def _load(raw: str | None) -> dict[str, Any]:
    """A stored observation (an unreadable one counts as none)."""
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class EventWatcher:
    """Observes the pods and records their transitions (see the module docstring)."""

    def __init__(self, layer: NodeLayer, source: Pods, interval_s: float = 0.2,
                 rescan_s: float = RESCAN_S) -> None:
        self.layer, self.source, self.interval_s = layer, source, interval_s
        self._lock = threading.Lock()
        # The pods observed, reused while nothing the change key shows has changed.
        self._observed = ObservedCache(layer, lambda: observe(source.pods()), rescan_s)
        self._recorded: dict[str, Any] | None = None  # the observation last recorded

    @property
    def scans(self) -> int:
        """How many times :meth:`poll` observed the pods (for tests)."""
        return self._observed.observations

    def scan(self) -> int:
        """Observe once and record what changed; the number of events recorded."""
        return self._record(observe(self.source.pods()))

    def poll(self) -> int:
        """Record what changed if the pods were observed again: when anything can have
        changed since the last observation (GetState's change key differs, or that
        observation's key could not be trusted), or when it is ``rescan_s`` old; else
        nothing. The number of events recorded."""
        now = self._observed.get()
        if now is self._recorded:
            return 0
        recorded = self._record(now)
        self._recorded = now
        return recorded

    def _record(self, now: dict[str, Any]) -> int:
        """Record the transitions from the stored observation to NOW. The comparison and
        the write happen in one write transaction, so two watchers of one store never
        record a transition twice."""
        with self._lock:
            store = self.layer.store
            if now == _load(store.get_meta(SNAPSHOT_KEY)):
                return 0
            with store.transaction(observation=True) as tx:
                events = transitions(_load(tx.get_meta(SNAPSHOT_KEY)), now)
                tx.set_meta(SNAPSHOT_KEY, json.dumps(now, sort_keys=True))
                for e in events:
                    tx.record_event(EVENT_KIND, e.name, E.Name(e.type),
                                    json.dumps({"id": e.id, "data": e.data}))
            return len(events)

    def run(self, stopping: threading.Event) -> None:
        """:meth:`poll` every ``interval_s`` until ``stopping`` is set."""
        while True:
            try:
                self.poll()
            except (ProvisionerError, OSError) as exc:  # the next scan tries again
                if stopping.is_set() or str(exc).endswith(" is closed"):
                    return  # the daemon is closing (or closed) its store
                log.warning("rkt events: observing the pods failed: %s", exc)
            if stopping.wait(self.interval_s):
                return

    def start(self, stopping: threading.Event) -> threading.Thread:
        """Run the watcher in a daemon thread until ``stopping`` is set."""
        thread = threading.Thread(target=self.run, args=(stopping,), daemon=True,
                                  name="rkt-events")
        thread.start()
        return thread
