"""Pure helpers of the rkt API (``v1alpha.PublicAPI``): filters, the event mapping and
log selection. No I/O, no clock unless passed in; unit-tested on plain values.

Filter semantics (APIS.md section 4): inside one filter every field that is set must
match (AND); a list of filters matches if any one does (OR); no filters match
everything. Per field, ``ids``, ``states``, ``cgroups``, ``pod_sub_cgroups``,
``prefixes``, ``base_names``, ``keywords``, ``full_names`` (and for events ``types``,
``ids``, ``names``) match if any listed value matches; ``app_names``, ``image_ids``,
``network_names``, ``annotations`` and ``labels`` need all listed values.
``imported_after`` / ``imported_before`` are strict bounds in seconds (0: unset).
``pod_sub_cgroups`` matches a running pod whose cgroup is the given cgroup or one of
its ancestors (compared by path components, so ``/a/b`` is not a prefix of ``/a/bc``);
when the pod's apps name their own cgroups (app annotation :data:`CGROUP_KEY`: a pod of
several containers has no cgroup of its own, see ``rkt_pods.py``), the given cgroup
must be at or below one of its running apps' cgroups, so a neighbour in the same cell
never matches.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence

from provisioner._proto.v1alpha import api_pb2 as rkt
from provisioner.node import LogLine, StoreEvent
from provisioner.records import record

NS = 1_000_000_000
#: App annotation: the app's own cgroup (a path below the hierarchy root).
CGROUP_KEY = "provisioner/cgroup"
#: Kind of the store events that carry rkt events (``rkt_events.py`` writes them).
EVENT_KIND = "rkt"


def _pairs(values: Iterable[rkt.KeyValue]) -> set[tuple[str, str]]:
    return {(kv.Key, kv.value) for kv in values}


def _any(wanted: Sequence[object], have: Iterable[object]) -> bool:
    return not wanted or any(value in wanted for value in have)


def _all(wanted: Iterable[object], have: Iterable[object]) -> bool:
    return set(wanted) <= set(have)


def _under(cgroup: str, sub: str) -> bool:
    """Whether ``sub`` is ``cgroup`` or below it, by path components."""
    base = cgroup.rstrip("/")
    return bool(cgroup) and (sub.rstrip("/") == base or sub.startswith(base + "/"))


def pod_matches(pod: rkt.Pod, f: rkt.PodFilter) -> bool:
    """Whether ``pod`` passes every condition of the filter (an unset one passes)."""
    return (
        _any(f.ids, [pod.id])
        and _any(f.states, [pod.state])
        and _all(f.app_names, (app.name for app in pod.apps))
        and _all(f.image_ids, (app.image.id for app in pod.apps))
        and _all(f.network_names, (net.name for net in pod.networks))
        and _pairs(f.annotations) <= _pairs(pod.annotations)
        and _any(f.cgroups, [pod.cgroup])
        and (not f.pod_sub_cgroups or any(_under(c, s) for c in _own_cgroups(pod)
                                          for s in f.pod_sub_cgroups))
    )


def _own_cgroups(pod: rkt.Pod) -> list[str]:
    """Where a sub-cgroup must be for ``pod_sub_cgroups``: its running apps' own
    cgroups when they name them, else the pod's cgroup; nothing unless it runs."""
    if not pod.cgroup:
        return []
    apps = [kv.value for app in pod.apps if app.state == rkt.APP_STATE_RUNNING
            for kv in app.annotations if kv.Key == CGROUP_KEY]
    return [c for c in apps if _under(pod.cgroup, c)] or [pod.cgroup]


def base_name(name: str) -> str:
    """``coreos.com/etcd`` -> ``etcd``."""
    return name.rsplit("/", 1)[-1]


def image_matches(image: rkt.Image, f: rkt.ImageFilter) -> bool:
    """Whether ``image`` passes every condition of the filter (an unset one passes)."""
    name = image.name
    return (
        _any(f.ids, [image.id])
        and (not f.prefixes or any(name.startswith(p) for p in f.prefixes))
        and _any(f.base_names, [base_name(name)])
        and (not f.keywords or any(k in name for k in f.keywords))
        and _pairs(f.labels) <= _pairs(image.labels)
        and (not f.imported_after or image.import_timestamp > f.imported_after)
        and (not f.imported_before or image.import_timestamp < f.imported_before)
        and _pairs(f.annotations) <= _pairs(image.annotations)
        and _any(f.full_names, [name])
    )


def event_matches(event: rkt.Event, f: rkt.EventFilter) -> bool:
    """Types, ids and names; the time bounds are applied by the stream."""
    return (_any(f.types, [event.type]) and _any(f.ids, [event.id])
            and _any(f.names, [getattr(event, "from")]))


def select_pods(pods: Iterable[rkt.Pod], filters: Sequence[rkt.PodFilter],
                detail: bool) -> list[rkt.Pod]:
    """Pods matching any filter; without ``detail`` their manifests are left out."""
    out = []
    for pod in pods:
        if filters and not any(pod_matches(pod, f) for f in filters):
            continue
        copy = rkt.Pod()
        copy.CopyFrom(pod)
        if not detail:
            copy.ClearField("manifest")
            for app in copy.apps:
                app.image.ClearField("manifest")
        out.append(copy)
    return out


def select_images(images: Iterable[rkt.Image], filters: Sequence[rkt.ImageFilter],
                  detail: bool) -> list[rkt.Image]:
    """Copies of the images matching any filter, without the manifest unless ``detail``."""
    out = []
    for image in images:
        if filters and not any(image_matches(image, f) for f in filters):
            continue
        copy = rkt.Image()
        copy.CopyFrom(image)
        if not detail:
            copy.ClearField("manifest")
        out.append(copy)
    return out


# -- events ----------------------------------------------------------------------------


def event_from_store(event: StoreEvent) -> rkt.Event | None:
    """The rkt event a store event of kind :data:`EVENT_KIND` carries (``rkt_events.py``
    writes them: ``action`` the event type's name, ``name`` the ``from`` name, and
    ``message`` JSON ``{"id": pod uuid, "data": {...}}``), or None for any other store
    event: rkt events come only from observed state transitions, never from the
    provisioner's own records of what it did (which repeat for calls that change
    nothing). ``time`` is seconds; ``data`` the recorded pairs plus ``generation``."""
    if event.kind != EVENT_KIND:
        return None
    try:
        kind = rkt.EventType.Value(event.action)
        body = json.loads(event.message)
        pod_id, pairs = str(body["id"]), dict(body.get("data") or {})
    except (ValueError, KeyError, TypeError):
        return None
    data = [rkt.KeyValue(Key=str(k), value=str(v)) for k, v in pairs.items()]
    data.append(rkt.KeyValue(Key="generation", value=str(event.generation)))
    return rkt.Event(type=kind, id=pod_id, time=event.ts_ns // NS,  # type: ignore[arg-type]
                     data=data,
                     **{"from": event.name})


# -- logs ------------------------------------------------------------------------------


@record
class LogQuery:
    """GetLogs parameters: ``lines`` most recent (0: all); ``since_s`` <= time <
    ``until_s`` in seconds (0: unbounded); ``follow`` keeps the stream open."""

    lines: int = 0
    follow: bool = False
    since_s: int = 0
    until_s: int = 0

    def admits(self, line: LogLine) -> bool:
        """Whether ``line`` lies in the query's time bounds."""
        return ((not self.since_s or line.ts_ns >= self.since_s * NS)
                and (not self.until_s or line.ts_ns < self.until_s * NS))


def select_lines(backlog: Iterable[LogLine], query: LogQuery) -> list[LogLine]:
    """The existing lines a query returns: in the time bounds, then the last ``lines``."""
    chosen = [line for line in backlog if query.admits(line)]
    return chosen[-query.lines:] if query.lines > 0 else chosen


def follow_lines(new: Iterable[LogLine], query: LogQuery,
                 now_ns: Callable[[], int]) -> Iterator[LogLine]:
    """Lines written after the backlog, for ``follow``: those in the bounds, until a line
    at or after ``until_s`` arrives or the clock passes it (checked at each line; the
    caller also ends its wait for lines at that moment)."""
    for line in new:
        if query.until_s and (line.ts_ns >= query.until_s * NS
                              or now_ns() >= query.until_s * NS):
            return
        if query.admits(line):
            yield line


def format_line(line: LogLine) -> str:
    """A GetLogsResponse line: its text (stdout and stderr interleaved in time order,
    like the journal lines rkt returned)."""
    return line.text
