from provisioner._proto.meta import meta_pb2 as _meta_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Executable(_message.Message):
    __slots__ = ("meta", "command", "comment")
    META_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    command: str
    comment: str
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ..., command: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class ExecutableStatus(_message.Message):
    __slots__ = ("meta", "proc", "status", "stdout", "stderr", "exit_code")
    META_FIELD_NUMBER: _ClassVar[int]
    PROC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    proc: _meta_pb2.ProcessMeta
    status: _meta_pb2.Status
    stdout: str
    stderr: str
    exit_code: str
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ..., proc: _Optional[_Union[_meta_pb2.ProcessMeta, _Mapping]] = ..., status: _Optional[_Union[_meta_pb2.Status, str]] = ..., stdout: _Optional[str] = ..., stderr: _Optional[str] = ..., exit_code: _Optional[str] = ...) -> None: ...

class Container(_message.Message):
    __slots__ = ("meta", "name", "image")
    META_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    name: str
    image: str
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ..., name: _Optional[str] = ..., image: _Optional[str] = ...) -> None: ...

class ContainerStatus(_message.Message):
    __slots__ = ("meta", "proc", "status")
    META_FIELD_NUMBER: _ClassVar[int]
    PROC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    proc: _meta_pb2.ProcessMeta
    status: _meta_pb2.Status
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ..., proc: _Optional[_Union[_meta_pb2.ProcessMeta, _Mapping]] = ..., status: _Optional[_Union[_meta_pb2.Status, str]] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("meta", "name", "image")
    META_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    name: str
    image: str
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ..., name: _Optional[str] = ..., image: _Optional[str] = ...) -> None: ...

class InstanceStatus(_message.Message):
    __slots__ = ("meta", "status")
    META_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    status: _meta_pb2.Status
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ..., status: _Optional[_Union[_meta_pb2.Status, str]] = ...) -> None: ...

class InstanceMeta(_message.Message):
    __slots__ = ("meta",)
    META_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ...) -> None: ...

class InstanceMetaStatus(_message.Message):
    __slots__ = ("meta", "status")
    META_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    status: _meta_pb2.Status
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ..., status: _Optional[_Union[_meta_pb2.Status, str]] = ...) -> None: ...
