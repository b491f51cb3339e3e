"""Who may call what: caller identities, roles of method patterns, and the interceptor.

Identity of a caller:

- on the unix socket: ``unix:local``. grpcio does not expose the peer credentials of a
  unix connection, so the socket's mode (0600, owner root; 0660 with ``--socket-group``)
  is what keeps others out, and everyone who can open it is this one identity.
- on TCP with mutual TLS: the client certificate's common name and every subject
  alternative name (DNS names, URIs such as ``spiffe://lab/ci-bot``, IP addresses).
- on plain TCP (``--insecure-tcp``): ``anonymous``.

A certificate can never claim the reserved identities ``unix:local`` or ``anonymous``.

Policy (YAML; every key optional)::

    identities:            # identity (CN or SAN) or "*" -> roles
      ci-bot: [operator]
      spiffe://lab/admin: [admin]
      "*": [reader]
    roles:                 # role -> full method names; a trailing "*" is a prefix
      auditor: [/provisioner.v1.NodeService/GetState, /grpc.health.v1.Health/*]

The file is merged over the built-in default (``DEFAULT_ROLES``, ``DEFAULT_IDENTITIES``):
an entry replaces the default of the same name, other defaults stay. A caller gets the
roles of every identity entry matching one of its names; when none matches, those of
``"*"``. An identity mapped to ``[]`` is denied everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc
import yaml

from provisioner.errors import InvalidArgument
from provisioner.records import field, record

log = logging.getLogger("provisioner.daemon.authz")

UNIX_IDENTITY = "unix:local"
ANONYMOUS = "anonymous"
WILDCARD = "*"
RESERVED = frozenset({UNIX_IDENTITY, ANONYMOUS})

_READER = (
    "/aurae.discovery.v0.DiscoveryService/*",
    "/aurae.observe.v0.ObserveService/*",
    "/observe.Observe/*",
    "/v1alpha.PublicAPI/*",
    "/provisioner.v1.NodeService/GetState",
    "/provisioner.v1.NodeService/Plan",
    "/provisioner.v1.NodeService/GetLogs",
    "/provisioner.v1.NodeService/ListImages",
    "/grpc.health.v1.Health/*",
    "/grpc.reflection.v1alpha.ServerReflection/*",
    "/grpc.reflection.v1.ServerReflection/*",
)
_OPERATOR = (
    "/aurae.runtime.v0.CellService/*",
    "/aurae.runtime.v0.PodService/*",
    "/aurae.runtime.v0.InstanceService/*",
    "/aurae.runtime.v0.SpawnService/*",
    "/aurae.runtime.pod.v0.PodService/*",
    "/runtime.Runtime/*",
    "/provisioner.v1.NodeService/Apply",
    "/provisioner.v1.NodeService/PruneImages",
)
#: reader: look only; operator: change cells, executables and pods; admin: everything,
#: notably the driver registry (atomix.runtime.v1.Registry) and persistent executables
#: (schedule.*), which upstream split out "for authz purposes".
DEFAULT_ROLES: Mapping[str, tuple[str, ...]] = {
    "reader": _READER,
    "operator": _READER + _OPERATOR,
    "admin": ("/*",),
}
DEFAULT_IDENTITIES: Mapping[str, tuple[str, ...]] = {
    UNIX_IDENTITY: ("admin",),
    WILDCARD: ("reader",),
}
#: Denial decisions are cached per (roles, method); clients choose method names, so the
#: cache is bounded.
_CACHE_LIMIT = 4096


@record
class Caller:
    """Who is calling, as the TLS peer certificate (or the unix socket) names it."""

    #: Names the policy matches (CN and SANs, or a reserved identity).
    names: tuple[str, ...]
    #: How the caller is named in messages (CN if any, else the first SAN).
    display: str


@record
class Policy:
    """Roles (patterns of gRPC methods) and identities (caller names -> roles);
    the built-in default unless a policy file is given.
    """

    roles: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_ROLES))
    identities: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_IDENTITIES))
    source: str = "built-in default policy"
    _cache: dict[tuple[tuple[str, ...], str], bool] = field(
        default_factory=dict, compare=False, repr=False)

    def roles_of(self, caller: Caller) -> tuple[str, ...]:
        """The roles of a caller: those of every name it matches, else the wildcard's."""
        matched = [key for key in caller.names if key in self.identities]
        if not matched:
            return self.identities.get(WILDCARD, ())
        roles: dict[str, None] = {}
        for key in matched:
            roles.update(dict.fromkeys(self.identities[key]))
        return tuple(roles)

    def allows(self, roles: tuple[str, ...], method: str) -> bool:
        """True if any of the roles grants the method (``/package.Service/Method``)."""
        key = (roles, method)
        decision = self._cache.get(key)
        if decision is None:
            decision = any(_matches(p, method) for r in roles for p in self.roles.get(r, ()))
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[key] = decision
        return decision


def _matches(pattern: str, method: str) -> bool:
    if pattern.endswith("*"):
        return method.startswith(pattern[:-1])
    return method == pattern


def load_policy(path: str | None) -> Policy:
    """The policy in ``path`` merged over the default; None: the default. An unreadable
    or invalid file is InvalidArgument naming the file and the problem."""
    if path is None:
        return Policy()
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise InvalidArgument(f"policy file {path}: cannot read it: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise InvalidArgument(f"policy file {path}: not valid YAML{line}: "
                              f"{getattr(exc, 'problem', None) or exc}") from None
    return parse_policy(data, path)


def parse_policy(data: object, source: str) -> Policy:
    """A policy from a parsed policy file; InvalidArgument naming the file and the
    problem for anything malformed.
    """
    def bad(message: str) -> InvalidArgument:
        return InvalidArgument(f"policy file {source}: {message}")

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise bad("the top level must be a mapping with 'identities' and/or 'roles'")
    unknown = sorted(str(k) for k in data if k not in ("identities", "roles"))
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)} (expected 'identities', 'roles')")
    roles = dict(DEFAULT_ROLES)
    for role, patterns in _mapping(data.get("roles"), "roles", bad).items():
        for pattern in patterns:
            if not (pattern.startswith("/") or pattern == "*") or "*" in pattern[:-1]:
                raise bad(f"role {role!r}: pattern {pattern!r} must be a full method name "
                          "like /package.Service/Method, with '*' only at the end")
        roles[role] = patterns
    identities = dict(DEFAULT_IDENTITIES)
    for identity, names in _mapping(data.get("identities"), "identities", bad).items():
        missing = [n for n in names if n not in roles]
        if missing:
            raise bad(f"identity {identity!r}: unknown role(s) {', '.join(missing)} "
                      f"(defined: {', '.join(sorted(roles))})")
        identities[identity] = names
    return Policy(roles, identities, source)


def _mapping(value: object, key: str, bad: Callable[[str], InvalidArgument]
             ) -> dict[str, tuple[str, ...]]:
    """``{name: [string, ...]}`` or an error saying which entry is wrong."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(f"'{key}' must be a mapping of names to lists")
    result: dict[str, tuple[str, ...]] = {}
    for name, items in value.items():
        if not isinstance(name, str) or not name:
            raise bad(f"'{key}': {name!r} is not a non-empty string")
        if items is None:
            items = []
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise bad(f"'{key}.{name}' must be a list of non-empty strings")
        result[name] = tuple(items)
    return result


def caller_of(context: grpc.ServicerContext) -> Caller:
    """The caller's identity: see the module docstring."""
    if context.peer().startswith("unix:"):
        return Caller((UNIX_IDENTITY,), UNIX_IDENTITY)
    # grpc-stubs types values as bytes; they are lists of bytes.
    auth: Mapping[str, Any] = context.auth_context()
    common = [v.decode("utf-8", "replace") for v in auth.get("x509_common_name", ())]
    alternative = [v.decode("utf-8", "replace")
                   for v in auth.get("x509_subject_alternative_name", ())]
    if not common and not alternative and b"ssl" not in auth.get("transport_security_type", ()):
        return Caller((ANONYMOUS,), ANONYMOUS)  # plain TCP: no certificate at all
    names = tuple(dict.fromkeys(n for n in common + alternative if n and n not in RESERVED))
    # A certificate without names matches only "*".
    return Caller(names, (common or alternative or ["certificate without names"])[0])


if TYPE_CHECKING:
    _Interceptor = grpc.ServerInterceptor[Any, Any]
    _Handler = grpc.RpcMethodHandler[Any, Any]
else:
    _Interceptor = grpc.ServerInterceptor
    _Handler = grpc.RpcMethodHandler


class AuthorizationInterceptor(_Interceptor):
    """Checks every call against the policy before the servicer sees it.

    The identity is only known inside the call (``context``), so the interceptor wraps
    the method's behaviour rather than deciding in ``intercept_service``. Methods nobody
    serves are authorized too, so that a denied caller learns nothing about which
    methods exist (PERMISSION_DENIED comes before UNIMPLEMENTED).

    The wrapped behaviour is always the blocking form: grpc's experimental non-blocking
    streams (health Watch) would otherwise not count towards maximum_concurrent_rpcs.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def authorize(self, method: str, context: grpc.ServicerContext) -> None:
        """Return if the caller may call ``method``; otherwise end the call with
        PERMISSION_DENIED naming the method and the caller."""
        caller = caller_of(context)
        roles = self.policy.roles_of(caller)
        if self.policy.allows(roles, method):
            return
        role_text = (f"role{'s' if len(roles) > 1 else ''} {', '.join(roles)}"
                     if roles else "no role")
        message = f"client {caller.display!r} ({role_text}) may not call {method}"
        log.warning("denied: %s (peer %s)", message, context.peer())
        context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails],
                                                       _Handler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> _Handler | None:
        """Refuse a call whose caller has no role allowing its method
        (PERMISSION_DENIED), before the handler runs.
        """
        method = handler_call_details.method
        handler = continuation(handler_call_details)
        if handler is None:
            return self._unserved(method)
        return self._guarded(handler, method)

    def _guarded(self, handler: _Handler, method: str) -> _Handler:
        authorize = self.authorize
        args = (handler.request_deserializer, handler.response_serializer)
        if handler.unary_unary is not None:
            unary_unary = handler.unary_unary

            def uu(request: Any, context: grpc.ServicerContext) -> Any:
                authorize(method, context)
                return unary_unary(request, context)
            return grpc.unary_unary_rpc_method_handler(uu, *args)
        if handler.unary_stream is not None:
            unary_stream = handler.unary_stream

            def us(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                authorize(method, context)
                return unary_stream(request, context)
            return grpc.unary_stream_rpc_method_handler(us, *args)
        if handler.stream_unary is not None:
            stream_unary = handler.stream_unary

            def su(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                authorize(method, context)
                return stream_unary(requests, context)
            return grpc.stream_unary_rpc_method_handler(su, *args)
        stream_stream = handler.stream_stream
        assert stream_stream is not None

        def ss(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            authorize(method, context)
            return stream_stream(requests, context)
        return grpc.stream_stream_rpc_method_handler(ss, *args)

    def _unserved(self, method: str) -> _Handler:
        # Raw bytes in and out: the handler never reads a message, so it fits calls of
        # every arity.
        def unserved(requests: Iterator[bytes], context: grpc.ServicerContext
                     ) -> Iterator[bytes]:
            self.authorize(method, context)
            context.abort(grpc.StatusCode.UNIMPLEMENTED,
                          f"method {method} is not served by this daemon")
        return grpc.stream_stream_rpc_method_handler(unserved)
