"""v1alpha.PublicAPI: the filter, event and log helpers as pure functions, then every
RPC through a real channel (no pods or images exist yet, so those are empty or
NOT_FOUND; GetLogs streaming is exercised with a pod source made for the test)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc
import pytest

import provisioner
from provisioner._proto.v1alpha import api_pb2 as rkt
from provisioner._proto.v1alpha import api_pb2_grpc as rkt_grpc
from provisioner.daemon.rkt_events import Emitted, observe, transitions
from provisioner.daemon.rkt_match import (
    NS,
    LogQuery,
    event_from_store,
    event_matches,
    follow_lines,
    image_matches,
    pod_matches,
    select_images,
    select_lines,
    select_pods,
)
from provisioner.daemon.rkt_pods import RESTARTS_KEY, STARTED_KEY
from provisioner.model import ExecutableSpec
from provisioner.node.process.logs import LogLine
from provisioner.node.state.store import Event as StoreEvent
from tests.daemon.node_harness import code_of, details_of, rpc_error, running_daemon

KV = rkt.KeyValue


def pod(id: str, state: int = rkt.POD_STATE_RUNNING, apps: Iterable[tuple[str, str]] = (),
        nets: Iterable[str] = (), annotations: Iterable[tuple[str, str]] = (),
        cgroup: str = "") -> rkt.Pod:
    return rkt.Pod(id=id, state=state,  # type: ignore[arg-type]
                   apps=[rkt.App(name=n, image=rkt.Image(id=i, manifest=b"{}")) for n, i in apps],
                   networks=[rkt.Network(name=n) for n in nets], manifest=b"{...}",
                   annotations=[KV(Key=k, value=v) for k, v in annotations], cgroup=cgroup)


PODS = [
    pod("p1", apps=[("web", "sha512-a"), ("log", "sha512-b")], nets=["default", "lan"],
        annotations=[("team", "x"), ("tier", "1")], cgroup="/machine.slice/p1"),
    pod("p2", rkt.POD_STATE_EXITED, apps=[("web", "sha512-a")], nets=["default"],
        annotations=[("team", "x")], cgroup="/machine.slice/p2"),
]


def ids(pods: list[rkt.Pod]) -> list[str]:
    return [p.id for p in pods]


def test_pod_filters_and_inside_or_across_any_of_and_all_of() -> None:
    f = rkt.PodFilter
    assert ids(select_pods(PODS, [], True)) == ["p1", "p2"]
    assert ids(select_pods(PODS, [f(ids=["p2", "nope"])], True)) == ["p2"]
    assert ids(select_pods(PODS, [f(states=[rkt.POD_STATE_RUNNING])], True)) == ["p1"]
    assert ids(select_pods(PODS, [f(app_names=["web", "log"])], True)) == ["p1"]  # all of
    assert ids(select_pods(PODS, [f(app_names=["web"])], True)) == ["p1", "p2"]
    assert ids(select_pods(PODS, [f(image_ids=["sha512-a", "sha512-b"])], True)) == ["p1"]
    assert ids(select_pods(PODS, [f(network_names=["default", "lan"])], True)) == ["p1"]
    assert ids(select_pods(PODS, [f(annotations=[KV(Key="team", value="x"),
                                                  KV(Key="tier", value="1")])], True)) == ["p1"]
    assert ids(select_pods(PODS, [f(cgroups=["/machine.slice/p2", "/x"])], True)) == ["p2"]
    assert ids(select_pods(PODS, [f(pod_sub_cgroups=["/machine.slice/p1/app/x"])], True)) == [
        "p1"]
    assert not pod_matches(PODS[0], f(pod_sub_cgroups=["/machine.slice/p1x"]))
    # AND inside a filter, OR across filters.
    assert ids(select_pods(PODS, [f(ids=["p1"], states=[rkt.POD_STATE_EXITED])], True)) == []
    assert ids(select_pods(PODS, [f(ids=["p1"]), f(states=[rkt.POD_STATE_EXITED])], True)) == [
        "p1", "p2"]


def test_detail_false_leaves_manifests_out() -> None:
    brief = select_pods(PODS, [], detail=False)
    assert all(not p.manifest and not any(a.image.manifest for a in p.apps) for p in brief)
    assert select_pods(PODS, [], detail=True)[0].manifest == b"{...}"
    assert PODS[0].manifest == b"{...}"  # the source is not modified


IMAGES = [
    rkt.Image(id="i1", name="coreos.com/etcd", import_timestamp=100, manifest=b"{}",
              labels=[KV(Key="arch", value="amd64"), KV(Key="os", value="linux")]),
    rkt.Image(id="i2", name="k8s.io/etcd-backup", import_timestamp=200,
              annotations=[KV(Key="a", value="b")]),
    rkt.Image(id="i3", name="k8s.io/etcd", import_timestamp=300),
]


def test_image_filters() -> None:
    f = rkt.ImageFilter

    def names(*filters: rkt.ImageFilter) -> list[str]:
        return [i.id for i in select_images(IMAGES, list(filters), False)]

    assert names(f(base_names=["etcd"])) == ["i1", "i3"]
    assert names(f(prefixes=["k8s.io/"])) == ["i2", "i3"]
    assert names(f(keywords=["backup", "nothing"])) == ["i2"]
    assert names(f(full_names=["k8s.io/etcd"])) == ["i3"]
    assert names(f(labels=[KV(Key="arch", value="amd64"), KV(Key="os", value="linux")])) == ["i1"]
    assert names(f(labels=[KV(Key="arch", value="arm64")])) == []
    assert names(f(annotations=[KV(Key="a", value="b")])) == ["i2"]
    assert names(f(imported_after=100)) == ["i2", "i3"]  # strict bounds
    assert names(f(imported_before=300)) == ["i1", "i2"]
    assert names(f(imported_after=100, imported_before=300)) == ["i2"]
    assert names(f(ids=["i1"]), f(imported_after=250)) == ["i1", "i3"]
    assert not select_images(IMAGES, [], False)[0].manifest
    assert image_matches(IMAGES[0], f())


def test_store_events_map_to_rkt_events() -> None:
    body = '{"id": "u-1", "data": {"app": "web"}}'
    started = event_from_store(StoreEvent(1, 5 * NS + 7, "rkt", "web",
                                          "EVENT_TYPE_APP_STARTED", body, 3))
    assert started is not None and started.type == rkt.EVENT_TYPE_APP_STARTED
    assert started.id == "u-1" and getattr(started, "from") == "web"
    assert started.time == 5
    assert {kv.Key: kv.value for kv in started.data} == {"app": "web", "generation": "3"}
    # The provisioner's own records are not rkt events (they repeat for no-op calls).
    for kind, action in (("Pod", "started"), ("Cell", "allocated"), ("Executable", "exited")):
        assert event_from_store(StoreEvent(2, NS, kind, "x", action, "", 4)) is None
    assert event_from_store(StoreEvent(3, NS, "rkt", "x", "EVENT_TYPE_NOPE", body, 5)) is None
    assert event_from_store(StoreEvent(3, NS, "rkt", "x", "EVENT_TYPE_POD_STARTED", "{", 5)) \
        is None
    f = rkt.EventFilter
    assert event_matches(started, f(types=[rkt.EVENT_TYPE_APP_STARTED,
                                           rkt.EVENT_TYPE_APP_EXITED], names=["web"]))
    assert not event_matches(started, f(types=[rkt.EVENT_TYPE_APP_STARTED], names=["db"]))
    assert not event_matches(started, f(ids=["u-2"]))


def observed(state: int, *apps: tuple[str, int, bool, int]) -> rkt.Pod:
    """A pod "p" (id "u") with apps (name, started_at_ns, running, restarts)."""
    return rkt.Pod(id="u", state=state, annotations=[KV(Key="provisioner/name", value="p")],  # type: ignore[arg-type]
                   apps=[rkt.App(name=n, exit_code=-1 if up else 9,
                                 state=rkt.APP_STATE_RUNNING if up else rkt.APP_STATE_EXITED,
                                 annotations=[KV(Key=STARTED_KEY, value=str(t)),
                                              KV(Key=RESTARTS_KEY, value=str(r))])
                         for n, t, up, r in apps])


def test_transitions_are_derived_once_from_observations() -> None:
    E = rkt.EventType
    run, ex = rkt.POD_STATE_RUNNING, rkt.POD_STATE_EXITED

    def diff(before: list[rkt.Pod], after: list[rkt.Pod]) -> list[tuple[str, str]]:
        return [(E.Name(e.type)[11:], e.name) for e in transitions(observe(before),
                                                                   observe(after))]

    prepared = rkt.Pod(id="u", state=rkt.POD_STATE_PREPARED,
                       annotations=[KV(Key="provisioner/name", value="p")])
    both = observed(run, ("a", 1, True, 0), ("b", 2, True, 0))
    assert diff([], [prepared]) == [("POD_PREPARED", "p")]
    assert diff([prepared], [both]) == [("POD_STARTED", "p"), ("APP_STARTED", "a"),
                                        ("APP_STARTED", "b")]
    assert diff([both], [both]) == []  # nothing changed: nothing sent
    one = observed(run, ("a", 1, True, 0), ("b", 2, False, 0))
    assert diff([both], [one]) == [("APP_EXITED", "b")]  # the pod still runs
    assert diff([one], [observed(ex, ("a", 1, False, 0), ("b", 2, False, 0))]) == [
        ("APP_EXITED", "a"), ("POD_EXITED", "p")]
    # A restart by the supervisor between two looks; two restarts: two pairs.
    assert diff([both], [observed(run, ("a", 5, True, 1), ("b", 2, True, 0))]) == [
        ("APP_EXITED", "a"), ("APP_STARTED", "a")]
    assert diff([both], [observed(run, ("a", 5, True, 2), ("b", 2, True, 0))]) == [
        ("APP_EXITED", "a"), ("APP_STARTED", "a"), ("APP_EXITED", "a"), ("APP_STARTED", "a")]
    # A pod that ran only between two looks; a pod that went away while running.
    assert diff([prepared], [observed(ex, ("a", 1, False, 0))]) == [
        ("POD_STARTED", "p"), ("APP_STARTED", "a"), ("APP_EXITED", "a"), ("POD_EXITED", "p")]
    assert diff([both], []) == [("APP_EXITED", "a"), ("APP_EXITED", "b"), ("POD_EXITED", "p"),
                                ("POD_GARBAGE_COLLECTED", "p")]
    final = transitions(observe([one]), observe([observed(ex, ("a", 1, False, 0),
                                                          ("b", 2, False, 0))]))[0]
    assert final == Emitted(E.EVENT_TYPE_APP_EXITED, "u", "a", {"app": "a", "exit_code": "9"})


LINES = [LogLine(t * NS, "stdout" if t % 2 else "stderr", f"line {t}") for t in range(10, 20)]


def texts(lines: Iterable[LogLine]) -> list[str]:
    return [line.text for line in lines]


def test_log_selection_lines_since_until() -> None:
    assert texts(select_lines(LINES, LogQuery())) == texts(LINES)
    assert texts(select_lines(LINES, LogQuery(lines=3))) == ["line 17", "line 18", "line 19"]
    assert texts(select_lines(LINES, LogQuery(since_s=15, until_s=17))) == ["line 15",
                                                                            "line 16"]
    assert texts(select_lines(LINES, LogQuery(lines=1, until_s=13))) == ["line 12"]
    assert select_lines(LINES, LogQuery(since_s=30)) == []


def test_follow_stops_at_until_by_line_or_by_clock() -> None:
    query = LogQuery(follow=True, since_s=12, until_s=15)
    assert texts(follow_lines(LINES, query, lambda: 0)) == ["line 12", "line 13", "line 14"]
    clock = iter([0, 0, 16 * NS])
    assert texts(follow_lines(LINES[3:], query, lambda: next(clock))) == ["line 13", "line 14"]
    assert texts(follow_lines(LINES, LogQuery(follow=True), lambda: 0)) == texts(LINES)


class OnePod:
    """A pod source for the test: one pod with a backlog and lines that follow."""

    def pods(self) -> list[rkt.Pod]:
        return [PODS[0]]

    def images(self) -> list[rkt.Image]:
        return IMAGES

    def logs(self, pod: rkt.Pod, app_name: str,
             stop: threading.Event) -> tuple[list[LogLine], Iterable[LogLine]]:
        def new() -> Iterator[LogLine]:
            while not stop.wait(0.05):
                yield LogLine(time.time_ns(), "stdout", "tick")
        now = time.time_ns()
        return [LogLine(now - 2 * NS, "stdout", "old"), LogLine(now, "stderr", "recent")], new()


@pytest.mark.kernel
def test_every_rpc_through_a_real_channel(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as daemon:
        api = rkt_grpc.PublicAPIStub(daemon.channel)  # type: ignore[no-untyped-call]
        info = api.GetInfo(rkt.GetInfoRequest(), timeout=5).info
        assert (info.rkt_version, info.api_version) == (provisioner.__version__, "1.0.0-alpha")
        assert info.global_flags.dir == daemon.layer.config.state_dir
        assert list(api.ListPods(rkt.ListPodsRequest(detail=True), timeout=5).pods) == []
        assert list(api.ListImages(rkt.ListImagesRequest(), timeout=5).images) == []
        for call in (lambda: api.InspectPod(rkt.InspectPodRequest(id="p1"), timeout=5),
                     lambda: api.InspectImage(rkt.InspectImageRequest(id="i1"), timeout=5),
                     lambda: list(api.GetLogs(rkt.GetLogsRequest(pod_id="p1"), timeout=5))):
            assert code_of(rpc_error(call)) is grpc.StatusCode.NOT_FOUND
        error = rpc_error(lambda: list(api.GetLogs(rkt.GetLogsRequest(pod_id="p", lines=-1))))
        assert code_of(error) is grpc.StatusCode.INVALID_ARGUMENT
        # ListenEvents: history from since_time, ended by until_time in the future.
        start = int(time.time())
        daemon.layer.start_executable(ExecutableSpec("ev", "exit 0"))
        time.sleep(0.6)  # the watcher looks every 0.2 s
        until = int(time.time()) + 2
        remaining = until - time.time()
        began = time.monotonic()
        request = rkt.ListenEventsRequest(filter=rkt.EventFilter(
            since_time=start, until_time=until, types=[rkt.EVENT_TYPE_POD_PREPARED,
                                                       rkt.EVENT_TYPE_POD_EXITED]))
        events = [e for r in api.ListenEvents(request, timeout=10) for e in r.events]
        elapsed = time.monotonic() - began
        assert remaining - 0.1 <= elapsed < remaining + 1.0  # closed at until_time
        assert [(e.type, getattr(e, "from")) for e in events] == [
            (rkt.EVENT_TYPE_POD_PREPARED, "ev"), (rkt.EVENT_TYPE_POD_EXITED, "ev")]
        [ev] = api.ListPods(rkt.ListPodsRequest(), timeout=5).pods
        assert all(e.id == ev.id for e in events)
        # Without since_time: only what happens from now on, as it happens.
        live = api.ListenEvents(rkt.ListenEventsRequest(filter=rkt.EventFilter(
            until_time=int(time.time()) + 2, names=["live"],
            types=[rkt.EVENT_TYPE_POD_PREPARED])), timeout=10)
        threading.Timer(0.3, lambda: daemon.layer.start_executable(
            ExecutableSpec("live", "sleep 5"))).start()
        got = [(e.type, getattr(e, "from")) for r in live for e in r.events]
        assert got == [(rkt.EVENT_TYPE_POD_PREPARED, "live")]
        past = rkt.ListenEventsRequest(filter=rkt.EventFilter(since_time=start,
                                                              until_time=start - 1))
        assert list(api.ListenEvents(past, timeout=5)) == []


@pytest.mark.kernel
def test_get_logs_streams_lines_until_until_time(tmp_path: Path) -> None:
    with running_daemon(tmp_path, rkt_source=OnePod()) as daemon:
        api = rkt_grpc.PublicAPIStub(daemon.channel)  # type: ignore[no-untyped-call]
        assert api.InspectPod(rkt.InspectPodRequest(id="p1"), timeout=5).pod.id == "p1"
        got = list(api.GetLogs(rkt.GetLogsRequest(pod_id="p1", lines=1), timeout=5))
        assert [list(r.lines) for r in got] == [["recent"]]
        request = rkt.GetLogsRequest(pod_id="p1", follow=True, until_time=int(time.time()) + 1)
        began = time.monotonic()
        lines = [line for r in api.GetLogs(request, timeout=10) for line in r.lines]
        assert lines[:2] == ["old", "recent"] and set(lines[2:]) == {"tick"} and lines[2:]
        assert time.monotonic() - began < 3
        error = rpc_error(lambda: api.InspectPod(rkt.InspectPodRequest(id=""), timeout=5))
        assert code_of(error) is grpc.StatusCode.INVALID_ARGUMENT
        assert "pod id is required" in details_of(error)
