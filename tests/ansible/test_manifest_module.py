"""``provisioner.node.manifest`` and ``provisioner.node.info`` through real
``ansible-playbook`` runs of plays written per test: manifests from the controller
(``src``, looked up like the template module's and rendered there), inline
(``definition``) and on the node (``path``); bad options; a hostile template; and the
controller side of the wire (``delegate_to: localhost`` with a daemon's ``target`` over
mutual TLS). Private node per test (see :mod:`tests.ansible.harness`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner.daemon import certs
from provisioner.errors import LoadError
from provisioner.manifest.template import render
from tests.ansible.harness import Play, play
from tests.daemon.test_server import running_daemon, short_dir

__all__ = ["play"]
pytestmark = pytest.mark.kernel

CELL = {"apiVersion": "provisioner/v1", "kind": "Cell", "metadata": {"name": "inline"},
        "spec": {"cpu": {"weight": 150}}}


def manifest(**args: Any) -> dict[str, Any]:
    return {"provisioner.node.manifest": args}


def test_src_relative_to_the_playbook_definition_path_and_info(play: Play) -> None:
    (play.tmp / "templates").mkdir()
    (play.tmp / "templates" / "web.yaml").write_text(
        "apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: {{ cell_name }}}\n"
        "spec: {cpu: {weight: 200}}\n")
    on_node = play.tmp / "on-node.yaml"
    on_node.write_text("apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: local}\n"
                       "spec: {}\n")
    tasks = [
        {"name": "src: templates/web.yaml next to the playbook", **manifest(src="web.yaml"),
         "vars": {"cell_name": "from-play"}},
        {"name": "inline", **manifest(definition=[CELL], manifest_set="inline")},
        {"name": "a YAML string", **manifest(definition="kind: Cell\n", manifest_set="s"),
         "ignore_errors": True},
        {"name": "on the node", **manifest(path=[str(on_node)])},
        {"name": "not on the node", **manifest(path=[str(play.tmp / "nowhere")]),
         "ignore_errors": True},
        {"name": "read in check mode", "provisioner.node.info": {}, "check_mode": True},
    ]
    first = play.tasks(tasks)
    assert (first.code, first.changed, first.failed, first.ignored) == (0, 3, 0, 2), first.out
    src, inline, string, path, missing, info = first.results
    assert src["manifest_set"] == "web" and src["plan"][0]["name"] == "from-play"
    assert inline["manifest_set"] == "inline" and inline["summary"]["created"] == 1
    assert "definition:1:1: missing required field 'apiVersion'" in string["msg"]
    assert path["manifest_set"] == "on-node"
    assert f"{play.tmp / 'nowhere'}: no such file or directory on the managed node" in (
        missing["msg"])
    assert info["changed"] is False
    node = info["node"]
    assert (node["mode"], node["state_dir"], node["cgroup_root"]) == (
        "local", play.state_dir, play.root)
    assert node["lock"] == {"state": "free", "holder": None} and node["node_id"]
    assert node["cgroup_version"] in (1, 2) and node["generation"] > 0
    assert sorted(c["name"] for c in info["resources"]["cells"]) == [
        "from-play", "inline", "local"]
    assert info["resources"]["executables"] == [] and set(info["resources"]) == {
        "cells", "executables", "pods", "drivers", "persistent_executables"}
    before = play.status()
    again = play.tasks(tasks[:2] + tasks[3:4])
    assert (again.code, again.changed, again.failed) == (0, 0, 0), again.out
    assert play.status() == before


def test_bad_options_are_refused_clearly_and_change_nothing(play: Play) -> None:
    ignore = {"ignore_errors": True}
    (play.tmp / "files").mkdir()
    (play.tmp / "files" / "ok.yaml").write_text(
        "apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: ok}\nspec: {}\n")
    run = play.tasks([
        {**manifest(src="ok.yaml", path=["/x.yaml"]), **ignore},
        {**manifest(definition=[CELL]), **ignore},
        {**manifest(src="missing.yaml"), **ignore},
        {**manifest(), **ignore},
        {**manifest(src="ok.yaml", bogus=1), **ignore},
        {**manifest(src="ok.yaml", parallelism=-1), **ignore},
        {**manifest(src="ok.yaml", tls_cert="/c.pem"), **ignore},
        {"provisioner.node.resource": {"kind": "Nope", "name": "x"}, **ignore},
    ])
    assert (run.code, run.failed, run.changed, run.ignored) == (0, 0, 0, 8), run.out
    messages = [result["msg"] for result in run.results]
    expected = [
        "src and path are mutually exclusive",
        "missing parameter(s) required by 'definition': manifest_set",
        "src 'missing.yaml': no such file or directory on the controller",
        "state=present needs one of src (on the controller), path (on the managed node) "
        "or definition",
        "Unsupported parameters for (provisioner.node.manifest) module: bogus",
        "parallelism must be 0 (the default) or more",
        "parameters are required together: tls_cert, tls_key",
        "value of kind must be one of: Cell, Executable, Pod, Driver, PersistentExecutable",
    ]
    assert len(messages) == len(expected), messages
    for message, wanted in zip(messages, expected, strict=True):
        assert wanted in message, (wanted, message)
    assert play.status() == {} and play.cell_dirs() == []


def sandboxed() -> bool:
    """Whether the provisioner's renderer refuses what a sandbox refuses."""
    try:
        render("probe", "{{ self.__init__.__globals__ }}", {})
    except LoadError:
        return True
    return False


@pytest.mark.skipif(not sandboxed(), reason="needs the sandboxed renderer of "
                    "provisioner.manifest.template (ImmutableSandboxedEnvironment)")
def test_a_hostile_template_in_src_is_refused_with_its_line(play: Play) -> None:
    marker = play.tmp / "pwned"
    hostile = play.tmp / "hostile.yaml"
    hostile.write_text(
        "apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: evil}\nspec:\n"
        "  cpu: {weight: "
        f"{{{{ self.__init__.__globals__.__builtins__.open('{marker}', 'w').write('x') }}}}"
        "}\n")
    run = play.tasks([manifest(src=str(hostile))])
    assert run.failed == 1, run.out
    [result] = run.results
    assert result["msg"].startswith("invalid manifests (1 error(s)) in src"), result["msg"]
    assert f"{hostile}:5: template error:" in result["msg"], result["msg"]
    assert not marker.exists()
    assert play.status() == {} and play.cell_dirs() == []


def test_from_the_controller_to_a_daemon_over_mutual_tls(play: Play, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    certs.init_ca(pki, "fleet CA")
    certs.issue(pki, "server", "server")
    certs.issue(pki, "controller", "client")
    policy = tmp_path / "policy.yaml"
    policy.write_text("identities:\n  controller: [admin]\n")
    (play.tmp / "templates").mkdir()
    (play.tmp / "templates" / "web.yaml").write_text(
        "apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: web}\n"
        "spec: {cpu: {weight: 200}}\n")
    with short_dir() as tmp, running_daemon(
            tmp, tcp="127.0.0.1:0", tls_cert=str(pki / "server.crt"),
            tls_key=str(pki / "server.key"), client_ca=str(pki / "ca.crt"),
            policy_file=str(policy)) as daemon:
        port = daemon.tcp_port
        play.node = {"target": f"127.0.0.1:{port}", "tls_ca": str(pki / "ca.crt"),
                     "tls_cert": str(pki / "controller.crt"),
                     "tls_key": str(pki / "controller.key")}
        # node1 is never contacted: every task runs on the controller (port 1 would
        # refuse a connection at once if one were tried).
        inventory = play.tmp / "inventory.ini"
        inventory.write_text("node1 ansible_host=127.0.0.1 ansible_port=1 "
                             "ansible_connection=ssh\n")
        tasks = [{**manifest(src="web.yaml"), "delegate_to": "localhost"},
                 {"provisioner.node.info": {}, "delegate_to": "localhost"}]
        first = play.tasks(tasks, inventory=str(inventory), host="node1")
        assert (first.code, first.changed, first.failed) == (0, 1, 0), first.out
        applied, info = first.results
        assert applied["summary"]["created"] == 1
        assert info["node"]["mode"] == "daemon" and info["node"]["target"] == (
            f"127.0.0.1:{port}")
        assert [c["name"] for c in info["resources"]["cells"]] == ["web"]
        assert daemon.ctx.layer.cgroups.cell_dirs("web")
        second = play.tasks(tasks, "--check", "--diff", inventory=str(inventory),
                            host="node1")
        assert (second.code, second.changed, second.failed) == (0, 0, 0), second.out
        play.node["tls_cert"] = str(pki / "server.crt")  # not a client certificate
        play.node["tls_key"] = str(pki / "server.key")
        refused = play.tasks(tasks[:1], inventory=str(inventory), host="node1")
        assert refused.failed == 1, refused.out
