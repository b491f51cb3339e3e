from provisioner._proto.provisioner.v1 import manifest_pb2 as _manifest_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProcessState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROCESS_STATE_UNSPECIFIED: _ClassVar[ProcessState]
    PROCESS_STATE_PENDING: _ClassVar[ProcessState]
    PROCESS_STATE_RUNNING: _ClassVar[ProcessState]
    PROCESS_STATE_EXITED: _ClassVar[ProcessState]
    PROCESS_STATE_BACKOFF: _ClassVar[ProcessState]
    PROCESS_STATE_STOPPED: _ClassVar[ProcessState]
    PROCESS_STATE_FAILED: _ClassVar[ProcessState]

class StepAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_ACTION_UNSPECIFIED: _ClassVar[StepAction]
    STEP_ACTION_ALLOCATE: _ClassVar[StepAction]
    STEP_ACTION_START: _ClassVar[StepAction]
    STEP_ACTION_STOP: _ClassVar[StepAction]
    STEP_ACTION_FREE: _ClassVar[StepAction]
    STEP_ACTION_UPDATE: _ClassVar[StepAction]
    STEP_ACTION_PUSH: _ClassVar[StepAction]
    STEP_ACTION_ENABLE: _ClassVar[StepAction]
    STEP_ACTION_DISABLE: _ClassVar[StepAction]
    STEP_ACTION_DELETE: _ClassVar[StepAction]

class StepChange(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_CHANGE_UNSPECIFIED: _ClassVar[StepChange]
    STEP_CHANGE_CREATE: _ClassVar[StepChange]
    STEP_CHANGE_UPDATE: _ClassVar[StepChange]
    STEP_CHANGE_REPLACE: _ClassVar[StepChange]
    STEP_CHANGE_DELETE: _ClassVar[StepChange]

class ApplyEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPLY_EVENT_TYPE_UNSPECIFIED: _ClassVar[ApplyEventType]
    APPLY_EVENT_TYPE_STEP_STARTED: _ClassVar[ApplyEventType]
    APPLY_EVENT_TYPE_STEP_SUCCEEDED: _ClassVar[ApplyEventType]
    APPLY_EVENT_TYPE_STEP_FAILED: _ClassVar[ApplyEventType]
    APPLY_EVENT_TYPE_STEP_SKIPPED: _ClassVar[ApplyEventType]
    APPLY_EVENT_TYPE_SUMMARY: _ClassVar[ApplyEventType]
PROCESS_STATE_UNSPECIFIED: ProcessState
PROCESS_STATE_PENDING: ProcessState
PROCESS_STATE_RUNNING: ProcessState
PROCESS_STATE_EXITED: ProcessState
PROCESS_STATE_BACKOFF: ProcessState
PROCESS_STATE_STOPPED: ProcessState
PROCESS_STATE_FAILED: ProcessState
STEP_ACTION_UNSPECIFIED: StepAction
STEP_ACTION_ALLOCATE: StepAction
STEP_ACTION_START: StepAction
STEP_ACTION_STOP: StepAction
STEP_ACTION_FREE: StepAction
STEP_ACTION_UPDATE: StepAction
STEP_ACTION_PUSH: StepAction
STEP_ACTION_ENABLE: StepAction
STEP_ACTION_DISABLE: StepAction
STEP_ACTION_DELETE: StepAction
STEP_CHANGE_UNSPECIFIED: StepChange
STEP_CHANGE_CREATE: StepChange
STEP_CHANGE_UPDATE: StepChange
STEP_CHANGE_REPLACE: StepChange
STEP_CHANGE_DELETE: StepChange
APPLY_EVENT_TYPE_UNSPECIFIED: ApplyEventType
APPLY_EVENT_TYPE_STEP_STARTED: ApplyEventType
APPLY_EVENT_TYPE_STEP_SUCCEEDED: ApplyEventType
APPLY_EVENT_TYPE_STEP_FAILED: ApplyEventType
APPLY_EVENT_TYPE_STEP_SKIPPED: ApplyEventType
APPLY_EVENT_TYPE_SUMMARY: ApplyEventType

class ListImagesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Image(_message.Message):
    __slots__ = ("digest", "references", "pulled_as", "size", "blob_bytes", "pods", "imported_at_ns")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    PULLED_AS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BLOB_BYTES_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    digest: str
    references: _containers.RepeatedScalarFieldContainer[str]
    pulled_as: str
    size: int
    blob_bytes: int
    pods: _containers.RepeatedScalarFieldContainer[str]
    imported_at_ns: int
    def __init__(self, digest: _Optional[str] = ..., references: _Optional[_Iterable[str]] = ..., pulled_as: _Optional[str] = ..., size: _Optional[int] = ..., blob_bytes: _Optional[int] = ..., pods: _Optional[_Iterable[str]] = ..., imported_at_ns: _Optional[int] = ...) -> None: ...

class ListImagesResponse(_message.Message):
    __slots__ = ("images", "blob_bytes", "unused_blob_bytes")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    BLOB_BYTES_FIELD_NUMBER: _ClassVar[int]
    UNUSED_BLOB_BYTES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    blob_bytes: int
    unused_blob_bytes: int
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., blob_bytes: _Optional[int] = ..., unused_blob_bytes: _Optional[int] = ...) -> None: ...

class PruneImagesRequest(_message.Message):
    __slots__ = ("all", "dry_run")
    ALL_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    all: bool
    dry_run: bool
    def __init__(self, all: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class KeptImage(_message.Message):
    __slots__ = ("digest", "reason")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    digest: str
    reason: str
    def __init__(self, digest: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PruneImagesResponse(_message.Message):
    __slots__ = ("removed", "kept", "removed_blobs", "bytes_freed", "dry_run")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_BLOBS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    removed: _containers.RepeatedCompositeFieldContainer[Image]
    kept: _containers.RepeatedCompositeFieldContainer[KeptImage]
    removed_blobs: int
    bytes_freed: int
    dry_run: bool
    def __init__(self, removed: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., kept: _Optional[_Iterable[_Union[KeptImage, _Mapping]]] = ..., removed_blobs: _Optional[int] = ..., bytes_freed: _Optional[int] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class GetLogsRequest(_message.Message):
    __slots__ = ("executable", "follow", "since_ns", "tail", "channel")
    EXECUTABLE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    SINCE_NS_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    executable: str
    follow: bool
    since_ns: int
    tail: int
    channel: str
    def __init__(self, executable: _Optional[str] = ..., follow: _Optional[bool] = ..., since_ns: _Optional[int] = ..., tail: _Optional[int] = ..., channel: _Optional[str] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("timestamp_ns", "channel", "text", "continued")
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONTINUED_FIELD_NUMBER: _ClassVar[int]
    timestamp_ns: int
    channel: str
    text: str
    continued: bool
    def __init__(self, timestamp_ns: _Optional[int] = ..., channel: _Optional[str] = ..., text: _Optional[str] = ..., continued: _Optional[bool] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStateResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: NodeState
    def __init__(self, state: _Optional[_Union[NodeState, _Mapping]] = ...) -> None: ...

class ObservedResource(_message.Message):
    __slots__ = ("resource", "manifest_set", "present", "process_state", "pid", "pid_start_time", "exit_code", "exit_signal", "started_at_ns", "exited_at_ns", "restart_count", "drift")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SET_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    PROCESS_STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PID_START_TIME_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    EXIT_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    EXITED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    resource: _manifest_pb2.Resource
    manifest_set: str
    present: bool
    process_state: ProcessState
    pid: int
    pid_start_time: int
    exit_code: int
    exit_signal: int
    started_at_ns: int
    exited_at_ns: int
    restart_count: int
    drift: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, resource: _Optional[_Union[_manifest_pb2.Resource, _Mapping]] = ..., manifest_set: _Optional[str] = ..., present: _Optional[bool] = ..., process_state: _Optional[_Union[ProcessState, str]] = ..., pid: _Optional[int] = ..., pid_start_time: _Optional[int] = ..., exit_code: _Optional[int] = ..., exit_signal: _Optional[int] = ..., started_at_ns: _Optional[int] = ..., exited_at_ns: _Optional[int] = ..., restart_count: _Optional[int] = ..., drift: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeState(_message.Message):
    __slots__ = ("generation", "node_name", "cgroup_v2", "resources", "node_id")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    CGROUP_V2_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    generation: int
    node_name: str
    cgroup_v2: bool
    resources: _containers.RepeatedCompositeFieldContainer[ObservedResource]
    node_id: str
    def __init__(self, generation: _Optional[int] = ..., node_name: _Optional[str] = ..., cgroup_v2: _Optional[bool] = ..., resources: _Optional[_Iterable[_Union[ObservedResource, _Mapping]]] = ..., node_id: _Optional[str] = ...) -> None: ...

class PlanRequest(_message.Message):
    __slots__ = ("resources", "manifest_set", "prune", "destroy")
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SET_FIELD_NUMBER: _ClassVar[int]
    PRUNE_FIELD_NUMBER: _ClassVar[int]
    DESTROY_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[_manifest_pb2.Resource]
    manifest_set: str
    prune: bool
    destroy: bool
    def __init__(self, resources: _Optional[_Iterable[_Union[_manifest_pb2.Resource, _Mapping]]] = ..., manifest_set: _Optional[str] = ..., prune: _Optional[bool] = ..., destroy: _Optional[bool] = ...) -> None: ...

class PlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class PlanStep(_message.Message):
    __slots__ = ("index", "action", "kind", "name", "reason", "requires", "resource", "change")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    action: StepAction
    kind: str
    name: str
    reason: str
    requires: _containers.RepeatedScalarFieldContainer[int]
    resource: _manifest_pb2.Resource
    change: StepChange
    def __init__(self, index: _Optional[int] = ..., action: _Optional[_Union[StepAction, str]] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., reason: _Optional[str] = ..., requires: _Optional[_Iterable[int]] = ..., resource: _Optional[_Union[_manifest_pb2.Resource, _Mapping]] = ..., change: _Optional[_Union[StepChange, str]] = ...) -> None: ...

class Unchanged(_message.Message):
    __slots__ = ("kind", "name", "reason")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    reason: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("format_version", "generation", "manifest_set", "steps", "unchanged", "would_prune")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SET_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    WOULD_PRUNE_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    generation: int
    manifest_set: str
    steps: _containers.RepeatedCompositeFieldContainer[PlanStep]
    unchanged: _containers.RepeatedCompositeFieldContainer[Unchanged]
    would_prune: _containers.RepeatedCompositeFieldContainer[Unchanged]
    def __init__(self, format_version: _Optional[int] = ..., generation: _Optional[int] = ..., manifest_set: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[PlanStep, _Mapping]]] = ..., unchanged: _Optional[_Iterable[_Union[Unchanged, _Mapping]]] = ..., would_prune: _Optional[_Iterable[_Union[Unchanged, _Mapping]]] = ...) -> None: ...

class ApplyRequest(_message.Message):
    __slots__ = ("plan", "parallelism")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    parallelism: int
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ..., parallelism: _Optional[int] = ...) -> None: ...

class ApplySummary(_message.Message):
    __slots__ = ("created", "updated", "replaced", "deleted", "unchanged", "failed", "skipped", "generation")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    created: int
    updated: int
    replaced: int
    deleted: int
    unchanged: int
    failed: int
    skipped: int
    generation: int
    def __init__(self, created: _Optional[int] = ..., updated: _Optional[int] = ..., replaced: _Optional[int] = ..., deleted: _Optional[int] = ..., unchanged: _Optional[int] = ..., failed: _Optional[int] = ..., skipped: _Optional[int] = ..., generation: _Optional[int] = ...) -> None: ...

class ApplyEvent(_message.Message):
    __slots__ = ("format_version", "type", "timestamp_ns", "step", "message", "duration_s", "summary")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    type: ApplyEventType
    timestamp_ns: int
    step: PlanStep
    message: str
    duration_s: float
    summary: ApplySummary
    def __init__(self, format_version: _Optional[int] = ..., type: _Optional[_Union[ApplyEventType, str]] = ..., timestamp_ns: _Optional[int] = ..., step: _Optional[_Union[PlanStep, _Mapping]] = ..., message: _Optional[str] = ..., duration_s: _Optional[float] = ..., summary: _Optional[_Union[ApplySummary, _Mapping]] = ...) -> None: ...
