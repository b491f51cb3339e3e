"""Domain errors -> gRPC status codes, in one place for every servicer."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import grpc

from provisioner.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    ManifestError,
    NodeError,
    NotFound,
    PermissionDenied,
    ProvisionerError,
    Unavailable,
    UsageError,
)

log = logging.getLogger("provisioner.daemon")

#: Most specific first: the first class an error is an instance of decides its code.
CODES: tuple[tuple[type[ProvisionerError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (UsageError, grpc.StatusCode.INVALID_ARGUMENT),
    (ManifestError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DataLoss, grpc.StatusCode.DATA_LOSS),
    (NodeError, grpc.StatusCode.INTERNAL),
)


def code_for(exc: BaseException) -> grpc.StatusCode:
    for cls, code in CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    """End the call with the status ``exc`` maps to; real faults are logged."""
    code = code_for(exc)
    if isinstance(exc, ProvisionerError):
        message = str(exc)
    else:
        log.exception("internal error")
        message = f"internal error: {type(exc).__name__}: {exc}"
    if code is grpc.StatusCode.INTERNAL:
        log.error("%s", message)
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort raises


F = TypeVar("F", bound=Callable[..., Any])


def _already_ended(context: grpc.ServicerContext) -> bool:
    """True when the method itself ended the call (context.abort raises a bare
    Exception after setting the code): that status must pass through unchanged."""
    try:
        code = context.code()  # type: ignore[attr-defined]  # grpc >= 1.38; not in the stubs
        return code not in (None, grpc.StatusCode.OK)
    except (AttributeError, NotImplementedError):  # a context without code()
        return False


def handles_errors(method: F) -> F:
    """Decorate a servicer method (unary or server-streaming): any exception becomes the
    status it maps to. grpc's own abort (an RpcError raised by context.abort) passes."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from method(self, request, context)
            except grpc.RpcError:
                raise
            except Exception as exc:
                if _already_ended(context):
                    raise
                abort(context, exc)
        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:
            if _already_ended(context):
                raise
            abort(context, exc)
    return unary  # type: ignore[return-value]
