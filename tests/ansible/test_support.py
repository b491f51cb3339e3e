"""Unit tests, no kernel: each module's DOCUMENTATION / EXAMPLES / RETURN against its
argument_spec (what ansible-test's validate-modules checks, so they can never drift
apart; provisioner_manifest and provisioner_resource), and the pure parts of
``provisioner.ansible_support``: options, diff texts, the folding of apply events into
``actions`` and failures, validation failures. Plans come from the real compiler, events
from the real scheduler with a recording step."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from provisioner.ansible_resource import ResourceOptions
from provisioner.ansible_support import (
    HIDDEN,
    HIDDEN_CHANGED,
    ApplyOutcome,
    ManifestManager,
    ManifestOptions,
    ModuleFailure,
    NodeOptions,
    diff_text,
    planned_summary,
    resource_text,
    spec_fields,
)
from provisioner.cli.node_commands import DEFAULT_CGROUP_ROOT
from provisioner.errors import NodeError
from provisioner.executors.local import DEFAULT_LOCK_TIMEOUT_S
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
from provisioner.node.store import DEFAULT_STATE_DIR
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
    with pytest.raises(ModuleFailure, match="needs path or manifest_set"):
        ManifestOptions(state="absent").set_name()


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
    assert "allocate Cell/web: created -- FAILED: cgroup refused" in outcome.actions
    assert "start Executable/loner: created" in outcome.actions
    assert any(a.startswith("start Executable/api: created -- skipped: not run: step #0")
               for a in outcome.actions)
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
    with pytest.raises(ModuleFailure, match="no such file or directory"):
        ManifestManager(ManifestOptions(path=(str(tmp_path / "missing"),))).run()


# -- the modules' documentation ---------------------------------------------------

#: Each module, the options dataclass its parameters become, and its return values.
MODULES: dict[str, tuple[type[NodeOptions], set[str]]] = {
    "provisioner_manifest": (ManifestOptions, {"manifest_set", "plan", "actions", "summary",
                                               "would_prune", "diff", "errors"}),
    "provisioner_resource": (ResourceOptions, {"manifest_set", "plan", "actions", "summary",
                                               "diff", "errors"}),
}
#: What validate-modules compares between an option's documentation and its spec.
COMPARED = ("type", "elements", "default", "choices", "required", "aliases", "no_log")
FALSY_BY_DEFAULT = {"required": False, "no_log": False}


def load_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "modules" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOADED = {name: load_module(name) for name in MODULES}
DOCS: dict[str, dict[str, Any]] = {name: yaml.safe_load(module.DOCUMENTATION)
                                   for name, module in LOADED.items()}
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
    unknown = set(declared) - {*COMPARED, "fallback"}
    assert not unknown, f"{name}: spec keys this test does not compare: {unknown}"


def test_the_modules_share_their_connection_options_exactly() -> None:
    shared = {f.name for f in dataclasses.fields(NodeOptions)}
    manifest, resource = SPECS["provisioner_manifest"], SPECS["provisioner_resource"]
    for name in shared - {"state"}:
        assert manifest[name] == resource[name], name
        assert (DOCS["provisioner_manifest"]["options"][name]
                == DOCS["provisioner_resource"]["options"][name]), name
    assert resource["kind"]["choices"] == [kind.value for kind in Kind]


def dataclass_defaults(cls: type[Any]) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


@pytest.mark.parametrize("module", MODULES)
def test_spec_defaults_are_the_cli_defaults_and_options_are_typed(module: str) -> None:
    spec, options = SPECS[module], MODULES[module][0]
    assert spec["state_dir"]["default"] == DEFAULT_STATE_DIR
    assert spec["cgroup_root"]["default"] == DEFAULT_CGROUP_ROOT
    assert spec["lock_timeout"]["default"] == DEFAULT_LOCK_TIMEOUT_S
    assert {f.name for f in dataclasses.fields(options)} == set(spec)
    fields = dataclass_defaults(options)
    for name, declared in spec.items():
        if "default" in declared:
            assert fields[name] == declared["default"], name


@pytest.mark.parametrize("module", MODULES)
def test_examples_use_only_known_options(module: str) -> None:
    tasks = yaml.safe_load(LOADED[module].EXAMPLES)
    assert tasks
    spec = SPECS[module]
    for task in tasks:
        args = task[module]
        assert set(args) <= set(spec), task["name"]
        assert {name for name, o in spec.items() if o.get("required")} <= set(args)
        for name, value in args.items():
            choices = spec[name].get("choices")
            assert choices is None or value in choices, (task["name"], name)


@pytest.mark.parametrize("module", MODULES)
def test_return_values_are_documented_with_types(module: str) -> None:
    returned = yaml.safe_load(LOADED[module].RETURN)
    assert set(returned) == MODULES[module][1]
    for name, doc in returned.items():
        assert {"description", "returned", "type", "sample"} <= set(doc), name
        if doc["type"] == "list":
            assert doc.get("elements"), name


@pytest.mark.parametrize(("module", "expected"), [
    ("provisioner_manifest", ('"lock_timeout"', '"would_prune"')),
    ("provisioner_resource", ('"lock_timeout"', '"PersistentExecutable"', '"manifest_set"')),
])
def test_ansible_doc_reads_the_documentation(module: str, expected: tuple[str, ...]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-doc"), "-M", str(REPO / "modules"),
         "--json", module],
        cwd=REPO, env={**env, "ANSIBLE_NOCOLOR": "1"}, capture_output=True, text=True,
        timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert all(text in done.stdout for text in expected), done.stdout[:2000]
