"""Domain errors end a servicer's call with their gRPC status (the table is
:mod:`provisioner.serde.status`, which clients read back)."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import grpc

from provisioner.errors import ProvisionerError
from provisioner.serde.status import ERROR_CLASS_KEY, status_of

log = logging.getLogger("provisioner.daemon")


def abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    """End the call with the status ``exc`` maps to (:mod:`provisioner.serde.status`),
    the error's class named in the trailing metadata; real faults are logged."""
    code, class_name = status_of(exc)
    if isinstance(exc, ProvisionerError):
        message = str(exc)
    else:
        log.exception("internal error")
        message = f"internal error: {type(exc).__name__}: {exc}"
    if code is grpc.StatusCode.INTERNAL:
        log.error("%s", message)
    if class_name is not None:
        context.set_trailing_metadata(((ERROR_CLASS_KEY, class_name),))
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
