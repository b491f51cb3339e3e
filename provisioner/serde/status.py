"""Provisioner errors <-> gRPC status: one table, read in both directions.

A daemon ends a failed call with the status code :data:`ERROR_STATUS` gives the error's
class, its message as the details, and the class's name in the trailing metadata key
:data:`ERROR_CLASS_KEY`. A client rebuilds the same class from that name; when the name
is missing or unknown (a status grpc made itself, another server, an older daemon) it
falls back to the most general class of the code's row. The message text is never
parsed.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from provisioner.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    LockBusy,
    ManifestError,
    NodeError,
    NotFound,
    NotOwned,
    PermissionDenied,
    ProvisionerError,
    StalePlan,
    Unavailable,
    UnsafeName,
    UsageError,
)

#: The trailing-metadata key that names the error class (``StalePlan``, ``LockBusy``...).
ERROR_CLASS_KEY = "provisioner-error"

#: Error class -> status code, most specific first: the first class an error is an
#: instance of decides its code and the name sent. Every class here can be rebuilt from
#: its message alone; a subclass that cannot (``LoadError``, ``ValidationFailed``) is
#: sent as the row it falls in (``ManifestError``).
ERROR_STATUS: tuple[tuple[type[ProvisionerError], grpc.StatusCode], ...] = (
    (UnsafeName, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (UsageError, grpc.StatusCode.INVALID_ARGUMENT),
    (ManifestError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (StalePlan, grpc.StatusCode.FAILED_PRECONDITION),
    (LockBusy, grpc.StatusCode.FAILED_PRECONDITION),
    (NotOwned, grpc.StatusCode.FAILED_PRECONDITION),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DataLoss, grpc.StatusCode.DATA_LOSS),
    (NodeError, grpc.StatusCode.INTERNAL),
)

_BY_NAME: dict[str, type[ProvisionerError]] = {cls.__name__: cls for cls, _ in ERROR_STATUS}

#: For a status without a class name: the most general class of the code's rows (the
#: last row of that code), and UNAUTHENTICATED read as PERMISSION_DENIED.
_BY_CODE: dict[grpc.StatusCode, type[ProvisionerError]] = {
    **{code: cls for cls, code in ERROR_STATUS},
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
}
_BY_CODE[grpc.StatusCode.INVALID_ARGUMENT] = InvalidArgument


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str | None]:
    """The status code ``exc`` ends a call with, and the class name to send with it
    (None for an exception that is not a provisioner error: an internal fault)."""
    for cls, code in ERROR_STATUS:
        if isinstance(exc, cls):
            return code, cls.__name__
    return grpc.StatusCode.INTERNAL, None


def error_class_of(code: grpc.StatusCode,
                   metadata: Iterable[tuple[str, str | bytes]] | None
                   ) -> type[ProvisionerError] | None:
    """The provisioner error class a failed call's status stands for: the class its
    metadata names when the table knows it and it agrees with the code, else the code's
    general class; None for a code no provisioner error ends with."""
    for key, value in metadata or ():
        if key == ERROR_CLASS_KEY:
            name = value.decode(errors="replace") if isinstance(value, bytes) else value
            cls = _BY_NAME.get(name)
            if cls is not None and _code_of(cls) is code:
                return cls
    return _BY_CODE.get(code)


def _code_of(cls: type[ProvisionerError]) -> grpc.StatusCode:
    return next(code for row, code in ERROR_STATUS if row is cls)
