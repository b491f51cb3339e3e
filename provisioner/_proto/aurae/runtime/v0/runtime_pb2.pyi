from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CellServiceAllocateRequest(_message.Message):
    __slots__ = ("cell",)
    CELL_FIELD_NUMBER: _ClassVar[int]
    cell: Cell
    def __init__(self, cell: _Optional[_Union[Cell, _Mapping]] = ...) -> None: ...

class CellServiceAllocateResponse(_message.Message):
    __slots__ = ("cell_name", "cgroup_v2")
    CELL_NAME_FIELD_NUMBER: _ClassVar[int]
    CGROUP_V2_FIELD_NUMBER: _ClassVar[int]
    cell_name: str
    cgroup_v2: bool
    def __init__(self, cell_name: _Optional[str] = ..., cgroup_v2: _Optional[bool] = ...) -> None: ...

class CellServiceFreeRequest(_message.Message):
    __slots__ = ("cell_name",)
    CELL_NAME_FIELD_NUMBER: _ClassVar[int]
    cell_name: str
    def __init__(self, cell_name: _Optional[str] = ...) -> None: ...

class CellServiceFreeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CellServiceStartRequest(_message.Message):
    __slots__ = ("cell_name", "executable")
    CELL_NAME_FIELD_NUMBER: _ClassVar[int]
    EXECUTABLE_FIELD_NUMBER: _ClassVar[int]
    cell_name: str
    executable: Executable
    def __init__(self, cell_name: _Optional[str] = ..., executable: _Optional[_Union[Executable, _Mapping]] = ...) -> None: ...

class CellServiceStartResponse(_message.Message):
    __slots__ = ("pid",)
    PID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    def __init__(self, pid: _Optional[int] = ...) -> None: ...

class CellServiceStopRequest(_message.Message):
    __slots__ = ("cell_name", "executable_name")
    CELL_NAME_FIELD_NUMBER: _ClassVar[int]
    EXECUTABLE_NAME_FIELD_NUMBER: _ClassVar[int]
    cell_name: str
    executable_name: str
    def __init__(self, cell_name: _Optional[str] = ..., executable_name: _Optional[str] = ...) -> None: ...

class CellServiceStopResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Cell(_message.Message):
    __slots__ = ("name", "cpu", "cpuset", "isolate_process", "isolate_network")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    CPUSET_FIELD_NUMBER: _ClassVar[int]
    ISOLATE_PROCESS_FIELD_NUMBER: _ClassVar[int]
    ISOLATE_NETWORK_FIELD_NUMBER: _ClassVar[int]
    name: str
    cpu: CpuController
    cpuset: CpusetController
    isolate_process: bool
    isolate_network: bool
    def __init__(self, name: _Optional[str] = ..., cpu: _Optional[_Union[CpuController, _Mapping]] = ..., cpuset: _Optional[_Union[CpusetController, _Mapping]] = ..., isolate_process: _Optional[bool] = ..., isolate_network: _Optional[bool] = ...) -> None: ...

class CpuController(_message.Message):
    __slots__ = ("weight", "max")
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    weight: int
    max: int
    def __init__(self, weight: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class CpusetController(_message.Message):
    __slots__ = ("cpus", "mems")
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMS_FIELD_NUMBER: _ClassVar[int]
    cpus: str
    mems: str
    def __init__(self, cpus: _Optional[str] = ..., mems: _Optional[str] = ...) -> None: ...

class Executable(_message.Message):
    __slots__ = ("name", "command", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    command: str
    description: str
    def __init__(self, name: _Optional[str] = ..., command: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class PodServiceAllocateRequest(_message.Message):
    __slots__ = ("pod",)
    POD_FIELD_NUMBER: _ClassVar[int]
    pod: Pod
    def __init__(self, pod: _Optional[_Union[Pod, _Mapping]] = ...) -> None: ...

class PodServiceAllocateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PodServiceStartRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PodServiceStartResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PodServiceStopRequest(_message.Message):
    __slots__ = ("pod_name", "container_name")
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_NAME_FIELD_NUMBER: _ClassVar[int]
    pod_name: str
    container_name: str
    def __init__(self, pod_name: _Optional[str] = ..., container_name: _Optional[str] = ...) -> None: ...

class PodServiceStopResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PodServiceFreeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PodServiceFreeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Pod(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Container(_message.Message):
    __slots__ = ("name", "image", "registry")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    name: str
    image: str
    registry: str
    def __init__(self, name: _Optional[str] = ..., image: _Optional[str] = ..., registry: _Optional[str] = ...) -> None: ...
