"""Protobuf <-> model round trips (every kind, every golden plan and observed state,
events), and resources from requests validated exactly like manifest files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from provisioner import serde
from provisioner._proto.provisioner.v1 import manifest_pb2 as mpb
from provisioner._proto.provisioner.v1 import node_pb2 as npb
from provisioner.errors import FailedPrecondition, InvalidArgument
from provisioner.events import ApplyEvent, EventType, Summary
from provisioner.image_state import ImageList, ImagePrune, ImageRecord, KeptImage
from provisioner.manifest import load
from provisioner.manifest.from_data import render_issues, validate_data
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
from provisioner.plan.compiler import compile_plan
from provisioner.plan.steps import Action, Change, Plan, Step
from provisioner.state import NodeState, ObservedResource, ProcessPhase, ProcessStatus
from tests.plans.test_plan_golden import CASES, desired_state, observed_state

EXAMPLES = Path(__file__).parent.parent / "examples" / "node"

SPECS: list[ResourceSpec] = [
    CellSpec("web"),
    CellSpec("web/cache", CellLimits(cpu_weight=50, cpu_max_us=250_000, cpuset_cpus="0-3,8",
                                     cpuset_mems="0"), True, True, (("tier", "a"),),
             (Ref(Kind.EXECUTABLE, "x"),)),
    CellSpec("only-max", CellLimits(cpu_max_us=2**40)),
    ExecutableSpec("x", "echo 0o17 no", "web", "text", (("A", "1"), ("B", "")), "/tmp", 0, 7,
                   RestartPolicy.ON_FAILURE, 0.5, (("k", "v"),), (Ref(Kind.CELL, "web"),)),
    ExecutableSpec("y", "true", stop_grace_s=90.0, restart_policy=RestartPolicy.ALWAYS),
    ExecutableSpec("z", "true", stop_grace_s=0.0015),
    PodSpec("p", (ContainerSpec("c", "busybox", "reg.example", ("sh", "-c", "x"), (("E", "1"),),
                                "/w"), ContainerSpec("d", "/oci/layout")), "web",
            RestartPolicy.ALWAYS, 3.25),
    PodSpec("ports", (ContainerSpec("c", "busybox", ports=(
        ContainerPort(8080, 18080), ContainerPort(53, 5353, Protocol.UDP),
        ContainerPort(9090))),)),
    PodSpec("br", (ContainerSpec("c", "busybox", pull_policy=PullPolicy.ALWAYS),
                   ContainerSpec("d", "busybox", pull_policy=PullPolicy.NEVER)),
            network=PodNetwork.BRIDGE),
    PodSpec("hn", (ContainerSpec("c", "busybox", ports=(ContainerPort(80),)),),
            host_network=True),
    DriverSpec("raft-1.2", "v1.0.0", "1.1", "/srv/raft.so", "ab" * 32),
    DriverSpec("plain", "1", "", "/srv/plain.so"),
    PersistentExecutableSpec("cron", "run-parts /etc/x", "nightly", enabled=False),
    PersistentExecutableSpec("on", "sleep 1"),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind.value}/{s.name}")
def test_every_kind_round_trips(spec: ResourceSpec) -> None:
    wire = serde.spec_to_proto(spec).SerializeToString()
    assert serde.spec_from_proto(mpb.Resource.FromString(wire)) == spec


@pytest.mark.parametrize("seconds, text", [(10.0, "10s"), (0.5, "500ms"), (90.0, "90s"),
                                           (0.0015, "0.0015s"), (0.0, "0s"), (1.25, "1250ms")])
def test_durations_are_strings_that_parse_back_exactly(seconds: float, text: str) -> None:
    assert serde.format_duration(seconds) == text
    assert serde.parse_duration(text) == seconds
    assert serde.parse_duration("") == 10.0


def test_restart_policies_map_to_the_enum() -> None:
    assert serde.policy_to_proto(RestartPolicy.ON_FAILURE) == mpb.RESTART_POLICY_ON_FAILURE
    assert serde.policy_from_proto(mpb.RESTART_POLICY_UNSPECIFIED) is RestartPolicy.NEVER
    with pytest.raises(InvalidArgument):
        serde.policy_from_proto(99)


def test_resources_from_requests_validate_into_the_same_specs() -> None:
    """Resource -> manifest dict -> JSON Schemas + cross-checks -> build: the spec the
    file gave. Strings that YAML 1.2 would type (0o17, no) stay strings."""
    result = load([str(EXAMPLES)])
    specs = list(result.state.resources)
    odd = ExecutableSpec("odd", "0o17", env=(("A", "no"), ("B", "0x1F")))
    items = [serde.resource_to_manifest(serde.spec_to_proto(s)) for s in [*specs, odd]]
    assert items[0]["spec"]["restart_policy"] == "always"
    validated = validate_data(items, "m")
    assert validated.issues == []
    assert list(validated.state.resources) == [*specs, odd]


def test_pod_networks_and_ports_from_requests_validate_into_the_same_specs() -> None:
    pods = [s for s in SPECS if isinstance(s, PodSpec) and s.name in ("ports", "br", "hn")]
    items = [serde.resource_to_manifest(serde.spec_to_proto(s)) for s in pods]
    assert [i["spec"]["network"] for i in items] == ["bridge", "bridge", "host"]
    assert items[0]["spec"]["containers"][0]["ports"][1] == {
        "container_port": 53, "host_port": 5353, "protocol": "UDP"}
    validated = validate_data(items, "m")
    assert validated.issues == []
    assert list(validated.state.resources) == pods


def test_every_error_of_a_request_is_reported_with_its_place() -> None:
    bad_cell = serde.spec_to_proto(CellSpec("web", CellLimits(cpu_weight=0)))
    orphan = serde.spec_to_proto(CellSpec("gone/x"))
    bad_exe = serde.spec_to_proto(ExecutableSpec("-bad", "true"))
    drv = serde.spec_to_proto(DriverSpec("d", "1", "", "relative.so", ""))
    items = [serde.resource_to_manifest(r) for r in (bad_cell, orphan, bad_exe, drv)]
    result = validate_data(items)
    text = render_issues(result.issues)
    assert text.startswith(f"{len(result.issues)} validation error(s):")
    assert "request:resources[0]:" in text and "spec.cpu.weight: 0 is less than" in text
    assert "request:resources[1]:" in text
    assert "parent cell 'gone' of 'gone/x' is not declared" in text
    assert "request:resources[2]:" in text and "metadata.name: '-bad' is not a valid name" in text
    assert "request:resources[3]:" in text and "must be an absolute path on the node" in text
    assert text.count("spec.source") == 1  # not also "does not exist"
    short = render_issues(result.issues * 100, limit_bytes=500)
    assert len(short) < 600 and short.splitlines()[-1].startswith("... and ")


def test_a_kind_that_does_not_match_its_spec_is_refused() -> None:
    res = serde.spec_to_proto(ExecutableSpec("x", "true"))
    res.kind = "Cell"
    assert validate_data([serde.resource_to_manifest(res)]).issues
    with pytest.raises(InvalidArgument, match="spec is a executable"):
        serde.spec_from_proto(res)


@pytest.mark.parametrize("folder", CASES, ids=lambda p: p.name)
def test_golden_states_and_plans_round_trip(folder: Path, tmp_path: Path) -> None:
    case = yaml.safe_load((folder / "case.yaml").read_text()) or {}
    options = case.get("options") or {}
    observed = observed_state(case, tmp_path)
    assert serde.state_from_proto(serde.state_to_proto(observed)) == observed
    try:
        plan = compile_plan(desired_state(folder, options.get("manifestSet", "default"),
                                          observed),
                            observed, prune=options.get("prune", False),
                            destroy=options.get("destroy", False))
    except FailedPrecondition:
        return
    wire = npb.Plan.FromString(serde.plan_to_proto(plan).SerializeToString())
    assert serde.plan_from_proto(wire) == plan
    assert all(step.change != npb.STEP_CHANGE_UNSPECIFIED for step in wire.steps)
    # A plan saved by an older client carried the change as an annotation: still read.
    older = npb.Plan()
    older.CopyFrom(wire)
    for step in older.steps:
        change = serde.plan_from_proto(wire).steps[step.index].change
        step.change = npb.STEP_CHANGE_UNSPECIFIED
        if step.HasField("resource"):
            step.resource.metadata.annotations[serde.CHANGE_ANNOTATION] = change.value
    for mine, theirs in zip(serde.plan_from_proto(older).steps, plan.steps, strict=True):
        assert mine.change == theirs.change or mine.spec is None
    # Without either (another client's plan) the structure tells it, except for the
    # up-only steps whose change only the compiler knew.
    for step in wire.steps:
        step.change = npb.STEP_CHANGE_UNSPECIFIED
    derived = serde.plan_from_proto(wire)
    for mine, theirs in zip(derived.steps, plan.steps, strict=True):
        ambiguous = mine.action in (Action.PUSH, Action.ENABLE, Action.DISABLE, Action.START)
        assert mine.change == theirs.change or ambiguous, (mine, theirs)


def test_observed_processes_round_trip() -> None:
    state = NodeState(7, True, "node-1", (
        ObservedResource(SPECS[3], "set", True, ProcessStatus(
            ProcessPhase.EXITED, 42, 1234, 0, 9, 10, 20, 3), ("drift one", "two")),
        ObservedResource(SPECS[4], "", False, ProcessStatus(ProcessPhase.PENDING)),
        ObservedResource(SPECS[0]),
    ))
    assert serde.state_from_proto(serde.state_to_proto(state)) == state


def test_broken_plans_are_refused() -> None:
    step = Step(Action.START, Ref(Kind.EXECUTABLE, "y"), "created", Change.CREATE, SPECS[4])
    pb = serde.plan_to_proto(Plan(3, "s", (step, step)))
    pb.steps[0].requires.append(1)
    with pytest.raises(InvalidArgument, match="does not come before it"):
        serde.plan_from_proto(pb)
    pb = serde.plan_to_proto(Plan(3, "s", (step,), format_version=9))
    with pytest.raises(InvalidArgument, match="format_version 9"):
        serde.plan_from_proto(pb)
    pb = serde.plan_to_proto(Plan(3, "s", (step,)))
    pb.steps[0].name = "other"
    with pytest.raises(InvalidArgument, match="its resource is Executable/y"):
        serde.plan_from_proto(pb)


def test_events_round_trip_and_reuse_the_plans_steps() -> None:
    step = Step(Action.STOP, Ref(Kind.EXECUTABLE, "x"), "pruned", Change.DELETE, SPECS[3])
    plan = Plan(5, "s", (step,))
    events = [
        ApplyEvent(EventType.STEP_STARTED, 1, 0, step),
        ApplyEvent(EventType.STEP_FAILED, 2, 0, step, "boom", 0.25),
        ApplyEvent(EventType.SUMMARY, 3, summary=Summary(1, 2, 3, 4, 5, 6, 7, 8)),
    ]
    for event in events:
        wire = npb.ApplyEvent.FromString(serde.event_to_proto(event).SerializeToString())
        assert serde.event_from_proto(wire) == event
        again = serde.event_from_proto(wire, plan)
        assert again == event and (again.step is None or again.step is step)


def test_the_image_cache_round_trips() -> None:
    used = ImageRecord("sha256:" + "a" * 64, ("127.0.0.1:5000/library/busybox:1.0",),
                       "127.0.0.1:5000/library/busybox:1.0", 2_000_000, 1_100_000,
                       ("web", "api"), 1_796_000_000_000_000_000)
    dangling = ImageRecord("sha256:" + "b" * 64, (), "oci:/srv/gone:latest", 10, 0, (), 1)
    listing = ImageList((used, dangling), 1_200_000, 100_000)
    wire = serde.image_list_to_proto(listing).SerializeToString()
    back = serde.image_list_from_proto(npb.ListImagesResponse.FromString(wire))
    assert back == listing
    assert back.images[1].dangling and not back.images[1].in_use
    pruned = ImagePrune((dangling,), (KeptImage(used.digest, "in use by Pod/web, Pod/api"),),
                        3, 12_345, dry_run=True)
    wire = serde.prune_to_proto(pruned).SerializeToString()
    assert serde.prune_from_proto(npb.PruneImagesResponse.FromString(wire)) == pruned
