"""Node state, plans and apply events <-> ``provisioner.v1`` messages (see the package
docstring for the wire conventions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from provisioner import records
from provisioner._proto.provisioner.v1 import node_pb2 as npb
from provisioner.errors import InvalidArgument
from provisioner.events import ApplyEvent, EventType, Summary
from provisioner.model import Kind, Ref, ResourceSpec
from provisioner.plan.steps import PLAN_FORMAT_VERSION, Action, Change, NoOp, Plan, Step
from provisioner.serde.resources import CHANGE_ANNOTATION, spec_from_proto, spec_to_proto
from provisioner.state import NodeState, ObservedResource, ProcessPhase, ProcessStatus

# -- node state ----------------------------------------------------------------------

_PHASE_TO_PROTO = {
    ProcessPhase.PENDING: npb.PROCESS_STATE_PENDING,
    ProcessPhase.RUNNING: npb.PROCESS_STATE_RUNNING,
    ProcessPhase.EXITED: npb.PROCESS_STATE_EXITED,
    ProcessPhase.BACKOFF: npb.PROCESS_STATE_BACKOFF,
    ProcessPhase.STOPPED: npb.PROCESS_STATE_STOPPED,
    ProcessPhase.FAILED: npb.PROCESS_STATE_FAILED,
}
_PHASE_FROM_PROTO = {v: k for k, v in _PHASE_TO_PROTO.items()}


def observed_to_proto(obs: ObservedResource) -> npb.ObservedResource:
    """An observed resource (its spec and, for a process, its live status)."""
    out = npb.ObservedResource(resource=spec_to_proto(obs.spec),
                               manifest_set=obs.manifest_set, present=obs.present,
                               drift=list(obs.drift))
    process = obs.process
    if process is not None:
        out.process_state = _PHASE_TO_PROTO[process.phase]
        out.pid = process.pid or 0
        out.pid_start_time = process.pid_start_time or 0
        if process.exit_code is not None:
            out.exit_code = process.exit_code
        if process.exit_signal is not None:
            out.exit_signal = process.exit_signal
        out.started_at_ns, out.exited_at_ns = process.started_at_ns, process.exited_at_ns
        out.restart_count = process.restart_count
    return out


def observed_from_proto(obs: npb.ObservedResource) -> ObservedResource:
    """An observed resource; an unknown process state is InvalidArgument."""
    process = None
    if obs.process_state != npb.PROCESS_STATE_UNSPECIFIED:
        phase = _PHASE_FROM_PROTO.get(obs.process_state)
        if phase is None:
            raise InvalidArgument(f"unknown process state {obs.process_state}")
        process = ProcessStatus(
            phase, pid=obs.pid or None,
            pid_start_time=obs.pid_start_time or None,
            exit_code=obs.exit_code if obs.HasField("exit_code") else None,
            exit_signal=obs.exit_signal if obs.HasField("exit_signal") else None,
            started_at_ns=obs.started_at_ns, exited_at_ns=obs.exited_at_ns,
            restart_count=obs.restart_count)
    return ObservedResource(spec_from_proto(obs.resource), obs.manifest_set, obs.present,
                            process, tuple(obs.drift))


def state_to_proto(state: NodeState) -> npb.NodeState:
    """The node state as a GetState answer."""
    return npb.NodeState(generation=state.generation, node_name=state.node_name,
                         cgroup_v2=state.cgroup_v2, node_id=state.node_id,
                         resources=[observed_to_proto(r) for r in state.resources])


def state_from_proto(state: npb.NodeState) -> NodeState:
    """A GetState answer as the node state."""
    return NodeState(generation=state.generation, cgroup_v2=state.cgroup_v2,
                     node_name=state.node_name, node_id=state.node_id,
                     resources=tuple(observed_from_proto(r) for r in state.resources))


# -- plans ---------------------------------------------------------------------------

_ACTION_TO_PROTO = {action: cast(npb.StepAction, npb.StepAction.Value(
    f"STEP_ACTION_{action.name}")) for action in Action}
_ACTION_FROM_PROTO = {v: k for k, v in _ACTION_TO_PROTO.items()}
_CHANGE_TO_PROTO = {change: cast(npb.StepChange, npb.StepChange.Value(
    f"STEP_CHANGE_{change.name}")) for change in Change}
_CHANGE_FROM_PROTO = {v: k for k, v in _CHANGE_TO_PROTO.items()}
_UP = {Action.ALLOCATE, Action.START, Action.PUSH, Action.ENABLE, Action.DISABLE}


def step_to_proto(step: Step, index: int) -> npb.PlanStep:
    """Step ``index`` of a plan, with its change and resource."""
    out = npb.PlanStep(index=index, action=_ACTION_TO_PROTO[step.action],
                       kind=step.ref.kind.value, name=step.ref.name, reason=step.reason,
                       requires=list(step.requires))
    out.change = _CHANGE_TO_PROTO[step.change]
    if step.spec is not None:
        out.resource.CopyFrom(spec_to_proto(step.spec))
    return out


def step_from_proto(pb: npb.PlanStep, spec: ResourceSpec | None = None,
                    change: Change | None = None) -> Step:
    """A step; ``spec`` (already built, e.g. validated) replaces pb.resource when given;
    ``change`` is used when the resource does not carry it."""
    action = _ACTION_FROM_PROTO.get(pb.action)
    if action is None:
        raise InvalidArgument(f"plan step {pb.index}: unknown action {pb.action}")
    try:
        ref = Ref(Kind(pb.kind), pb.name)
    except ValueError:
        raise InvalidArgument(f"plan step {pb.index}: unknown kind {pb.kind!r}") from None
    if spec is None and pb.HasField("resource"):
        spec = spec_from_proto(pb.resource)
    if spec is not None and (spec.kind, spec.name) != (ref.kind, ref.name):
        raise InvalidArgument(f"plan step {pb.index}: its resource is {spec.kind.value}/"
                              f"{spec.name}, not {ref}")
    if pb.change != npb.STEP_CHANGE_UNSPECIFIED:
        if pb.change not in _CHANGE_FROM_PROTO:
            raise InvalidArgument(f"plan step {pb.index}: unknown change {pb.change}")
        change = _CHANGE_FROM_PROTO[pb.change]
    else:  # a plan saved by an older client carried it as an annotation
        written = pb.resource.metadata.annotations.get(CHANGE_ANNOTATION, "")
        try:
            change = Change(written) if written else change
        except ValueError:
            raise InvalidArgument(f"plan step {pb.index}: unknown change {written!r}") \
                from None
    return Step(action, ref, pb.reason, change or _default_change(action),
                spec, tuple(pb.requires))


def _default_change(action: Action) -> Change:
    return Change.UPDATE if action is Action.UPDATE else (
        Change.CREATE if action in _UP else Change.DELETE)


def derive_changes(steps: Sequence[npb.PlanStep]) -> list[Change]:
    """Each step's Change from the plan's structure, for steps that carry neither the
    ``change`` field nor the older annotation:
    a resource taken down and brought up again is replaced, only down is deleted, only
    up is created, UPDATE is an update."""
    ups = {(s.kind, s.name) for s in steps if _ACTION_FROM_PROTO.get(s.action) in _UP}
    downs = {(s.kind, s.name) for s in steps
             if _ACTION_FROM_PROTO.get(s.action) in (Action.STOP, Action.FREE, Action.DELETE)}
    out = []
    for s in steps:
        action = _ACTION_FROM_PROTO.get(s.action, Action.UPDATE)
        key = (s.kind, s.name)
        if action is Action.UPDATE:
            out.append(Change.UPDATE)
        elif key in ups and key in downs:
            out.append(Change.REPLACE)
        else:
            out.append(_default_change(action))
    return out


def plan_to_proto(plan: Plan) -> npb.Plan:
    """A plan, steps numbered in order."""
    return npb.Plan(
        format_version=plan.format_version, generation=plan.generation,
        manifest_set=plan.manifest_set,
        steps=[step_to_proto(step, i) for i, step in enumerate(plan.steps)],
        unchanged=[_noop_to_proto(n) for n in plan.unchanged],
        would_prune=[_noop_to_proto(n) for n in plan.would_prune])


def plan_from_proto(pb: npb.Plan,
                    specs: Sequence[ResourceSpec | None] | None = None) -> Plan:
    """The plan; ``specs`` (one per step, e.g. validated by the daemon) replace the
    steps' resources when given. Refuses unknown format versions and broken orders."""
    if pb.format_version != PLAN_FORMAT_VERSION:
        raise InvalidArgument(f"plan format_version {pb.format_version} is not supported "
                              f"(this provisioner reads version {PLAN_FORMAT_VERSION}); "
                              "plan again")
    changes = derive_changes(pb.steps)
    steps = []
    for index, step in enumerate(pb.steps):
        if step.index != index:
            raise InvalidArgument(f"plan step at position {index} says index {step.index}")
        if any(not 0 <= r < index for r in step.requires):
            raise InvalidArgument(f"plan step {index} requires a step that does not come "
                                  "before it")
        spec = specs[index] if specs is not None else None
        steps.append(step_from_proto(step, spec, changes[index]))
    return Plan(pb.generation, pb.manifest_set, tuple(steps),
                tuple(_noop_from_proto(n) for n in pb.unchanged),
                tuple(_noop_from_proto(n) for n in pb.would_prune), pb.format_version)


def _noop_to_proto(noop: NoOp) -> npb.Unchanged:
    return npb.Unchanged(kind=noop.ref.kind.value, name=noop.ref.name, reason=noop.reason)


def _noop_from_proto(pb: npb.Unchanged) -> NoOp:
    try:
        return NoOp(Ref(Kind(pb.kind), pb.name), pb.reason)
    except ValueError:
        raise InvalidArgument(f"unknown resource kind {pb.kind!r}") from None


# -- apply events --------------------------------------------------------------------

_EVENT_TO_PROTO = {t: cast(npb.ApplyEventType, npb.ApplyEventType.Value(
    f"APPLY_EVENT_TYPE_{t.name}")) for t in EventType}
_EVENT_FROM_PROTO = {v: k for k, v in _EVENT_TO_PROTO.items()}
_SUMMARY_FIELDS = tuple(f.name for f in records.fields(Summary))


def event_to_proto(event: ApplyEvent) -> npb.ApplyEvent:
    """An apply event (its step as a full PlanStep, the summary's counts)."""
    out = npb.ApplyEvent(format_version=event.format_version,
                         type=_EVENT_TO_PROTO[event.type], timestamp_ns=event.timestamp_ns,
                         message=event.message, duration_s=event.duration_s)
    if event.step is not None:
        out.step.CopyFrom(step_to_proto(event.step, event.index or 0))
    if event.summary is not None:
        out.summary.CopyFrom(npb.ApplySummary(**records.asdict(event.summary)))
    return out


def event_from_proto(pb: npb.ApplyEvent, plan: Plan | None = None) -> ApplyEvent:
    """An event; with the ``plan`` it belongs to, its step is that plan's step object."""
    kind = _EVENT_FROM_PROTO.get(pb.type)
    if kind is None:
        raise InvalidArgument(f"unknown apply event type {pb.type}")
    index: int | None = None
    step: Step | None = None
    if pb.HasField("step"):
        index = pb.step.index
        if plan is not None and index < len(plan.steps):
            step = plan.steps[index]
        else:
            step = step_from_proto(pb.step)
    summary = None
    if pb.HasField("summary"):
        summary = Summary(**{name: getattr(pb.summary, name) for name in _SUMMARY_FIELDS})
    return ApplyEvent(kind, pb.timestamp_ns, index, step, pb.message, pb.duration_s, summary,
                      pb.format_version)
