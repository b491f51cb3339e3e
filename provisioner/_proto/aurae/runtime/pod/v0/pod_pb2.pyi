from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class PodServiceAllocateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PodServiceAllocateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PodServiceFreeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PodServiceFreeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Pod(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PodServiceStartRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PodServiceStartResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PodServiceStopRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PodServiceStopResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Container(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
