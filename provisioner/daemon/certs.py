"""A small certificate authority for lab setups: ``provisioner certs init | issue``.

Enough for mutual TLS between the daemon and its clients without openssl incantations:
one CA (``ca.crt`` / ``ca.key``), server certificates valid for ``localhost``,
``127.0.0.1`` and any names given, and client certificates whose common name is the
identity the authorization policy matches (``provisioner/daemon/authz.py``).

Keys are ECDSA P-256 (fast to make, accepted by every gRPC implementation); private keys
are written with mode 0600, certificates with 0644, and nothing existing is overwritten
unless asked. Production setups should use their own PKI: the daemon only needs PEM
files.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioner.errors import AlreadyExists, InvalidArgument, NotFound
from provisioner.names import check_artifact_name
from provisioner.records import record

CA_NAME = "ca"
DEFAULT_DAYS = 365
#: Certificates start a little in the past so that small clock differences between the
#: machine that issued them and the one checking them do not reject a fresh certificate.
CLOCK_SKEW = datetime.timedelta(minutes=5)

Kind = Literal["server", "client"]
_GeneralName = x509.DNSName | x509.IPAddress | x509.UniformResourceIdentifier


@record
class CertFiles:
    """The certificate and private-key files of one identity."""

    cert: Path
    key: Path


def init_ca(directory: str | os.PathLike[str], common_name: str = "provisioner lab CA",
            days: int = 3650, force: bool = False) -> CertFiles:
    """Create ``ca.crt`` and ``ca.key`` in ``directory`` (made with mode 0700)."""
    if not common_name.strip():
        raise InvalidArgument("the CA needs a non-empty common name")
    files = _files(directory, CA_NAME)
    _refuse_existing(files, force)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before, not_after = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(files, cert, key)
    return files


def issue(directory: str | os.PathLike[str], name: str, kind: Kind,
          sans: Sequence[str] = (), days: int = DEFAULT_DAYS, force: bool = False) -> CertFiles:
    """Write ``<name>.crt`` / ``<name>.key`` signed by the CA in ``directory``.

    ``kind`` "server": serverAuth, SANs localhost, 127.0.0.1 and ::1 plus ``sans``.
    ``kind`` "client": clientAuth, common name ``name`` (the identity the policy sees),
    plus ``sans`` (each ``DNS:x``, ``IP:x``, ``URI:x`` or a bare host name, address or
    ``scheme://`` URI). ``days`` may be negative to make an already expired
    certificate (for tests of expiry handling).
    """
    check_artifact_name(name, "certificate name")
    if name == CA_NAME:
        raise InvalidArgument(f"{CA_NAME!r} is the CA's own file name; choose another name")
    if kind not in ("server", "client"):
        raise InvalidArgument(f"certificate kind must be 'server' or 'client', not {kind!r}")
    ca_cert, ca_key = load_ca(directory)
    files = _files(directory, name)
    _refuse_existing(files, force)
    names: list[_GeneralName] = [parse_san(s) for s in sans]
    if kind == "server":
        defaults: list[_GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
        names = defaults + [n for n in names if n not in defaults]
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = _validity(days)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if kind == "server" else \
        ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=False, key_cert_sign=False,
            crl_sign=False, content_commitment=False, data_encipherment=False,
            key_agreement=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write(files, cert, key)
    return files


def load_ca(directory: str | os.PathLike[str]
            ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and key of a certificate directory; NotFound if absent."""
    files = _files(directory, CA_NAME, create=False)
    if not files.cert.exists() or not files.key.exists():
        raise NotFound(f"no CA in {files.cert.parent} (ca.crt and ca.key); run "
                       "`provisioner certs init` first")
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidArgument(f"{files.key}: not an EC private key made by `certs init`")
    return cert, key


def parse_san(value: str) -> _GeneralName:
    """``DNS:name``, ``IP:addr``, ``URI:uri``, or a bare value whose form says which."""
    kind, sep, rest = value.partition(":")
    prefix = kind.upper() if sep else ""
    if prefix in ("DNS", "IP", "URI") and rest:
        value = rest
    else:
        prefix = ""
    if not value or any(c.isspace() for c in value):
        raise InvalidArgument(f"subject alternative name {value!r} is empty or has spaces")
    if prefix == "IP" or not prefix:
        try:
            return x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            if prefix == "IP":
                raise InvalidArgument(f"{value!r} is not an IP address") from None
    if prefix == "URI" or (not prefix and "://" in value):
        return x509.UniformResourceIdentifier(value)
    return x509.DNSName(value)


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=days)
    not_before = min(now - CLOCK_SKEW, not_after - datetime.timedelta(days=1))
    return not_before, not_after


def _files(directory: str | os.PathLike[str], name: str, create: bool = True) -> CertFiles:
    base = Path(directory)
    if create:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
    return CertFiles(base / f"{name}.crt", base / f"{name}.key")


def _refuse_existing(files: CertFiles, force: bool) -> None:
    if force:
        return
    for path in (files.cert, files.key):
        if path.exists():
            raise AlreadyExists(f"{path} exists; use --force to replace it")


def _write(files: CertFiles, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    # The key first: a certificate without its key is useless, the reverse is harmless.
    _write_file(files.key, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), 0o600)
    _write_file(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with ``mode`` from the start (a key is never world-readable,
    not even for a moment)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)  # the umask may have taken bits away; give exactly ``mode``
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
