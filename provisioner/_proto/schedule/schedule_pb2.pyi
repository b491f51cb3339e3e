from provisioner._proto.meta import meta_pb2 as _meta_pb2
from provisioner._proto.runtime import runtime_pb2 as _runtime_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ShowEnabledRequest(_message.Message):
    __slots__ = ("meta",)
    META_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ...) -> None: ...

class ShowEnabledResponse(_message.Message):
    __slots__ = ("meta", "Executables")
    META_FIELD_NUMBER: _ClassVar[int]
    EXECUTABLES_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    Executables: _containers.RepeatedCompositeFieldContainer[_runtime_pb2.Executable]
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ..., Executables: _Optional[_Iterable[_Union[_runtime_pb2.Executable, _Mapping]]] = ...) -> None: ...

class ShowDisabledRequest(_message.Message):
    __slots__ = ("meta",)
    META_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ...) -> None: ...

class ShowDisabledResponse(_message.Message):
    __slots__ = ("meta", "Executables")
    META_FIELD_NUMBER: _ClassVar[int]
    EXECUTABLES_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    Executables: _containers.RepeatedCompositeFieldContainer[_runtime_pb2.Executable]
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ..., Executables: _Optional[_Iterable[_Union[_runtime_pb2.Executable, _Mapping]]] = ...) -> None: ...

class ExecutableEnableResponse(_message.Message):
    __slots__ = ("meta",)
    META_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ...) -> None: ...

class ExecutableDisableResponse(_message.Message):
    __slots__ = ("meta",)
    META_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ...) -> None: ...

class ExecutableDestroyResponse(_message.Message):
    __slots__ = ("meta",)
    META_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.AuraeMeta
    def __init__(self, meta: _Optional[_Union[_meta_pb2.AuraeMeta, _Mapping]] = ...) -> None: ...
