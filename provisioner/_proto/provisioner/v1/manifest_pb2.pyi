from provisioner._proto.aurae.runtime.v0 import runtime_pb2 as _runtime_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RestartPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESTART_POLICY_UNSPECIFIED: _ClassVar[RestartPolicy]
    RESTART_POLICY_NEVER: _ClassVar[RestartPolicy]
    RESTART_POLICY_ON_FAILURE: _ClassVar[RestartPolicy]
    RESTART_POLICY_ALWAYS: _ClassVar[RestartPolicy]

class PullPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PULL_POLICY_UNSPECIFIED: _ClassVar[PullPolicy]
    PULL_POLICY_IF_NOT_PRESENT: _ClassVar[PullPolicy]
    PULL_POLICY_ALWAYS: _ClassVar[PullPolicy]
    PULL_POLICY_NEVER: _ClassVar[PullPolicy]

class PodNetwork(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POD_NETWORK_UNSPECIFIED: _ClassVar[PodNetwork]
    POD_NETWORK_LOOPBACK: _ClassVar[PodNetwork]
    POD_NETWORK_BRIDGE: _ClassVar[PodNetwork]
    POD_NETWORK_HOST: _ClassVar[PodNetwork]
RESTART_POLICY_UNSPECIFIED: RestartPolicy
RESTART_POLICY_NEVER: RestartPolicy
RESTART_POLICY_ON_FAILURE: RestartPolicy
RESTART_POLICY_ALWAYS: RestartPolicy
PULL_POLICY_UNSPECIFIED: PullPolicy
PULL_POLICY_IF_NOT_PRESENT: PullPolicy
PULL_POLICY_ALWAYS: PullPolicy
PULL_POLICY_NEVER: PullPolicy
POD_NETWORK_UNSPECIFIED: PodNetwork
POD_NETWORK_LOOPBACK: PodNetwork
POD_NETWORK_BRIDGE: PodNetwork
POD_NETWORK_HOST: PodNetwork

class ObjectMeta(_message.Message):
    __slots__ = ("name", "labels", "annotations")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    annotations: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CellSpec(_message.Message):
    __slots__ = ("cpu", "cpuset", "isolate_process", "isolate_network", "depends_on")
    CPU_FIELD_NUMBER: _ClassVar[int]
    CPUSET_FIELD_NUMBER: _ClassVar[int]
    ISOLATE_PROCESS_FIELD_NUMBER: _ClassVar[int]
    ISOLATE_NETWORK_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    cpu: _runtime_pb2.CpuController
    cpuset: _runtime_pb2.CpusetController
    isolate_process: bool
    isolate_network: bool
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cpu: _Optional[_Union[_runtime_pb2.CpuController, _Mapping]] = ..., cpuset: _Optional[_Union[_runtime_pb2.CpusetController, _Mapping]] = ..., isolate_process: _Optional[bool] = ..., isolate_network: _Optional[bool] = ..., depends_on: _Optional[_Iterable[str]] = ...) -> None: ...

class ExecutableSpec(_message.Message):
    __slots__ = ("command", "description", "cell", "env", "working_dir", "uid", "gid", "restart_policy", "stop_grace_period", "depends_on")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CELL_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    RESTART_POLICY_FIELD_NUMBER: _ClassVar[int]
    STOP_GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    command: str
    description: str
    cell: str
    env: _containers.ScalarMap[str, str]
    working_dir: str
    uid: int
    gid: int
    restart_policy: RestartPolicy
    stop_grace_period: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, command: _Optional[str] = ..., description: _Optional[str] = ..., cell: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., working_dir: _Optional[str] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., restart_policy: _Optional[_Union[RestartPolicy, str]] = ..., stop_grace_period: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ...) -> None: ...

class ContainerSpec(_message.Message):
    __slots__ = ("name", "image", "registry", "command", "env", "working_dir", "pull_policy", "ports")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    PULL_POLICY_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    image: str
    registry: str
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    working_dir: str
    pull_policy: PullPolicy
    ports: _containers.RepeatedCompositeFieldContainer[ContainerPort]
    def __init__(self, name: _Optional[str] = ..., image: _Optional[str] = ..., registry: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., working_dir: _Optional[str] = ..., pull_policy: _Optional[_Union[PullPolicy, str]] = ..., ports: _Optional[_Iterable[_Union[ContainerPort, _Mapping]]] = ...) -> None: ...

class ContainerPort(_message.Message):
    __slots__ = ("container_port", "host_port", "protocol")
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    container_port: int
    host_port: int
    protocol: str
    def __init__(self, container_port: _Optional[int] = ..., host_port: _Optional[int] = ..., protocol: _Optional[str] = ...) -> None: ...

class PodSpec(_message.Message):
    __slots__ = ("containers", "restart_policy", "stop_grace_period", "cell", "host_network", "network", "depends_on")
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    RESTART_POLICY_FIELD_NUMBER: _ClassVar[int]
    STOP_GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    CELL_FIELD_NUMBER: _ClassVar[int]
    HOST_NETWORK_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    containers: _containers.RepeatedCompositeFieldContainer[ContainerSpec]
    restart_policy: RestartPolicy
    stop_grace_period: str
    cell: str
    host_network: bool
    network: PodNetwork
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, containers: _Optional[_Iterable[_Union[ContainerSpec, _Mapping]]] = ..., restart_policy: _Optional[_Union[RestartPolicy, str]] = ..., stop_grace_period: _Optional[str] = ..., cell: _Optional[str] = ..., host_network: _Optional[bool] = ..., network: _Optional[_Union[PodNetwork, str]] = ..., depends_on: _Optional[_Iterable[str]] = ...) -> None: ...

class DriverSpec(_message.Message):
    __slots__ = ("version", "runtime_version", "source", "sha256", "depends_on")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    version: str
    runtime_version: str
    source: str
    sha256: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., runtime_version: _Optional[str] = ..., source: _Optional[str] = ..., sha256: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ...) -> None: ...

class PersistentExecutableSpec(_message.Message):
    __slots__ = ("command", "comment", "enabled", "depends_on")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    command: str
    comment: str
    enabled: bool
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, command: _Optional[str] = ..., comment: _Optional[str] = ..., enabled: _Optional[bool] = ..., depends_on: _Optional[_Iterable[str]] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("api_version", "kind", "metadata", "cell", "executable", "pod", "driver", "persistent_executable")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CELL_FIELD_NUMBER: _ClassVar[int]
    EXECUTABLE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    PERSISTENT_EXECUTABLE_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    kind: str
    metadata: ObjectMeta
    cell: CellSpec
    executable: ExecutableSpec
    pod: PodSpec
    driver: DriverSpec
    persistent_executable: PersistentExecutableSpec
    def __init__(self, api_version: _Optional[str] = ..., kind: _Optional[str] = ..., metadata: _Optional[_Union[ObjectMeta, _Mapping]] = ..., cell: _Optional[_Union[CellSpec, _Mapping]] = ..., executable: _Optional[_Union[ExecutableSpec, _Mapping]] = ..., pod: _Optional[_Union[PodSpec, _Mapping]] = ..., driver: _Optional[_Union[DriverSpec, _Mapping]] = ..., persistent_executable: _Optional[_Union[PersistentExecutableSpec, _Mapping]] = ...) -> None: ...
