"""Protobuf <-> model: the one place where ``_pb2`` messages and model objects meet.

Pairs of ``x_to_proto`` / ``x_from_proto`` for resources (``provisioner.v1.Resource`` <->
:data:`~provisioner.model.ResourceSpec`), node state, plans, apply events, log requests,
log lines and the image cache (``images.py``). The plan
compiler, the node layer and the CLI never import ``_pb2``; servicers and the remote
executor convert here.

Trust: ``*_from_proto`` builds model objects directly and is meant for what a daemon
sends back (GetState, plans it compiled, events). Resources arriving at a daemon are
checked like manifests first: :func:`resource_to_manifest` turns one into the manifest
dict that ``provisioner.manifest.from_data`` validates and builds.

Wire conventions decided here:

- ``ExecutableSpec``/``PodSpec`` durations travel as strings (``"10s"``, ``"500ms"``)
  in ``stop_grace_period``, formatted so that they parse back to the same float.
- ``RestartPolicy`` never/on-failure/always <-> ``RESTART_POLICY_*``; UNSPECIFIED reads
  as never. ``PodNetwork`` loopback/bridge/host <-> ``POD_NETWORK_*``; UNSPECIFIED
  reads as "not given" (the model resolves it from hostNetwork and the ports).
  ``PullPolicy`` IfNotPresent/Always/Never <-> ``PULL_POLICY_*``; UNSPECIFIED reads as
  IfNotPresent.
- A step's :class:`~provisioner.plan.steps.Change` travels in ``PlanStep.change``. A
  plan saved by an older client carried it in the step resource's annotation
  :data:`CHANGE_ANNOTATION`, which is still read; with neither (a step built by another
  client) it is derived from the plan's structure.
- A process's ``pid`` 0 on the wire means "none" (pid 0 is never a process).
"""

from provisioner.serde.images import (
    image_from_proto,
    image_list_from_proto,
    image_list_to_proto,
    image_to_proto,
    prune_from_proto,
    prune_to_proto,
)
from provisioner.serde.logs import (
    logline_from_proto,
    logline_to_proto,
    logs_request_from_proto,
    logs_request_to_proto,
)
from provisioner.serde.plans import (
    derive_changes,
    event_from_proto,
    event_to_proto,
    observed_from_proto,
    observed_to_proto,
    plan_from_proto,
    plan_to_proto,
    state_from_proto,
    state_to_proto,
    step_from_proto,
    step_to_proto,
)
from provisioner.serde.resources import (
    CHANGE_ANNOTATION,
    SPEC_FIELD,
    format_duration,
    parse_duration,
    policy_from_proto,
    policy_to_proto,
    resource_to_manifest,
    spec_from_proto,
    spec_to_proto,
)

__all__ = [
    "CHANGE_ANNOTATION", "SPEC_FIELD", "derive_changes", "event_from_proto", "event_to_proto",
    "format_duration", "image_from_proto", "image_list_from_proto", "image_list_to_proto",
    "image_to_proto", "logline_from_proto", "logline_to_proto", "logs_request_from_proto",
    "logs_request_to_proto", "observed_from_proto", "observed_to_proto", "parse_duration",
    "plan_from_proto", "plan_to_proto", "policy_from_proto", "policy_to_proto",
    "prune_from_proto", "prune_to_proto",
    "resource_to_manifest", "spec_from_proto", "spec_to_proto", "state_from_proto",
    "state_to_proto", "step_from_proto", "step_to_proto",
]
