"""Unit tests, no kernel: the pure parts of ``provisioner.ansible_resource`` (set names,
the document a task declares, validation before and on the node)."""

from __future__ import annotations

import pytest

from provisioner.ansible_resource import (
    ResourceManager,
    ResourceOptions,
    issue_text,
    resource_set_name,
)
from provisioner.ansible_support import ModuleFailure
from provisioner.manifest.issues import Issue
from provisioner.model import CellSpec, DesiredState, ExecutableSpec, Kind, Ref
from provisioner.plan.compiler import compile_plan
from provisioner.state import NodeState, ObservedResource

#: A state directory that cannot be created: reaching the node would fail differently.
NOWHERE = "/proc/no-such-state"


def test_each_resource_has_its_own_set() -> None:
    assert resource_set_name("Cell", "web") == "cell.web"
    assert resource_set_name("Cell", "web/cache") == "cell.web.cache"
    assert resource_set_name("Executable", "api") == "executable.api"
    assert resource_set_name("PersistentExecutable", "job") == "persistentexecutable.job"
    assert resource_set_name("Driver", "raft.v2") == "driver.raft.v2"
    assert ResourceOptions(kind="Pod", name="shop").set_name() == "pod.shop"


def test_options_from_module_params_and_the_document_they_declare() -> None:
    options = ResourceOptions.from_params({
        "kind": "Executable", "name": "api", "spec": {"command": "true", "cell": "web"},
        "labels": None, "state": "present", "state_dir": "/tmp/s", "tls_ca": None,
        "_ansible_check_mode": True})
    assert (options.ref, options.labels, options.state_dir) == (
        Ref(Kind.EXECUTABLE, "api"), {}, "/tmp/s")
    assert options.document() == {
        "apiVersion": "provisioner/v1", "kind": "Executable", "metadata": {"name": "api"},
        "spec": {"command": "true", "cell": "web"}}
    labelled = ResourceOptions(kind="Cell", name="web", labels={"team": "shop"})
    assert labelled.document()["metadata"] == {"name": "web", "labels": {"team": "shop"}}
    assert labelled.document()["spec"] == {}


@pytest.mark.parametrize("check_mode", [True, False])
def test_an_invalid_spec_fails_with_every_path_before_touching_a_node(check_mode: bool) -> None:
    options = ResourceOptions(kind="Cell", name="web", state_dir=NOWHERE,
                              spec={"cpu": {"weight": 0}, "isolateProcess": "yes"})
    with pytest.raises(ModuleFailure) as failed:
        ResourceManager(options, check_mode=check_mode).run()
    errors = failed.value.fields["errors"]
    assert failed.value.fields["changed"] is False and len(errors) == 2
    assert "spec.cpu.weight: 0 is less than the minimum of 1" in errors
    assert any(error.startswith("spec.isolateProcess: ") for error in errors)
    assert failed.value.msg.startswith("invalid Cell/web (2 error(s)), nothing was changed:")


@pytest.mark.parametrize(("kind", "name", "message"), [
    ("Executable", "a/b", "is not a DNS label"),
    ("Cell", "web//x", "has an empty part"),
    ("Driver", "../x", "is not allowed"),
    ("Nope", "x", "kind must be one of Cell, Executable, Pod, Driver, PersistentExecutable"),
])
def test_a_bad_name_or_kind_fails_before_touching_a_node(kind: str, name: str,
                                                         message: str) -> None:
    options = ResourceOptions(kind=kind, name=name, state="absent", state_dir=NOWHERE)
    with pytest.raises(ModuleFailure, match=message):
        ResourceManager(options).run()
    # present: the schema says it, with the path
    options = ResourceOptions(kind=kind, name=name, spec={"command": "true", "version": "1"},
                              state_dir=NOWHERE)
    with pytest.raises(ModuleFailure) as failed:
        ResourceManager(options).run()
    assert failed.value.fields["changed"] is False
    assert any(error.startswith(("metadata.name: ", "kind: "))
               for error in failed.value.fields["errors"]), failed.value.fields


def test_references_are_checked_against_the_node() -> None:
    api = ResourceOptions(kind="Executable", name="api",
                          spec={"command": "sleep 1", "cell": "web"})
    manager = ResourceManager(api)
    desired = DesiredState((), api.set_name())
    assert manager._needs_node(desired, destroy=True)
    web = CellSpec("web")
    node = NodeState(generation=4, resources=(ObservedResource(web, "cell.web"),))
    checked = manager._on_node(desired, False, node)
    assert checked.manifest_set == "executable.api"
    assert checked.resources == (ExecutableSpec("api", "sleep 1", cell="web"),)
    assert manager._needs_node(checked, destroy=False)  # it has a reference to check
    assert not ResourceManager(ResourceOptions(kind="Cell", name="web"))._needs_node(
        DesiredState((web,), "cell.web"), destroy=False)
    plan = compile_plan(checked, node)  # the other set's cell is left alone
    assert [str(step.ref) for step in plan.steps] == ["Executable/api"]
    with pytest.raises(ModuleFailure) as failed:
        manager._on_node(desired, False, NodeState(generation=4))
    assert failed.value.fields["errors"] == [
        "spec.cell: cell 'web' is not declared by any document and does not exist on the node"]


def test_issue_text_drops_the_place_in_a_document_nobody_wrote() -> None:
    assert issue_text(Issue("task:Cell/web[0]", 3, 5, "spec.cpu", "bad")) == "spec.cpu: bad"
    assert issue_text(Issue("task:Cell/web[0]", 0, 0, "", "not plain data")) == "not plain data"
