"""Where the daemon listens: a root-only unix socket, and TCP with mutual TLS.

The unix socket is the default and the safest: mode 0600 owner root (0660 and a group
with ``--socket-group``). TCP always needs mutual TLS (a server certificate and the CA
that client certificates must chain to), except with the explicit ``insecure_tcp``,
which logs a warning.
"""

from __future__ import annotations

import contextlib
import datetime
import grp
import logging
import os
import shutil
import socket
import stat
import tempfile

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from provisioner.daemon.context import DaemonConfig
from provisioner.errors import FailedPrecondition, InvalidArgument, Unavailable

log = logging.getLogger("provisioner.daemon")


class UnixSocket:
    """A socket file we put in place; removed at stop only if it is still ours."""

    def __init__(self, path: str) -> None:
        self.path = path
        st = os.lstat(path)
        self._key = (st.st_dev, st.st_ino)

    def remove(self) -> None:
        """Unlink the socket file, but only if it is still the one this listener bound."""
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._key:
                os.unlink(self.path)


def listen_unix(server: grpc.Server, path: str, group: str | None) -> UnixSocket:
    """Bind ``path`` with mode 0600 (0660 and that group with ``group``), owner root.

    grpc unlinks whatever socket is at the path when it binds, even a live one, so a
    live daemon is detected here first. The socket is bound in a private directory,
    given its mode and owner, and only then hard-linked into place: it is never visible
    with looser permissions, and the link fails rather than replace a socket that
    appeared meanwhile.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    gid = -1
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise InvalidArgument(f"socket group {group!r} does not exist") from None
    _clear_stale(path)
    private = tempfile.mkdtemp(prefix=".s", dir=parent)  # mode 0700
    try:
        staging = os.path.join(private, "s")
        if len(max(staging, path, key=len).encode()) > 107:
            raise InvalidArgument(f"socket path {path!r} is too long for a unix socket")
        if not server.add_insecure_port(f"unix:{staging}"):
            raise Unavailable(f"cannot bind unix socket {path}")
        os.chown(staging, 0, gid)
        os.chmod(staging, 0o660 if group is not None else 0o600)
        try:
            os.link(staging, path)
        except FileExistsError:
            raise FailedPrecondition(f"{path} appeared while the daemon started: another "
                                     "daemon is starting on it") from None
    except RuntimeError as exc:  # grpc's bind failure
        raise Unavailable(f"cannot bind unix socket {path}: {exc}") from None
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return UnixSocket(path)


def _clear_stale(path: str) -> None:
    """Remove a socket file nothing listens on; refuse a live one or a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FailedPrecondition(f"{path} exists and is not a socket; remove it or "
                                 "choose another socket path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale socket %s (nothing listens on it)", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError as exc:
        raise FailedPrecondition(f"cannot tell whether a daemon listens on {path}: "
                                 f"{exc.strerror or exc}") from None
    finally:
        probe.close()
    raise FailedPrecondition(f"another daemon is listening on {path}; stop it first "
                             "or choose another socket path")


def listen_tcp(server: grpc.Server, config: DaemonConfig) -> int:
    """Bind ``config.tcp`` with mutual TLS, or plainly with ``insecure_tcp``; return the
    port (useful with port 0)."""
    address = config.tcp or ""
    try:
        if config.insecure_tcp:
            log.warning("listening on %s WITHOUT TLS (--insecure-tcp): anyone who reaches "
                        "it is the identity 'anonymous' and nothing is encrypted", address)
            port = server.add_insecure_port(address)
        else:
            key, cert = _read(config.tls_key, "TLS key"), _read(config.tls_cert,
                                                                "TLS certificate")
            _check_pair(cert, key, config)
            credentials = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=_read(config.client_ca, "client CA"),
                require_client_auth=True)
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise Unavailable(f"cannot listen on {address}: {exc}") from None
    if not port:
        raise Unavailable(f"cannot listen on {address}")
    return port


def _read(path: str | None, what: str) -> bytes:
    if not path:
        raise InvalidArgument(f"mutual TLS needs a {what} file")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise InvalidArgument(f"{what} {path}: cannot read it: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise InvalidArgument(f"{what} {path}: not a PEM file")
    return data


def _check_pair(cert_pem: bytes, key_pem: bytes, config: DaemonConfig) -> None:
    """Refuse a key that does not belong to the certificate, and warn about an expired
    certificate: grpc accepts both and every client handshake would fail later."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"{config.tls_cert} / {config.tls_key}: {exc}") from None
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise InvalidArgument(f"TLS key {config.tls_key} does not belong to the "
                              f"certificate {config.tls_cert}")
    if cert.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        log.warning("the server certificate %s expired on %s", config.tls_cert,
                    cert.not_valid_after_utc.date())
