"""Unit tests, no kernel: each module's documentation (as ``ansible-doc`` reads it, doc
fragments merged) against its argument_spec, its examples and return values (what
ansible-test's validate-modules checks, quicker: the full sanity run is ``./dev
sanity``), and the pure parts of ``provisioner.ansible_support`` and its neighbours:
options, diff texts, the folding of apply events into ``actions`` (objects and text)
and failures, validation failures. Plans come from the real compiler, events from the
real scheduler with a recording step."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from provisioner import records
from provisioner.ansible_diff import HIDDEN, HIDDEN_CHANGED, diff_text, resource_text, spec_fields
from provisioner.ansible_info import InfoOptions
from provisioner.ansible_resource import ResourceOptions
from provisioner.ansible_results import ApplyOutcome, planned_summary
from provisioner.ansible_support import (
    ManifestManager,
    ManifestOptions,
    ModuleFailure,
    NodeOptions,
)
from provisioner.defaults import DEFAULT_CGROUP_ROOT, DEFAULT_LOCK_TIMEOUT_S, DEFAULT_STATE_DIR
from provisioner.errors import NodeError
from provisioner.executors.scheduler import run_plan
from provisioner.model import (
    CellLimits,
    CellSpec,
    DesiredState,
    ExecutableSpec,
    Kind,
    Ref,
    RestartPolicy,
)
from provisioner.plan.compiler import compile_plan
from provisioner.plan.steps import Step
from provisioner.state import NodeState, ObservedResource, ProcessPhase, ProcessStatus

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "examples" / "node"
WEB = CellSpec("web", CellLimits(cpu_weight=200, cpu_max_us=500_000), labels=(("tier", "f"),))
API = ExecutableSpec("api", "serve --port 80", cell="web", env=(("TOKEN", "s3cret"),),
                     restart_policy=RestartPolicy.ALWAYS, stop_grace_s=5.0)


def test_options_from_module_params() -> None:
    options = ManifestOptions.from_params({
        "path": [str(EXAMPLES)], "manifest_set": None, "state": "present", "prune": True,
        "vars": None, "state_dir": "/tmp/s", "parallelism": 2, "_ansible_check_mode": True})
    assert options.path == (str(EXAMPLES),) and options.prune and options.parallelism == 2
    assert options.vars == {} and options.state_dir == "/tmp/s"
    assert options.set_name() == "node"  # derived like the CLI: the folder's name
    assert ManifestOptions(path=("x",), manifest_set="web").set_name() == "web"
    with pytest.raises(ModuleFailure, match="manifest_set is required with definition"):
        ManifestOptions(state="absent").set_name()
    sent = ManifestOptions.from_params({"_rendered_files": ["/c/a.yaml"],
                                        "_rendered_texts": ["kind: Cell"]})
    assert sent.texts == (("/c/a.yaml", "kind: Cell"),) and sent.set_name() == "a"
    with pytest.raises(ModuleFailure, match="different number"):
        ManifestOptions.from_params({"_rendered_files": ["a", "b"], "_rendered_texts": ["x"]})


def test_spec_fields_show_what_differs_from_defaults_and_hide_env_values() -> None:
    assert spec_fields(WEB) == [("cpu.weight", "200"), ("cpu.max", "500000"),
                                ("labels.tier", '"f"')]
    assert spec_fields(API) == [("command", '"serve --port 80"'), ("cell", '"web"'),
                                ("env.TOKEN", HIDDEN), ("restartPolicy", '"always"'),
                                ("stopGracePeriod", "5s")]
    assert spec_fields(ExecutableSpec("bare", "true")) == [("command", '"true"')]
    changed = ExecutableSpec("api", API.command, cell="web", env=(("TOKEN", "other"),))
    assert ("env.TOKEN", HIDDEN_CHANGED) in spec_fields(changed, previous=API)
    assert ("env.TOKEN", HIDDEN) in spec_fields(API, previous=API)
    assert all("s3cret" not in value for _, value in spec_fields(API))


def test_resource_text_notes_drift_on_the_before_side() -> None:
    ref = Ref(Kind.EXECUTABLE, "api")
    assert resource_text(ref, None) == ["Executable/api: absent"]
    died = ObservedResource(API, "set", process=ProcessStatus(ProcessPhase.EXITED, exit_code=3))
    lines = resource_text(ref, API, died)
    assert lines[0] == "Executable/api:" and lines[-1] == "  drift: process exited with status 3"
    missing = ObservedResource(WEB, "set", present=False, drift=("cgroup is missing",))
    assert resource_text(Ref(Kind.CELL, "web"), WEB, missing)[-2:] == [
        "  drift: missing on the node", "  drift: cgroup is missing"]


def node(*resources: ObservedResource, generation: int = 7) -> NodeState:
    return NodeState(generation=generation, resources=resources)


def test_diff_text_lists_only_what_the_plan_changes() -> None:
    running = ProcessStatus(ProcessPhase.RUNNING, pid=42)
    observed = node(ObservedResource(WEB, "set"), ObservedResource(API, "set", process=running))
    heavier = CellSpec("web", CellLimits(cpu_weight=300, cpu_max_us=500_000),
                       labels=(("tier", "f"),))
    desired = DesiredState((heavier, API), "set")
    plan = compile_plan(desired, observed)
    diff = diff_text(plan, desired, observed)
    assert diff == {"before": 'Cell/web:\n  cpu.weight: 200\n  cpu.max: 500000\n'
                              '  labels.tier: "f"\n',
                    "after": 'Cell/web:\n  cpu.weight: 300\n  cpu.max: 500000\n'
                             '  labels.tier: "f"\n'}
    destroyed = compile_plan(desired, observed, destroy=True)
    gone = diff_text(destroyed, desired, observed, destroy=True)
    assert gone["after"] == "Executable/api: absent\nCell/web: absent\n"
    assert gone["before"].startswith("Executable/api:\n") and "Cell/web:\n" in gone["before"]
    fresh = diff_text(compile_plan(desired, node()), desired, None)
    assert fresh["before"] == "Cell/web: absent\nExecutable/api: absent\n"


def test_apply_outcome_names_failures_and_skips_and_counts_successes() -> None:
    desired = DesiredState((WEB, API, ExecutableSpec("loner", "sleep 1")), "set")
    plan = compile_plan(desired, node())

    def perform(step: Step) -> None:
        if step.ref == Ref(Kind.CELL, "web"):
            raise NodeError("cgroup refused")

    outcome = ApplyOutcome().collect(run_plan(plan, perform))
    assert outcome.succeeded == 1
    assert outcome.failures == ["step #0 (allocate Cell/web: created) failed: cgroup refused"]
    assert "allocate Cell/web: created -- FAILED: cgroup refused" in outcome.actions_text
    assert "start Executable/loner: created" in outcome.actions_text
    assert any(a.startswith("start Executable/api: created -- skipped: not run: step #0")
               for a in outcome.actions_text)
    by_name = {action["name"]: action for action in outcome.actions}
    assert by_name["web"] == {"step": 0, "kind": "Cell", "name": "web", "action": "allocate",
                              "change": "create", "reason": "created", "requires": [],
                              "result": "failed", "message": "cgroup refused"}
    assert by_name["api"]["result"] == "skipped" and by_name["api"]["requires"] == [0]
    assert by_name["loner"]["result"] == "succeeded" and "message" not in by_name["loner"]
    assert outcome.summary is not None
    assert (outcome.summary.created, outcome.summary.failed, outcome.summary.skipped) == (1, 1, 1)


def test_planned_summary_is_what_a_clean_apply_reports() -> None:
    running = ProcessStatus(ProcessPhase.RUNNING, pid=42)
    observed = node(ObservedResource(WEB, "set"), ObservedResource(API, "set", process=running))
    replaced = ExecutableSpec("api", "serve --port 81", cell="web")
    plan = compile_plan(DesiredState((WEB, replaced, ExecutableSpec("new", "x")), "set"),
                        observed)
    applied = ApplyOutcome().collect(run_plan(plan, lambda step: None,
                                              generation=lambda: plan.generation))
    assert applied.summary == planned_summary(plan)
    assert (applied.summary.created, applied.summary.replaced,
            applied.summary.unchanged) == (1, 1, 1)


def test_invalid_manifests_fail_with_every_error_before_touching_a_node(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: web}\n"
                   "spec: {cpu: {weight: 0}, bogus: 1}\n")
    # A state directory that cannot be created: reaching the node would fail differently.
    options = ManifestOptions(path=(str(bad),), state_dir="/proc/no-such-state")
    for check_mode in (True, False):
        with pytest.raises(ModuleFailure) as failed:
            ManifestManager(options, check_mode=check_mode).run()
        errors = failed.value.fields["errors"]
        assert failed.value.fields["changed"] is False and len(errors) == 2
        assert f"{bad}:4:22: spec.cpu.weight: 0 is less than the minimum of 1" in errors
        assert all(error in failed.value.msg for error in errors)
    with pytest.raises(ModuleFailure, match="no such file or directory on the managed node"):
        ManifestManager(ManifestOptions(path=(str(tmp_path / "missing"),))).run()


def test_texts_from_the_controller_keep_their_file_and_line() -> None:
    text = ("apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: web}\n"
            "spec: {cpu: {weight: 0}}\n")
    options = ManifestOptions(texts=(("/controller/site/web.yaml", text),),
                              state_dir="/proc/no-such-state")
    with pytest.raises(ModuleFailure) as failed:
        ManifestManager(options, check_mode=True).run()
    assert failed.value.fields["errors"] == [
        "/controller/site/web.yaml:4:22: spec.cpu.weight: 0 is less than the minimum of 1"]


@pytest.mark.parametrize(("definition", "expected"), [
    ("kind: Cell\n", "definition:1:1: missing required field 'apiVersion'"),
    ([{"apiVersion": "provisioner/v1", "kind": "Cell", "metadata": {"name": "Bad_Name"},
       "spec": {}}], "definition[0]:"),
    (["not a document"], "definition[0] is not a document"),
    ([], "non-empty list of documents"),
])
def test_a_bad_definition_is_refused_before_the_node(definition: Any, expected: str) -> None:
    options = ManifestOptions(definition=definition, manifest_set="web",
                              state_dir="/proc/no-such-state")
    with pytest.raises(ModuleFailure) as failed:
        ManifestManager(options, check_mode=True).run()
    assert expected in failed.value.msg, failed.value.msg
    assert failed.value.fields["changed"] is False


# -- the modules' documentation ---------------------------------------------------

COLLECTION = REPO / "ansible_collections" / "provisioner" / "node"
#: Each module, the options record its parameters become, and its return values.
MODULES: dict[str, tuple[type[NodeOptions], set[str]]] = {
    "manifest": (ManifestOptions, {"manifest_set", "plan", "plan_text", "actions",
                                   "actions_text", "summary", "would_prune", "diff",
                                   "errors"}),
    "resource": (ResourceOptions, {"manifest_set", "plan", "plan_text", "actions",
                                   "actions_text", "summary", "diff", "errors"}),
    "info": (InfoOptions, {"node", "resources"}),
}
#: Options the action plugin sends, not for users (documented as internal).
INTERNAL = {"_rendered_files", "_rendered_texts"}
#: What validate-modules compares between an option's documentation and its spec.
COMPARED = ("type", "elements", "default", "choices", "required", "aliases")
FALSY_BY_DEFAULT = {"required": False}


def load_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"ansible_collections.provisioner.node.plugins.modules.{name}",
        COLLECTION / "plugins" / "modules" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ansible_doc() -> dict[str, Any]:
    """Every module's documentation as ansible-doc reads it, doc fragments merged."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json",
         *(f"provisioner.node.{name}" for name in MODULES)],
        cwd=REPO, env={**env, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_COLLECTIONS_PATH": str(REPO)},
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return {name.rsplit(".", 1)[1]: value for name, value in data.items()}


LOADED = {name: load_module(name) for name in MODULES}
DOCS_AND_RETURNS = ansible_doc()
DOCS: dict[str, dict[str, Any]] = {name: value["doc"] for name, value in
                                   DOCS_AND_RETURNS.items()}
SPECS: dict[str, dict[str, dict[str, Any]]] = {name: module.ARGUMENT_SPEC
                                               for name, module in LOADED.items()}
OPTIONS = [(module, option) for module in MODULES for option in sorted(SPECS[module])]


def attribute(source: dict[str, Any], name: str) -> Any:
    return source.get(name, FALSY_BY_DEFAULT.get(name))


@pytest.mark.parametrize("module", MODULES)
def test_every_option_is_documented_and_nothing_else(module: str) -> None:
    assert DOCS[module]["module"] == module
    assert set(DOCS[module]["options"]) == set(SPECS[module])


@pytest.mark.parametrize(("module", "name"), OPTIONS)
def test_documented_attributes_match_the_spec(module: str, name: str) -> None:
    documented, declared = DOCS[module]["options"][name], SPECS[module][name]
    assert documented.get("description"), f"{name} has no description"
    for key in COMPARED:
        assert attribute(documented, key) == attribute(declared, key), (name, key)
        if key == "default" and "default" in declared:
            assert type(documented[key]) is type(declared[key]), (name, "default type")
    unknown = set(declared) - {*COMPARED, "fallback", "no_log"}
    assert not unknown, f"{name}: spec keys this test does not compare: {unknown}"


def test_the_modules_share_their_node_options_through_one_fragment() -> None:
    shared = {f.name for f in records.fields(NodeOptions)} - {"state"}
    for module in MODULES:
        assert shared <= set(SPECS[module]), module
        for name in shared:
            assert SPECS[module][name] == SPECS["manifest"][name], (module, name)
            assert DOCS[module]["options"][name] == DOCS["manifest"]["options"][name]
        attributes = DOCS[module]["attributes"]
        assert attributes["action_group"]["membership"] == ["provisioner.node.node"]
        assert attributes["check_mode"]["support"] == "full"
    assert SPECS["resource"]["kind"]["choices"] == [kind.value for kind in Kind]
    runtime = yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text())
    assert sorted(runtime["action_groups"]["node"]) == sorted(MODULES)


def record_defaults(cls: type[Any]) -> dict[str, Any]:
    out = {}
    for f in records.fields(cls):
        if f.default is not records.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not records.MISSING:
            out[f.name] = f.default_factory()
    return out


#: Options the module handles itself (or the action plugin), not the options record.
NOT_IN_OPTIONS = {"manifest": {"src", *INTERNAL}, "resource": set(), "info": set()}


@pytest.mark.parametrize("module", MODULES)
def test_spec_defaults_are_the_cli_defaults_and_options_are_typed(module: str) -> None:
    spec, options = SPECS[module], MODULES[module][0]
    assert spec["state_dir"]["default"] == DEFAULT_STATE_DIR
    assert spec["cgroup_root"]["default"] == DEFAULT_CGROUP_ROOT
    assert spec["lock_timeout"]["default"] == DEFAULT_LOCK_TIMEOUT_S
    fields = record_defaults(options)
    assert set(spec) - NOT_IN_OPTIONS[module] <= set(fields)
    for name, declared in spec.items():
        if "default" in declared:
            assert fields[name] == declared["default"], name


@pytest.mark.parametrize("module", MODULES)
def test_examples_use_only_known_options(module: str) -> None:
    tasks = yaml.safe_load(LOADED[module].EXAMPLES)
    assert tasks
    spec = SPECS[module]
    uses = [task for task in tasks if f"provisioner.node.{module}" in task]
    assert uses
    for task in uses:
        args = task[f"provisioner.node.{module}"] or {}
        assert set(args) <= set(spec) - INTERNAL, task["name"]
        assert {name for name, o in spec.items() if o.get("required")} <= set(args)
        for name, value in args.items():
            choices = spec[name].get("choices")
            assert choices is None or value in choices, (task["name"], name)


@pytest.mark.parametrize("module", MODULES)
def test_return_values_are_documented_with_types(module: str) -> None:
    returned = DOCS_AND_RETURNS[module]["return"]
    assert set(returned) == MODULES[module][1]
    for name, doc in returned.items():
        assert {"description", "returned", "type"} <= set(doc), name
        if doc["type"] == "list":
            assert doc.get("elements"), name
