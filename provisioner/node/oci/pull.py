"""Registry pulls with skopeo: ``docker://HOST/NAME:TAG`` into a local OCI layout.

Debian's ``skopeo`` (containers/image, what podman and buildah use) speaks the
registry protocol: token and basic auth, TLS, Docker and OCI manifests, multi-arch
indexes, retries. It writes the OCI image layout that :mod:`layout` reads and
:mod:`images` unpacks, so the pull itself is one program call and everything after
it is the code that already reads local layouts (and verifies every blob again).

:func:`skopeo_copy` runs ``skopeo copy`` with:

- ``--override-os linux --override-arch <this machine>``: a multi-arch index is
  resolved to this platform and only that image is copied;
- ``--dest-shared-blob-dir``: blobs go to one directory shared by every pull, so a
  layer two images have is fetched and stored once (skopeo writes a blob to a
  temporary file in the destination layout, verifies its digest while writing and
  renames it into place: the shared directory never holds a partial blob);
- TLS verified against the system roots, plus the node's CA file when one is
  configured (``--src-cert-dir`` holding it as ``ca.crt``). ``--src-tls-verify=false``
  (HTTPS unverified, else plain HTTP) only for the registries the node lists as
  insecure, and for a registry on ``localhost``, ``127.0.0.0/8`` or ``::1``
  (:func:`plain_http_allowed`, as Docker does) that does not speak TLS at all - a
  loopback registry that does speak TLS is verified like any other
  (:func:`_speaks_tls` tries a handshake first);
- ``--authfile``: the credentials file of podman and skopeo (``auth.json``), found as
  :func:`auth_file` says. Credentials are never on a command line, in a log, an event
  or an error message (skopeo's messages do not carry them);
- progress to the terminal when standard error is one, else ``--quiet``;
- ``PR_SET_PDEATHSIG`` (set by ``setpriv --pdeathsig KILL``, which then execs skopeo):
  skopeo dies with the thread that started it, so a killed apply leaves no pull running.

A failure is turned into the project's error hierarchy with the reference named
(:func:`pull_error`): unknown host and refused connections are Unavailable, a refused
TLS handshake or plain HTTP where TLS is required FailedPrecondition, 401/403
PermissionDenied, an unknown tag or digest NotFound, a digest mismatch DataLoss.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence

from provisioner.errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NodeError,
    NotFound,
    PermissionDenied,
    ProvisionerError,
    Unavailable,
)
from provisioner.node.oci.layout import machine_platform
from provisioner.node.types import RegistryOptions

__all__ = ["RegistryOptions", "auth_file", "plain_http_allowed", "pull_error", "skopeo_copy"]

SKOPEO = "skopeo"
#: util-linux's setpriv (Debian: essential) sets PR_SET_PDEATHSIG and execs skopeo, so
#: no Python runs in the forked child: a ``preexec_fn`` in a process with other threads
#: (a daemon's gRPC workers) can crash the child before it execs (seen: SIGSEGV in
#: ``ctypes.CDLL`` after fork, a pull failing with "no message").
SETPRIV = "setpriv"
#: A pull that takes longer than this is ended (skopeo's own --command-timeout).
PULL_TIMEOUT_S = 1800
_PR_SET_PDEATHSIG = 1
_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def plain_http_allowed(host: str, insecure: Sequence[str] = ()) -> bool:
    """Whether ``host`` (``HOST[:PORT]``) may be reached without verified TLS: a
    loopback registry (as Docker does) or one listed insecure (with or without port)."""
    bare = _bare(host)
    if _listed(host, insecure):
        return True
    if bare == "localhost" or bare.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def _listed(host: str, insecure: Sequence[str]) -> bool:
    return host in insecure or _bare(host) in insecure


def _bare(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.partition(":")[0] if host.count(":") == 1 else host


def _speaks_tls(host: str, timeout_s: float = 5.0) -> bool:
    """Whether ``host`` (port 443 unless given) answers a TLS handshake (unverified:
    this only tells TLS from plain HTTP; skopeo verifies). False when it answers
    something else; True when it cannot be reached (skopeo then says why, over TLS)."""
    bare = _bare(host)
    port = 443
    if host.startswith("[") and "]:" in host:
        port = int(host.rpartition(":")[2])
    elif host.count(":") == 1:
        port = int(host.partition(":")[2])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA loading: ~40 ms saved
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((bare, port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=bare):
            return True
    except ssl.SSLError:
        return False
    except OSError:
        return True


def auth_file(explicit: str = "") -> str:
    """The credentials file a pull uses, or "" for none: ``explicit`` (the node's
    setting), else ``$REGISTRY_AUTH_FILE``, else the first that exists of podman's
    ``$XDG_RUNTIME_DIR/containers/auth.json``, ``/run/containers/<uid>/auth.json``,
    ``~/.config/containers/auth.json`` and ``~/.docker/config.json``."""
    if explicit:
        if not os.path.isfile(explicit):
            raise FailedPrecondition(f"registry auth file {explicit}: no such file")
        return explicit
    env = os.environ.get("REGISTRY_AUTH_FILE", "")
    if env:
        return env if os.path.isfile(env) else ""
    home = os.path.expanduser("~")
    candidates = [os.path.join(os.environ.get("XDG_RUNTIME_DIR", ""), "containers",
                               "auth.json") if os.environ.get("XDG_RUNTIME_DIR") else "",
                  f"/run/containers/{os.geteuid()}/auth.json",
                  os.path.join(home, ".config", "containers", "auth.json"),
                  os.path.join(home, ".docker", "config.json")]
    return next((c for c in candidates if c and os.path.isfile(c)), "")


def skopeo_copy(canonical: str, layout: str, tag: str, blob_dir: str,
                options: RegistryOptions, label: str) -> None:
    """Copy ``docker://canonical`` for this platform into the OCI layout ``layout``
    (tagged ``tag``), its blobs into ``blob_dir``; the mapped error on failure.
    ``label`` is the reference as the user wrote it, for messages."""
    if shutil.which(SKOPEO) is None:
        raise Unavailable(f"image {label!r}: registry pulls need skopeo "
                          "(apt-get install skopeo)")
    host = canonical.partition("/")[0]
    arch, variant = machine_platform()
    argv = [SKOPEO, "--command-timeout", f"{PULL_TIMEOUT_S}s",
            "--override-os", "linux", "--override-arch", arch]
    if variant:
        argv += ["--override-variant", variant]
    argv += ["copy", "--retry-times", "2", "--dest-shared-blob-dir", blob_dir]
    if _listed(host, options.insecure) or (plain_http_allowed(host) and
                                            not _speaks_tls(host)):
        argv.append("--src-tls-verify=false")
    credentials = auth_file(options.auth_file)
    if credentials:
        argv += ["--authfile", credentials]
    tty = _stderr_is_tty()
    if not tty:
        argv.append("--quiet")
    with _cert_dir(options.ca_file) as certs:
        if certs:
            argv += ["--src-cert-dir", certs]
        argv += [f"docker://{canonical}", f"oci:{layout}:{tag}"]
        setpriv = shutil.which(SETPRIV)
        try:
            done = subprocess.run([setpriv, "--pdeathsig", "KILL", "--", *argv]
                                  if setpriv else argv, stdin=subprocess.DEVNULL,
                                  stdout=2 if tty else subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, check=False,
                                  preexec_fn=None if setpriv else _die_with_parent,
                                  timeout=PULL_TIMEOUT_S + 60)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"image {label!r}: the pull took longer than "
                              f"{PULL_TIMEOUT_S}s") from None
        except OSError as e:
            raise NodeError(f"image {label!r}: running skopeo: {e}") from e
    if done.returncode != 0:
        raise pull_error(label, canonical, done.stderr.decode("utf-8", "replace"))


def pull_error(label: str, canonical: str, stderr: str) -> ProvisionerError:
    """The error a failed ``skopeo copy`` of ``canonical`` means, naming the reference
    (``label``, as written) and, where it helps, what to do."""
    message = _skopeo_message(stderr)
    lower = message.lower()
    host = canonical.partition("/")[0]
    what = f"image {label!r}" + (f" ({canonical})" if canonical != label else "")
    if "digest did not match" in lower or "digest mismatch" in lower or \
            "does not match digest" in lower or "manifest does not match" in lower:
        return DataLoss(f"{what}: the registry sent content that does not match its "
                        f"digest; nothing was stored ({message})")
    if "no such host" in lower or "server misbehaving" in lower:
        return Unavailable(f"{what}: unknown registry host {host!r} ({message})")
    if "server gave http response to https client" in lower:
        return FailedPrecondition(
            f"{what}: registry {host} speaks plain HTTP, which is used only for localhost, "
            f"127.0.0.0/8 and registries the node lists as insecure ({message})")
    if "x509:" in lower or "certificate" in lower or "tls:" in lower:
        return FailedPrecondition(
            f"{what}: TLS with registry {host} refused: its certificate is not trusted "
            f"(give its CA with --registry-ca, or list it with --insecure-registry) "
            f"({message})")
    if "unauthorized" in lower or "authentication required" in lower or \
            "denied" in lower or " 401" in lower or " 403" in lower or "forbidden" in lower:
        return PermissionDenied(f"{what}: registry {host} refused access (401/403: check "
                                f"the credentials in auth.json) ({message})")
    if "manifest unknown" in lower or "name unknown" in lower or \
            "not found" in lower or "no image found" in lower:
        return NotFound(f"{what}: no such image, tag or digest ({message})")
    if "connection refused" in lower or "i/o timeout" in lower or \
            "network is unreachable" in lower or "connection reset" in lower:
        return Unavailable(f"{what}: registry {host} unreachable ({message})")
    if "invalid reference" in lower or "invalid argument" in lower:
        return InvalidArgument(f"{what}: {message}")
    return NodeError(f"{what}: skopeo copy failed: {message}")


def _skopeo_message(stderr: str) -> str:
    """skopeo's fatal message (its logrus ``msg="..."``), else its last line."""
    for line in reversed(stderr.strip().splitlines()):
        match = _MSG.search(line)
        if match:
            return match.group(1).replace('\\"', '"').replace("\\\\", "\\")
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else "no message"


@contextlib.contextmanager
def _cert_dir(ca_file: str) -> Iterator[str]:
    """A directory holding ``ca_file`` as ``ca.crt`` (containers/image's layout of
    trusted CAs, added to the system roots); "" without a CA file."""
    if not ca_file:
        yield ""
        return
    try:
        with open(ca_file, "rb") as f:
            pem = f.read(1 << 20)
    except OSError as e:
        raise FailedPrecondition(f"registry CA file {ca_file}: {e.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise FailedPrecondition(f"registry CA file {ca_file}: no PEM certificate in it")
    with tempfile.TemporaryDirectory(prefix="provisioner-certs-") as directory:
        with open(os.path.join(directory, "ca.crt"), "wb") as f:
            f.write(pem)
        yield directory


def _stderr_is_tty() -> bool:
    try:
        return os.isatty(sys.stderr.fileno())
    except (AttributeError, ValueError, OSError):
        return False


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here, never in a forked child


def _die_with_parent() -> None:
    """In the child (without setpriv only): SIGKILL when the thread that started it
    ends (a killed apply)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
