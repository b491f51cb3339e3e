"""Golden plans: ``cases/<case>/`` holds desired.yaml (the manifest; absent = nothing
declared; checked like a daemon's Plan request, so its references may also name
observed resources of other sets), case.yaml (options and the observed node) and
expected.txt (the plan exactly as ``provisioner plan`` prints it). Adding a case adds
files, not code.

case.yaml::

    generation: 7
    options: {prune: false, destroy: false, manifestSet: default}
    observed:
      - manifestSet: default          # default: "default"
        present: true                 # default: true
        process: {phase: running, pid: 42, exitCode: 0, exitSignal: 9}
        manifest: {apiVersion: provisioner/v1, kind: Cell, metadata: {name: web}}
    error: "text the compiler must fail with"   # instead of expected.txt
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.errors import FailedPrecondition
from provisioner.manifest import load
from provisioner.manifest.from_data import validate_data
from provisioner.manifest.yamlsafe import load_documents
from provisioner.model import DesiredState
from provisioner.plan.compiler import compile_plan
from provisioner.plan.render import render_plan
from provisioner.state import NodeState, ObservedResource, ProcessPhase, ProcessStatus

CASES = sorted(p for p in (Path(__file__).parent / "cases").iterdir() if p.is_dir())


def _load_specs(tmp: Path, name: str, docs: list[dict[str, Any]]) -> DesiredState:
    path = tmp / name
    path.write_text(yaml.safe_dump_all(docs))
    result = load([str(path)])
    assert result.ok, [i.render() for i in result.issues]
    return result.state


def _process(raw: dict[str, Any] | None) -> ProcessStatus | None:
    if raw is None:
        return None
    return ProcessStatus(
        ProcessPhase(raw["phase"]),
        pid=raw.get("pid"),
        exit_code=raw.get("exitCode"),
        exit_signal=raw.get("exitSignal"),
        restart_count=raw.get("restarts", 0),
    )


def observed_state(case: dict[str, Any], tmp: Path) -> NodeState:
    entries = case.get("observed") or []
    if not entries:
        return NodeState(generation=case.get("generation", 1))
    specs = _load_specs(tmp, "observed.yaml", [e["manifest"] for e in entries]).resources
    resources = []
    for entry, spec in zip(entries, specs, strict=True):
        resources.append(
            ObservedResource(
                spec,
                manifest_set=entry.get("manifestSet", "default"),
                present=entry.get("present", True),
                process=_process(entry.get("process")),
            )
        )
    return NodeState(generation=case.get("generation", 1), resources=tuple(resources))


def desired_state(folder: Path, manifest_set: str, observed: NodeState) -> DesiredState:
    """desired.yaml, checked like a daemon's Plan request: references may also name
    resources the observed node has (of other manifest sets)."""
    path = folder / "desired.yaml"
    if not path.exists():
        return DesiredState((), manifest_set)
    items = [doc.data for doc in load_documents(str(path), path.read_text())]
    result = validate_data(items, manifest_set, label=str(path),
                           existing=[r.ref for r in observed.resources])
    assert result.ok, [i.render() for i in result.issues]
    return result.state


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("folder", CASES, ids=lambda p: p.name)
def test_plan(folder: Path, tmp_path: Path) -> None:
    case = yaml.safe_load((folder / "case.yaml").read_text()) or {}
    options = case.get("options") or {}
    observed = observed_state(case, tmp_path)
    desired = desired_state(folder, options.get("manifestSet", "default"), observed)
    if "error" in case:
        with pytest.raises(FailedPrecondition) as raised:
            compile_plan(
                desired,
                observed,
                prune=options.get("prune", False),
                destroy=options.get("destroy", False),
            )
        assert case["error"] in str(raised.value)
        return
    plan = compile_plan(
        desired, observed, prune=options.get("prune", False), destroy=options.get("destroy", False)
    )
    expected = (folder / "expected.txt").read_text().splitlines()
    assert render_plan(plan) == expected
    # The compiler is pure: the same inputs give an equal plan.
    assert (
        compile_plan(
            desired,
            observed,
            prune=options.get("prune", False),
            destroy=options.get("destroy", False),
        )
        == plan
    )
