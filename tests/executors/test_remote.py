"""The remote executor and the CLI's --target against a real in-process daemon: the
same plan / apply / status / destroy as on the local executor, saved plans, errors
mapped back to the provisioner's, unix and TCP (insecure and mutual TLS) targets."""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioner._proto.atomix.runtime.v1 import registry_pb2 as rpb
from provisioner._proto.atomix.runtime.v1 import registry_pb2_grpc as rgrpc
from provisioner.cli import main, node_commands
from provisioner.defaults import DEFAULT_STATE_DIR
from provisioner.errors import InvalidArgument, NotFound, StalePlan, Unavailable, UsageError
from provisioner.events import EventType
from provisioner.executors.remote import RemoteExecutor, error_from_rpc
from provisioner.model import CellLimits, CellSpec, DesiredState
from provisioner.node.runtime.layer import NodeLayer
from tests.conftest import make_config, tear_down
from tests.daemon.node_harness import Daemon, rpc_error, running_daemon

pytestmark = pytest.mark.kernel
EXAMPLES = Path(__file__).parents[2] / "examples" / "node"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path / "daemon") as running:
        yield running


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def normal(text: str) -> list[str]:
    """Output lines with timings and the ``[k/n]`` finishing order taken out, sorted
    (parallel steps finish in any order)."""
    return sorted(re.sub(r"^\[\d+/(\d+)\]", r"[?/\1]", re.sub(r"\d+\.\d\ds", "T", line))
                  for line in text.splitlines())


def test_cli_against_a_daemon_behaves_as_locally(daemon: Daemon, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "node"
    shutil.copytree(EXAMPLES, src)
    config = make_config(tmp_path / "local")
    local = ["--state-dir", config.state_dir, "--cgroup-root", config.cgroup_root]
    remote = ["--target", daemon.target]
    try:
        outputs = {}
        for name, where in (("local", local), ("remote", remote)):
            plan = cli(capsys, "plan", "--detailed-exitcode", str(src), *where)
            applied = cli(capsys, "apply", str(src), *where)
            again = cli(capsys, "apply", str(src), *where)
            status = cli(capsys, "status", "--json", *where)
            outputs[name] = (plan, applied, again, status)
        (plan, applied, again, status), theirs = outputs["remote"], outputs["local"]
        assert plan == theirs[0] and plan[0] == 2  # the very same plan text
        assert applied[0] == 0 and "Apply complete: 6 created" in applied[1]
        assert normal(applied[1]) == normal(theirs[1][1])
        assert again[0] == 0 and "No changes: 6 resources" in again[1]
        rows = json.loads(status[1])["resources"]
        local_rows = json.loads(theirs[3][1])["resources"]
        assert [(r["kind"], r["name"], r["state"]) for r in rows] == [
            (r["kind"], r["name"], r["state"]) for r in local_rows]
        assert {r["kind"] for r in rows} == {"Cell", "Executable"}
        assert all(r["state"] == "running" for r in rows if r["kind"] == "Executable")
        for where in (local, remote):
            code, out, _ = cli(capsys, "destroy", str(src), *where)
            assert code == 0 and "6 deleted" in out
            assert json.loads(cli(capsys, "status", "--json", *where)[1])["resources"] == []
    finally:
        tear_down(NodeLayer(config))


def test_saved_plans_json_events_and_stale_plans_through_a_daemon(
        daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "one.yaml"
    manifest.write_text("apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: one}\n")
    saved = tmp_path / "plan.json"
    code, out, _ = cli(capsys, "plan", "--out", str(saved), str(manifest),
                       "--target", daemon.target)
    node_id = json.loads(saved.read_text())["node_id"]
    assert code == 0 and node_id == daemon.ctx.executor.node_id and node_id
    code, out, _ = cli(capsys, "apply", "--json", str(saved), "--target", daemon.target)
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and events[-1]["type"] == "summary"
    assert events[-1]["summary"]["created"] == 1
    code, _, err = cli(capsys, "apply", str(saved), "--target", daemon.target)
    assert code == 1 and "the plan was made at node generation 0" in err
    code, _, err = cli(capsys, "apply", str(tmp_path / "none.yaml"), "--target", daemon.target)
    assert code == 2 and "no such file" in err  # checked here, before the daemon is asked
    # Another node refuses the plan, although its generation would match.
    with running_daemon(tmp_path / "other") as other:
        fresh = tmp_path / "fresh.json"
        assert cli(capsys, "plan", "--out", str(fresh), str(manifest),
                   "--target", daemon.target)[0] == 0
        code, _, err = cli(capsys, "apply", str(fresh), "--target", other.target)
        assert code == 1 and "was planned for another node" in err and node_id in err
        assert json.loads(cli(capsys, "status", "--json", "--target", other.target)[1]
                          )["resources"] == []


def test_remote_executor_api_and_error_mapping(daemon: Daemon) -> None:
    with RemoteExecutor(daemon.target) as remote:
        assert remote.node_id == daemon.ctx.executor.node_id != "" and remote.ping(2)
        desired = DesiredState((CellSpec("a", CellLimits(cpu_weight=100)),), "s")
        plan = remote.plan(desired)
        assert plan.generation == 0 and [s.describe() for s in plan.steps] == [
            "allocate Cell/a: created"]
        events = list(remote.apply(plan))
        assert events[-1].type is EventType.SUMMARY and events[-1].summary is not None
        assert events[1].step is plan.steps[0]
        assert remote.observe() == daemon.ctx.executor.observe()
        with pytest.raises(StalePlan, match="plan again"):
            list(remote.apply(plan))
        with pytest.raises(InvalidArgument, match=r"spec\.cpu\.weight"):
            remote.plan(DesiredState((CellSpec("b", CellLimits(cpu_weight=0)),), "s"))
        destroy = remote.plan(DesiredState((), "s"), destroy=True)
        assert list(remote.apply(destroy))[-1].summary.deleted == 1  # type: ignore[union-attr]
    pull = rgrpc.RegistryStub(daemon.channel).PullDriver  # type: ignore[no-untyped-call]
    error = rpc_error(lambda: list(pull(rpb.PullDriverRequest(header=rpb.PluginHeader(
        driver=rpb.DriverInfo(name="x", version="1"))))))
    assert isinstance(error_from_rpc(error, daemon.target), NotFound)


def test_unreachable_and_misconfigured_targets(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="there is no daemon socket"):
        RemoteExecutor(f"unix://{tmp_path}/none.sock")
    dead = tmp_path / "dead.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(dead))  # bound, never listening: connections are refused
    try:
        with RemoteExecutor(f"unix://{dead}", timeout_s=3) as remote:
            assert not remote.ping(1)
            with pytest.raises(Unavailable, match=f"cannot reach the daemon at unix://{dead}"):
                remote.observe()
    finally:
        listener.close()
    with pytest.raises(UsageError, match="needs mutual TLS"):
        RemoteExecutor("127.0.0.1:1")
    with pytest.raises(UsageError, match="go together"):
        RemoteExecutor("127.0.0.1:1", tls_cert="c.pem")


def _cert(name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
          ca: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer[0].subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def _write(folder: Path, name: str, pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
           ) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    cert.write_bytes(pair[0].public_bytes(serialization.Encoding.PEM))
    key.write_bytes(pair[1].private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


def test_tcp_targets_with_mutual_tls_and_insecure(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ca = _cert("test CA", None, ca=True)
    ca_pem, _ = _write(tmp_path, "ca", ca)
    server_pem, server_key = _write(tmp_path, "server", _cert("localhost", ca))
    client_pem, client_key = _write(tmp_path, "client", _cert("tester", ca))
    tls = grpc.ssl_server_credentials([(server_key.read_bytes(), server_pem.read_bytes())],
                                      root_certificates=ca_pem.read_bytes(),
                                      require_client_auth=True)
    with running_daemon(tmp_path / "tls", tcp=True, tls=tls) as daemon:
        target = f"127.0.0.1:{daemon.tcp_port}"
        flags = ["--tls-ca", str(ca_pem), "--tls-cert", str(client_pem),
                 "--tls-key", str(client_key)]
        code, out, _ = cli(capsys, "status", "--target", target, *flags)
        assert code == 0 and "0 resources" in out
        code, _, err = cli(capsys, "status", "--target", target, "--tls-ca", str(ca_pem))
        assert code == 1 and f"cannot reach the daemon at {target}" in err  # no client cert
    with running_daemon(tmp_path / "plain", tcp=True) as daemon:
        code, out, _ = cli(capsys, "status", "--target", f"127.0.0.1:{daemon.tcp_port}",
                           "--insecure")
        assert code == 0 and "0 resources" in out


def test_the_default_socket_is_used_only_when_it_answers(
        daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = argparse.Namespace(target=None, tls_ca=None, tls_cert=None, tls_key=None,
                              insecure=False, state_dir=DEFAULT_STATE_DIR,
                              cgroup_root=node_commands.DEFAULT_CGROUP_ROOT)
    monkeypatch.setattr(node_commands, "DEFAULT_SOCKET", daemon.socket)
    found = node_commands._remote(args)
    assert isinstance(found, RemoteExecutor) and found.target == daemon.target
    found.close()
    # An explicit state directory means "this machine's state there", never a daemon.
    assert node_commands._remote(argparse.Namespace(**{**vars(args),
                                                       "state_dir": str(tmp_path)})) is None
    dead = tmp_path / "dead.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(dead))
    try:
        monkeypatch.setattr(node_commands, "DEFAULT_SOCKET", str(dead))
        assert node_commands._remote(args) is None
    finally:
        listener.close()


def test_logs_through_a_daemon(daemon: Daemon, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "talk.yaml"
    manifest.write_text("apiVersion: provisioner/v1\nkind: Executable\nmetadata: {name: talk}\n"
                        "spec: {command: 'echo one; echo two >&2; echo three; sleep 0.3; "
                        "echo later; sleep 1000'}\n")
    remote = ["--target", daemon.target]
    assert cli(capsys, "apply", str(manifest), *remote)[0] == 0
    with RemoteExecutor(daemon.target) as executor:
        follow = executor.logs("talk", follow=True)
        texts = [next(follow).text for _ in range(4)]  # the backlog, then a live line
        follow.close()  # cancels the stream
    # stdout and stderr are separate pipes: their interleaving is not fixed
    assert sorted(texts[:3]) == ["one", "three", "two"] and texts[3] == "later"
    code, out, _ = cli(capsys, "logs", "talk", *remote)
    assert code == 0 and sorted(out.splitlines()) == ["later", "one", "three", "two"]
    local = cli(capsys, "logs", "talk", "--state-dir", daemon.ctx.config.state_dir)
    assert local[1] == out  # the same as reading the daemon's files here
    assert cli(capsys, "logs", "talk", "--tail", "1", "--channel", "stdout", *remote)[1] == \
        "later\n"
    stamped = cli(capsys, "logs", "talk", "--timestamps", "--channel", "stderr", *remote)[1]
    assert stamped.endswith(" stderr two\n")
    code, _, err = cli(capsys, "logs", "nobody", *remote)
    assert code == 1 and "no logs for executable 'nobody'" in err
    code, _, err = cli(capsys, "logs", "Bad_Name", *remote)
    assert code == 1 and "not a DNS label" in err
