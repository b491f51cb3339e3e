#!/usr/bin/env python3
"""Validation throughput: documents per second for a generated 10,000-resource manifest.

Measures the whole pipeline of ``provisioner validate`` (read, decode, YAML with
positions, JSON Schema, model, cross-document checks) on one file holding N documents
(cells, nested cells and executables), several times, and prints the median. As a
baseline measured in the same run it also times plain ``yaml.load_all`` (libyaml, no
validation) on the same file, and prints the ratio. Target: >= 10,000 documents/s.

    python bench/validate_throughput.py [--resources 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from provisioner.manifest import load

TARGET_DOCS_PER_S = 10_000


def generate(resources: int) -> str:
    """A third top-level cells, a third nested cells, a third executables."""
    parts = []
    cells = resources // 3
    for i in range(cells):
        parts.append(
            f"apiVersion: provisioner/v1\nkind: Cell\nmetadata:\n  name: c{i}\n"
            f"  labels: {{tier: t{i % 7}}}\nspec:\n  cpu:\n    weight: {1 + i % 10000}\n"
            f"    max: {10000 + i}\n  cpuset:\n    cpus: \"0-1\"\n"
        )
        parts.append(
            f"apiVersion: provisioner/v1\nkind: Cell\nmetadata:\n  name: c{i}/inner\n"
            f"spec:\n  isolateProcess: {str(i % 2 == 0).lower()}\n"
        )
    for i in range(resources - 2 * cells):
        parts.append(
            f"apiVersion: provisioner/v1\nkind: Executable\nmetadata:\n  name: e{i}\nspec:\n"
            f"  cell: c{i % cells}/inner\n  command: sleep {i}\n  env:\n    N: \"{i}\"\n"
            f"  restartPolicy: on-failure\n  stopGracePeriod: 5s\n"
            + (f"  dependsOn: [Executable/e{i - 1}]\n" if i else "")
        )
    return "---\n".join(parts)


def timed(fn: object, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "fleet.yaml")
        path.write_text(generate(args.resources))
        result = load([str(path)])
        if not result.ok:
            print("generated manifest is invalid:", result.issues[:3], file=sys.stderr)
            return 1
        docs = result.documents
        ours = timed(lambda: load([str(path)]), args.repeat)
        text = path.read_text()
        base = timed(lambda: list(yaml.load_all(text, Loader=yaml.CSafeLoader)), args.repeat)
    ours_med, base_med = statistics.median(ours), statistics.median(base)
    rate = docs / ours_med
    print(f"validate: {docs} documents, median {ours_med:.3f} s over {args.repeat} runs "
          f"-> {rate:,.0f} documents/s (target >= {TARGET_DOCS_PER_S:,})")
    print(f"baseline yaml.load_all (libyaml, no validation): median {base_med:.3f} s "
          f"-> {docs / base_med:,.0f} documents/s")
    print(f"ratio validate / plain YAML load: {ours_med / base_med:.2f}")
    print(f"target met: {'yes' if rate >= TARGET_DOCS_PER_S else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
