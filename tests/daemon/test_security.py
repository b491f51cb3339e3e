"""Mutual TLS and authorization, through real TLS channels to an in-process daemon."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2

from provisioner._proto.atomix.runtime.v1 import registry_pb2
from provisioner._proto.aurae.discovery.v0 import discovery_pb2
from provisioner._proto.aurae.runtime.v0 import runtime_pb2
from provisioner._proto.schedule import schedule_pb2
from provisioner.cli import main
from provisioner.daemon import certs
from provisioner.daemon.authz import Caller, Policy, load_policy, parse_policy
from provisioner.daemon.context import DaemonConfig
from provisioner.daemon.server import Daemon, check_config
from provisioner.errors import AlreadyExists, InvalidArgument, UnsafeName
from tests.daemon.test_server import check, list_services, running_daemon, short_dir

PULL = "/atomix.runtime.v1.Registry/PullDriver"
PUSH = "/atomix.runtime.v1.Registry/PushDriver"
ALLOCATE = "/aurae.runtime.v0.CellService/Allocate"
DISCOVER = "/aurae.discovery.v0.DiscoveryService/Discover"
SHOW_ENABLED = "/schedule.Schedule/ShowEnabled"
UNKNOWN = "/nope.Nope/Nothing"
DENIED = grpc.StatusCode.PERMISSION_DENIED

POLICY = """\
identities:
  op-bot: [operator]
  spiffe://lab/root-bot: [admin]
  ops.lab: [operator]
  banned: []
"""


@dataclass
class Lab:
    pki: Path
    other: Path
    daemon: Daemon

    def channel(self, client: str | None, ca_dir: Path | None = None) -> grpc.Channel:
        ca = (self.pki / "ca.crt").read_bytes()
        if client is None:
            credentials = grpc.ssl_channel_credentials(ca)
        else:
            where = ca_dir or self.pki
            credentials = grpc.ssl_channel_credentials(
                ca, (where / f"{client}.key").read_bytes(), (where / f"{client}.crt").read_bytes())
        return grpc.secure_channel(f"127.0.0.1:{self.daemon.tcp_port}", credentials)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("lab")
    pki, other = base / "pki", base / "other-ca"
    certs.init_ca(pki, "lab CA")
    certs.issue(pki, "server", "server")
    certs.issue(pki, "reader-bot", "client")
    certs.issue(pki, "op-bot", "client")
    certs.issue(pki, "adm", "client", sans=["URI:spiffe://lab/root-bot"])
    certs.issue(pki, "dnsy", "client", sans=["DNS:ops.lab"])
    certs.issue(pki, "banned", "client")
    certs.issue(pki, "claimer", "client", sans=["URI:unix:local"])
    certs.issue(pki, "old", "client", days=-1)
    certs.init_ca(other, "another CA")
    certs.issue(other, "op-bot", "client")  # the right name from the wrong CA
    policy = base / "policy.yaml"
    policy.write_text(POLICY)
    with short_dir() as tmp, running_daemon(
            tmp, tcp="127.0.0.1:0", tls_cert=str(pki / "server.crt"),
            tls_key=str(pki / "server.key"), client_ca=str(pki / "ca.crt"),
            policy_file=str(policy)) as daemon:
        yield Lab(pki, other, daemon)


#: A harmless request for each method, and whether it streams requests / responses.
REQUESTS: dict[str, tuple[Any, bool, bool]] = {
    PULL: (registry_pb2.PullDriverRequest(header=registry_pb2.PluginHeader(
        driver=registry_pb2.DriverInfo(name="nope", version="1"))), False, True),
    PUSH: (registry_pb2.PushDriverRequest(), True, False),
    ALLOCATE: (runtime_pb2.CellServiceAllocateRequest(), False, False),
    DISCOVER: (discovery_pb2.DiscoverRequest(), False, False),
    SHOW_ENABLED: (schedule_pb2.ShowEnabledRequest(), False, False),
    UNKNOWN: (b"", False, False),
}


def raw_call(channel: grpc.Channel, method: str, request: Any = b"",
             streams: tuple[bool, bool] = (False, False)) -> None:
    """Call any method through the generic channel API (no stub needed): requests are
    serialized here, responses are left as bytes."""
    def serialize(message: Any) -> bytes:
        return message if isinstance(message, bytes) else bytes(message.SerializeToString())

    if streams == (False, False):
        channel.unary_unary(method, serialize, None)(request, timeout=5)
    elif streams == (False, True):
        list(channel.unary_stream(method, serialize, None)(request, timeout=5))
    else:
        channel.stream_unary(method, serialize, None)(iter([request]), timeout=5)


def call(channel: grpc.Channel, method: str) -> grpc.StatusCode:
    """Call ``method`` with a harmless request; the status code it ends with."""
    request, client_streams, server_streams = REQUESTS[method]
    try:
        raw_call(channel, method, request, (client_streams, server_streams))
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        if code is DENIED:
            assert method in str(exc.details())
        return code
    return grpc.StatusCode.OK


@pytest.mark.parametrize(("client", "wrong_ca"), [(None, False), ("op-bot", True),
                                                   ("old", False)],
                         ids=["no-certificate", "another-ca", "expired"])
def test_clients_without_a_valid_certificate_are_refused(
        lab: Lab, client: str | None, wrong_ca: bool) -> None:
    with lab.channel(client, lab.other if wrong_ca else None) as channel, \
            pytest.raises(grpc.RpcError) as err:
        check(channel)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def test_a_reader_may_look_but_not_change(lab: Lab) -> None:
    with lab.channel("reader-bot") as channel:
        assert check(channel) == health_pb2.HealthCheckResponse.SERVING
        assert "aurae.discovery.v0.DiscoveryService" in list_services(channel)
        assert call(channel, DISCOVER) is grpc.StatusCode.OK
        for method in (ALLOCATE, SHOW_ENABLED, PUSH, UNKNOWN):
            assert call(channel, method) is DENIED, method
        with pytest.raises(grpc.RpcError) as err:
            raw_call(channel, PULL, streams=(False, True))
    assert err.value.code() is DENIED
    assert err.value.details() == f"client 'reader-bot' (role reader) may not call {PULL}"


def test_an_operator_may_change_cells_but_not_drivers_or_schedules(lab: Lab) -> None:
    with lab.channel("op-bot") as channel:
        assert call(channel, DISCOVER) is grpc.StatusCode.OK
        # Past authorization: the servicer itself rejects the empty request.
        assert call(channel, ALLOCATE) is grpc.StatusCode.INVALID_ARGUMENT
        for method in (PULL, PUSH, SHOW_ENABLED):
            assert call(channel, method) is DENIED, method


def test_an_admin_by_uri_san_may_call_everything(lab: Lab) -> None:
    with lab.channel("adm") as channel:
        assert call(channel, PULL) is grpc.StatusCode.NOT_FOUND  # no such driver
        assert call(channel, SHOW_ENABLED) is grpc.StatusCode.OK
        assert call(channel, ALLOCATE) is grpc.StatusCode.INVALID_ARGUMENT
        assert call(channel, UNKNOWN) is grpc.StatusCode.UNIMPLEMENTED


def test_identities_match_by_dns_san_and_an_empty_role_list_denies(lab: Lab) -> None:
    with lab.channel("dnsy") as channel:
        assert call(channel, ALLOCATE) is grpc.StatusCode.INVALID_ARGUMENT
        assert call(channel, PULL) is DENIED
    with lab.channel("banned") as channel, pytest.raises(grpc.RpcError) as err:
        check(channel)
    assert err.value.details() == \
        "client 'banned' (no role) may not call /grpc.health.v1.Health/Check"


def test_a_certificate_cannot_claim_the_unix_socket_identity(lab: Lab) -> None:
    with lab.channel("claimer") as channel:
        assert call(channel, DISCOVER) is grpc.StatusCode.OK  # "*": reader
        assert call(channel, PULL) is DENIED


def test_the_unix_socket_caller_is_admin(lab: Lab) -> None:
    with grpc.insecure_channel(f"unix://{lab.daemon.ctx.config.socket}") as channel:
        assert call(channel, PULL) is grpc.StatusCode.NOT_FOUND
        assert call(channel, SHOW_ENABLED) is grpc.StatusCode.OK


def test_insecure_tcp_warns_and_its_callers_are_anonymous_readers(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "provisioner")
    with short_dir() as tmp, running_daemon(tmp, socket=None, tcp="127.0.0.1:0",
                                            insecure_tcp=True) as daemon, \
            grpc.insecure_channel(f"127.0.0.1:{daemon.tcp_port}") as channel:
        assert call(channel, DISCOVER) is grpc.StatusCode.OK
        with pytest.raises(grpc.RpcError) as err:
            raw_call(channel, PULL, streams=(False, True))
    assert err.value.details() == f"client 'anonymous' (role reader) may not call {PULL}"
    assert any("WITHOUT TLS" in r.getMessage() for r in caplog.records)


def test_a_server_key_that_does_not_match_its_certificate_is_refused(lab: Lab) -> None:
    with short_dir() as tmp, pytest.raises(InvalidArgument, match="does not belong"), \
            running_daemon(tmp, tcp="127.0.0.1:0", tls_cert=str(lab.pki / "server.crt"),
                           tls_key=str(lab.pki / "op-bot.key"),
                           client_ca=str(lab.pki / "ca.crt")):
        pass


# -- the policy file ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "problem"), [
    ("identities: [a, b]", "'identities' must be a mapping"),
    ("identities: {ci-bot: [superuser]}", "unknown role(s) superuser"),
    ("roles: {r: ['/a.B/*/C']}", "'*' only at the end"),
    ("roles: {r: [no-slash]}", "must be a full method name"),
    ("identities: {ci-bot: reader}", "must be a list of non-empty strings"),
    ("identity: {}", "unknown key(s) identity"),
    ("- a list", "the top level must be a mapping"),
    ("identities: {a: [reader]\n", "not valid YAML (line 2)"),
])
def test_an_invalid_policy_file_is_refused_naming_file_and_problem(
        tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(InvalidArgument) as err:
        check_config(DaemonConfig(policy_file=str(path)))
    assert str(err.value).startswith(f"policy file {path}: ")
    assert problem in str(err.value)


def test_the_daemon_command_refuses_to_start_on_an_invalid_policy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("identities: {ci-bot: [nobody]}")
    assert main(["daemon", "--socket", str(tmp_path / "s"), "--state-dir",
                 str(tmp_path / "state"), "--policy", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"policy file {path}: identity 'ci-bot': unknown role(s) nobody" in err
    assert not (tmp_path / "state").exists()  # refused before touching anything


def test_the_file_is_merged_over_the_default_policy() -> None:
    policy = parse_policy({"identities": {"ci": ["auditor"]},
                           "roles": {"auditor": ["/provisioner.v1.NodeService/GetState"]}},
                          "p.yaml")
    unix, stranger, ci = Caller(("unix:local",), ""), Caller(("x",), ""), Caller(("ci",), "")
    assert policy.roles_of(unix) == ("admin",)
    assert policy.roles_of(stranger) == ("reader",)
    assert policy.roles_of(ci) == ("auditor",)
    assert policy.allows(("auditor",), "/provisioner.v1.NodeService/GetState")
    assert not policy.allows(("auditor",), "/provisioner.v1.NodeService/Plan")
    assert policy.allows(("reader",), "/provisioner.v1.NodeService/Plan")
    assert not policy.allows(("reader",), "/provisioner.v1.NodeService/Apply")
    assert policy.allows(("operator",), "/provisioner.v1.NodeService/Apply")
    assert load_policy(None) == Policy()


# -- certificates ------------------------------------------------------------------------

def test_certs_commands_make_a_ca_and_certificates(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki = tmp_path / "pki"
    assert main(["certs", "init", "--dir", str(pki), "--cn", "Lab"]) == 0
    assert main(["certs", "issue", "node1", "--server", "--san", "node1.lab",
                 "--san", "10.0.0.7", "--dir", str(pki)]) == 0
    assert main(["certs", "issue", "ci-bot", "--client", "--dir", str(pki), "--days", "30"]) == 0
    for name in ("ca", "node1", "ci-bot"):
        assert stat.S_IMODE((pki / f"{name}.key").stat().st_mode) == 0o600
    server = x509.load_pem_x509_certificate((pki / "node1.crt").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(v) for v in sans.get_values_for_type(x509.IPAddress)} == \
        {"127.0.0.1", "::1", "10.0.0.7"}
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "node1.lab"]
    client = x509.load_pem_x509_certificate((pki / "ci-bot.crt").read_bytes())
    cn = client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert (cn, list(usage)) == ("ci-bot", [ExtendedKeyUsageOID.CLIENT_AUTH])
    capsys.readouterr()
    assert main(["certs", "issue", "ci-bot", "--client", "--dir", str(pki)]) == 1
    assert "ci-bot.crt exists; use --force" in capsys.readouterr().err
    assert main(["certs", "issue", "ci-bot", "--client", "--dir", str(pki), "--force"]) == 0


def test_certificate_names_cannot_escape_the_directory(tmp_path: Path) -> None:
    certs.init_ca(tmp_path)
    with pytest.raises(UnsafeName):
        certs.issue(tmp_path, "../evil", "client")
    with pytest.raises(InvalidArgument, match="the CA's own file name"):
        certs.issue(tmp_path, "ca", "client", force=True)
    with pytest.raises(AlreadyExists):
        certs.init_ca(tmp_path)


@pytest.mark.parametrize(("argv", "message"), [
    (["daemon", "--tcp", "0.0.0.0:7443"], "--tcp needs mutual TLS: also give --tls-cert"),
    (["daemon", "--insecure-tcp"], "--insecure-tcp needs --tcp"),
    (["daemon", "--tls-cert", "a.crt"], "--tls-cert needs --tcp"),
    (["daemon", "--tcp", "x:1", "--insecure-tcp", "--client-ca", "c"], "exclude each other"),
    (["daemon", "--tcp", "nohost"], "expected HOST:PORT"),
    (["daemon", "--no-socket"], "nothing to listen on"),
    (["daemon", "--max-message-mb", "0"], "--max-message-mb must be"),
    (["certs", "issue", "x"], "one of the arguments --server --client is required"),
    (["certs", "init", "--days", "0"], "--days must be at least 1"),
])
def test_bad_daemon_and_certs_arguments_are_usage_errors(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 64
    assert message in capsys.readouterr().err
