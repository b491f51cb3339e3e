#!/usr/bin/env python3
"""Converging a fleet over SSH: 1, 3 and 10 test hosts of 50 resources each.

    python bench/fleet.py [--sizes 1,3,10] [--resources 50]

For each size, a fresh fleet (scripts/fleet.py: real sshd's in their own namespaces on
this machine) is bootstrapped with provisioner.node.bootstrap, converged with
provisioner.node.converge (one manifest set of RESOURCES resources per host: cells and
sleeping executables), converged again (the no-op rerun), torn down and removed. Forks
are at least the number of hosts (the fleet's ansible.cfg). Prints the times and

    fleet ratio 10 hosts / 1 host: X

the converge time of the largest fleet over the smallest's (ideal: 1.0; the target on
a 2-core machine is <= 3.0, since every host's module runs on the same two cores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts import fleet as fleet_script
from tests.fleet import harness


def measure(size: int, resources: int, collections: Path, workdir: Path) -> dict[str, float]:
    fleet = fleet_script.create(size, None)
    try:
        boot = harness.run_playbook(fleet, collections, "provisioner.node.bootstrap",
                                    *harness.bootstrap_args(), cwd=workdir)
        _check(boot, "bootstrap")
        cells = max(1, resources // 5)
        harness.write_manifests(workdir / "bench", executables=resources - cells, cells=cells)
        first = harness.run_playbook(fleet, collections, "provisioner.node.converge",
                                     "-e", "provisioner_manifests=bench", cwd=workdir)
        _check(first, "converge")
        again = harness.run_playbook(fleet, collections, "provisioner.node.converge",
                                     "-e", "provisioner_manifests=bench", cwd=workdir)
        _check(again, "no-op converge")
        if any(again.changed().values()):
            raise SystemExit(f"the rerun changed something: {again.changed()}")
        down = harness.run_playbook(fleet, collections, "provisioner.node.teardown",
                                    "-e", "provisioner_manifests=bench", cwd=workdir)
        _check(down, "teardown")
    finally:
        fleet_script.remove(fleet)
    return {"bootstrap": boot.seconds, "converge": first.seconds, "noop": again.seconds}


def _check(run: harness.PlaybookRun, what: str) -> None:
    if not run.all_green():
        raise SystemExit(f"{what} failed:\n{run.output[-4000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1,3,10")
    parser.add_argument("--resources", type=int, default=50)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        workdir = Path(tmp)
        collections = harness.install_collection(workdir)
        results = {}
        for size in sizes:
            results[size] = figures = measure(size, args.resources, collections, workdir)
            print(f"{size:>2} host(s) x {args.resources} resources: converge "
                  f"{figures['converge']:6.1f} s, no-op rerun {figures['noop']:6.1f} s, "
                  f"bootstrap {figures['bootstrap']:6.1f} s "
                  f"({figures['bootstrap'] / size:5.1f} s per host)", flush=True)
    small, large = min(sizes), max(sizes)
    ratio = results[large]["converge"] / results[small]["converge"]
    print(f"fleet ratio {large} hosts / {small} host: {ratio:.2f} (target <= 3.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
