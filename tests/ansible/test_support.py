"""Unit tests, no kernel: the module's DOCUMENTATION / EXAMPLES / RETURN against its
argument_spec (what ansible-test's validate-modules checks, so they can never drift
apart), and the pure parts of ``provisioner.ansible_support``: options, diff texts, the
folding of apply events into ``actions`` and failures, validation failures. Plans come
from the real compiler, events from the real scheduler with a recording step."""

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

from provisioner.ansible_support import (
    HIDDEN,
    HIDDEN_CHANGED,
    ApplyOutcome,
    ManifestManager,
    ManifestOptions,
    ModuleFailure,
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


# -- the module's documentation ----------------------------------------------------

MODULE_FILE = REPO / "modules" / "provisioner_manifest.py"
#: What validate-modules compares between an option's documentation and its spec.
COMPARED = ("type", "elements", "default", "choices", "required", "aliases", "no_log")
FALSY_BY_DEFAULT = {"required": False, "no_log": False}


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("provisioner_manifest", MODULE_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULE = load_module()
DOC: dict[str, Any] = yaml.safe_load(MODULE.DOCUMENTATION)
SPEC: dict[str, dict[str, Any]] = MODULE.ARGUMENT_SPEC


def attribute(source: dict[str, Any], name: str) -> Any:
    return source.get(name, FALSY_BY_DEFAULT.get(name))


def test_every_option_is_documented_and_nothing_else() -> None:
    assert DOC["module"] == "provisioner_manifest"
    assert set(DOC["options"]) == set(SPEC)


@pytest.mark.parametrize("name", sorted(SPEC))
def test_documented_attributes_match_the_spec(name: str) -> None:
    documented, declared = DOC["options"][name], SPEC[name]
    assert documented.get("description"), f"{name} has no description"
    for key in COMPARED:
        assert attribute(documented, key) == attribute(declared, key), (name, key)
        if key == "default" and "default" in declared:
            assert type(documented[key]) is type(declared[key]), (name, "default type")
    unknown = set(declared) - {*COMPARED, "fallback"}
    assert not unknown, f"{name}: spec keys this test does not compare: {unknown}"


def test_spec_defaults_are_the_cli_defaults_and_options_are_typed() -> None:
    assert SPEC["state_dir"]["default"] == DEFAULT_STATE_DIR
    assert SPEC["cgroup_root"]["default"] == DEFAULT_CGROUP_ROOT
    assert SPEC["lock_timeout"]["default"] == DEFAULT_LOCK_TIMEOUT_S
    assert {f.name for f in dataclasses.fields(ManifestOptions)} == set(SPEC)
    fields = {f.name: f.default for f in dataclasses.fields(ManifestOptions)
              if f.default is not dataclasses.MISSING}
    for name, declared in SPEC.items():
        if "default" in declared:
            assert fields[name] == declared["default"], name


def test_examples_use_only_known_options() -> None:
    tasks = yaml.safe_load(MODULE.EXAMPLES)
    assert tasks
    for task in tasks:
        args = task["provisioner_manifest"]
        assert set(args) <= set(SPEC), task["name"]
        for name, value in args.items():
            choices = SPEC[name].get("choices")
            assert choices is None or value in choices, (task["name"], name)


def test_return_values_are_documented_with_types() -> None:
    returned = yaml.safe_load(MODULE.RETURN)
    assert set(returned) == {"manifest_set", "plan", "actions", "summary", "would_prune",
                             "diff", "errors"}
    for name, doc in returned.items():
        assert {"description", "returned", "type", "sample"} <= set(doc), name
        if doc["type"] == "list":
            assert doc.get("elements"), name


def test_ansible_doc_reads_the_documentation() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-doc"), "-M", str(REPO / "modules"),
         "--json", "provisioner_manifest"],
        cwd=REPO, env={**env, "ANSIBLE_NOCOLOR": "1"}, capture_output=True, text=True,
        timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert '"lock_timeout"' in done.stdout and '"would_prune"' in done.stdout
