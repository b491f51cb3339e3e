#!/usr/bin/env python3
"""Plan and apply benchmarks (medians over --repeat runs, all measured in this run).

1. compile: compile_plan for 10,000 declared resources against an empty node.
   Target < 1 s.
2. no-op re-plan: 1,000 live resources (500 cells, 500 running executables) already
   applied; time `plan` does: load the manifests, observe the node, compile. Target
   < 0.5 s.
3. apply vs node layer: create 200 cells each with one executable through the executor
   (`apply`, steps in parallel as it does), divided by the same work done by calling
   the node layer directly, one call after another (the node issue's baseline), both
   torn down afterwards. Target ratio <= 1.3.

    python bench/plan_apply.py [--repeat 3] [--skip-live]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from provisioner.executors.local import LocalExecutor
from provisioner.manifest import load
from provisioner.model import CellLimits, CellSpec, DesiredState, ExecutableSpec
from provisioner.node.runtime.layer import NodeConfig, NodeLayer
from provisioner.node.runtime.teardown import remove_everything
from provisioner.plan.compiler import compile_plan
from provisioner.state import NodeState


def desired(cells: int, prefix: str = "c") -> DesiredState:
    resources: list[CellSpec | ExecutableSpec] = []
    for i in range(cells):
        resources.append(CellSpec(f"{prefix}{i}", CellLimits(cpu_weight=100 + i % 50)))
        resources.append(ExecutableSpec(f"{prefix}e{i}", "sleep 1000", cell=f"{prefix}{i}"))
    return DesiredState(tuple(resources), "bench")


def manifest_text(cells: int) -> str:
    docs = []
    for i in range(cells):
        docs.append(f"apiVersion: provisioner/v1\nkind: Cell\nmetadata: {{name: c{i}}}\n"
                    f"spec: {{cpu: {{weight: {100 + i % 50}}}}}\n")
        docs.append(f"apiVersion: provisioner/v1\nkind: Executable\nmetadata: {{name: ce{i}}}"
                    f"\nspec: {{command: sleep 1000, cell: c{i}}}\n")
    return "---\n".join(docs)


def median_of(samples: list[float]) -> float:
    return statistics.median(samples)


def bench_compile(repeat: int) -> float:
    state = desired(5000)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        plan = compile_plan(state, NodeState(generation=0))
        samples.append(time.perf_counter() - started)
    assert len(plan.steps) == 10_000
    return median_of(samples)


def new_layer(state_dir: str) -> NodeLayer:
    return NodeLayer(NodeConfig(state_dir=state_dir,
                                cgroup_root=f"bench-{uuid.uuid4().hex[:8]}"))


def bench_noop_replan(repeat: int) -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "live.yaml")
        path.write_text(manifest_text(500))
        layer = new_layer(os.path.join(tmp, "state"))
        executor = LocalExecutor(layer)
        try:
            result = load([str(path)])
            state = DesiredState(result.state.resources, "bench")
            with executor.locked():
                plan = compile_plan(state, executor.observe())
                for event in executor.apply(plan):
                    if event.type.value == "step_failed":
                        raise SystemExit(f"setup failed: {event.message}")
            loads, observes, compiles, totals = [], [], [], []
            for _ in range(repeat):
                t0 = time.perf_counter()
                result = load([str(path)])
                t1 = time.perf_counter()
                observed = executor.observe()
                t2 = time.perf_counter()
                again = compile_plan(DesiredState(result.state.resources, "bench"), observed)
                t3 = time.perf_counter()
                assert not again.steps, again.steps[:3]
                loads.append(t1 - t0)
                observes.append(t2 - t1)
                compiles.append(t3 - t2)
                totals.append(t3 - t0)
        finally:
            remove_everything(layer)
            layer.close()
    return median_of(totals), median_of(loads), median_of(observes), median_of(compiles)


def bench_apply_ratio(cells: int, repeat: int) -> tuple[float, float]:
    applies, directs = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            layer = new_layer(tmp)
            try:
                state = desired(cells, prefix="d")
                started = time.perf_counter()
                for spec in state.resources:
                    if isinstance(spec, CellSpec):
                        layer.allocate_cell(spec, "bench")
                    else:
                        assert isinstance(spec, ExecutableSpec)
                        layer.start_executable(spec, "bench")
                directs.append(time.perf_counter() - started)
            finally:
                remove_everything(layer)
            layer.close()
        with tempfile.TemporaryDirectory() as tmp:
            layer = new_layer(tmp)
            executor = LocalExecutor(layer)
            try:
                started = time.perf_counter()
                with executor.locked():
                    plan = compile_plan(desired(cells, prefix="a"), executor.observe())
                    failed = [e for e in executor.apply(plan) if e.type.value == "step_failed"]
                applies.append(time.perf_counter() - started)
                if failed:
                    raise SystemExit(f"apply failed: {failed[0].message}")
            finally:
                remove_everything(layer)
            layer.close()
    return median_of(applies), median_of(directs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-live", action="store_true", help="only the pure compile bench")
    args = parser.parse_args()
    compile_s = bench_compile(args.repeat)
    print(f"compile 10,000 resources: median {compile_s:.3f} s (target < 1 s): "
          f"{'met' if compile_s < 1 else 'NOT met'}")
    if args.skip_live or os.geteuid() != 0:
        return 0
    total, loading, observing, compiling = bench_noop_replan(args.repeat)
    print(f"no-op re-plan against 1,000 live resources: median {total:.3f} s (load "
          f"{loading:.3f} + observe {observing:.3f} + compile {compiling:.3f}) "
          f"(target < 0.5 s): {'met' if total < 0.5 else 'NOT met'}")
    applied, direct = bench_apply_ratio(200, args.repeat)
    ratio = applied / direct
    print(f"apply 200 cells + 200 executables: median {applied:.2f} s; node layer called "
          f"directly: median {direct:.2f} s; ratio {ratio:.2f} (target <= 1.3): "
          f"{'met' if ratio <= 1.3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
