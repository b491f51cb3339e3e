from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DriverInfo(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class RuntimeInfo(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...

class PluginHeader(_message.Message):
    __slots__ = ("driver", "runtime")
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    driver: DriverInfo
    runtime: RuntimeInfo
    def __init__(self, driver: _Optional[_Union[DriverInfo, _Mapping]] = ..., runtime: _Optional[_Union[RuntimeInfo, _Mapping]] = ...) -> None: ...

class PluginChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class PluginTrailer(_message.Message):
    __slots__ = ("checksum",)
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    checksum: str
    def __init__(self, checksum: _Optional[str] = ...) -> None: ...

class PullDriverRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: PluginHeader
    def __init__(self, header: _Optional[_Union[PluginHeader, _Mapping]] = ...) -> None: ...

class PullDriverResponse(_message.Message):
    __slots__ = ("chunk", "trailer")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    chunk: PluginChunk
    trailer: PluginTrailer
    def __init__(self, chunk: _Optional[_Union[PluginChunk, _Mapping]] = ..., trailer: _Optional[_Union[PluginTrailer, _Mapping]] = ...) -> None: ...

class PushDriverRequest(_message.Message):
    __slots__ = ("header", "chunk", "trailer")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    header: PluginHeader
    chunk: PluginChunk
    trailer: PluginTrailer
    def __init__(self, header: _Optional[_Union[PluginHeader, _Mapping]] = ..., chunk: _Optional[_Union[PluginChunk, _Mapping]] = ..., trailer: _Optional[_Union[PluginTrailer, _Mapping]] = ...) -> None: ...

class PushDriverResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
