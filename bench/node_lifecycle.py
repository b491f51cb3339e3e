#!/usr/bin/env python3
"""Cell lifecycle through the node layer vs. direct syscalls, measured in the same run.

For N cells (default 200), each with one executable (``sleep 1000``): allocate the cell
(weight, quota, cpuset), start the executable in it, stop it, free the cell. The node
layer does all it promises on top (records in SQLite, a supervisor per executable with
log capture, SIGTERM with a grace period, ownership checks). The baseline does the bare
work with syscalls from this process: mkdir the cgroups, write the limits, fork+exec
into the cgroup, SIGTERM + waitpid, rmdir. Both run sequentially, one cell at a time,
``--repeat`` times, alternating; the medians and their ratio are printed.
Target: ratio <= 2.0.

    python bench/node_lifecycle.py [--cells 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid

from provisioner.model import CellLimits, CellSpec, ExecutableSpec
from provisioner.node.layer import NodeConfig, NodeLayer

TARGET_RATIO = 2.0
CONTROLLERS = ("cpu", "cpuset", "pids", "freezer")
LIMITS = CellLimits(cpu_weight=200, cpu_max_us=500_000, cpuset_cpus="0")


def node_layer_run(cells: int) -> float:
    with tempfile.TemporaryDirectory() as state:
        layer = NodeLayer(NodeConfig(state_dir=state, cgroup_root=f"bench-{uuid.uuid4().hex[:8]}"))
        try:
            started = time.perf_counter()
            for i in range(cells):
                layer.allocate_cell(CellSpec(f"c{i}", LIMITS), "bench")
                layer.start_executable(
                    ExecutableSpec(f"e{i}", "sleep 1000", cell=f"c{i}", stop_grace_s=5), "bench")
                layer.stop_executable(f"e{i}", forget=True)
                layer.free_cell(f"c{i}")
            elapsed = time.perf_counter() - started
        finally:
            layer.cgroups.remove_root()
            layer.close()
    return elapsed


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def baseline_run(cells: int) -> float:
    root = f"bench-raw-{uuid.uuid4().hex[:8]}"
    mounts = {c: f"/sys/fs/cgroup/{c}" for c in CONTROLLERS}
    for controller, mount in mounts.items():
        os.mkdir(f"{mount}/{root}")
        if controller == "cpuset":
            for name in ("cpuset.cpus", "cpuset.mems"):
                _write(f"{mount}/{root}/{name}", open(f"{mount}/{name}").read().strip())
    try:
        started = time.perf_counter()
        for i in range(cells):
            dirs = [f"{mount}/{root}/c{i}" for mount in mounts.values()]
            for path in dirs:
                os.mkdir(path)
            cpu, cpuset = dirs[0], dirs[1]
            _write(f"{cpu}/cpu.shares", str(LIMITS.cpu_weight * 1024 // 100))  # type: ignore[operator]
            _write(f"{cpu}/cpu.cfs_period_us", "1000000")
            _write(f"{cpu}/cpu.cfs_quota_us", str(LIMITS.cpu_max_us))
            _write(f"{cpuset}/cpuset.cpus", "0")
            _write(f"{cpuset}/cpuset.mems", "0")
            pid = os.fork()
            if pid == 0:  # the child joins the cgroups before exec, like a supervisor would
                try:
                    for path in dirs:
                        _write(f"{path}/cgroup.procs", "0")
                    os.execv("/bin/sh", ["sh", "-c", "sleep 1000"])
                finally:
                    os._exit(127)
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
            for path in dirs:
                os.rmdir(path)
        elapsed = time.perf_counter() - started
    finally:
        for mount in mounts.values():
            os.rmdir(f"{mount}/{root}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (cgroups)", file=sys.stderr)
        return 1
    ours, base = [], []
    for _ in range(args.repeat):
        base.append(baseline_run(args.cells))
        ours.append(node_layer_run(args.cells))
    ours_med, base_med = statistics.median(ours), statistics.median(base)
    ratio = ours_med / base_med
    print(f"node layer: {args.cells} cells x (allocate + start + stop + free): median "
          f"{ours_med:.2f} s ({ours_med / args.cells * 1000:.1f} ms per cell)")
    print(f"baseline (direct syscalls): median {base_med:.2f} s "
          f"({base_med / args.cells * 1000:.1f} ms per cell)")
    print(f"ratio node layer / baseline: {ratio:.2f} (target <= {TARGET_RATIO})")
    print(f"target met: {'yes' if ratio <= TARGET_RATIO else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
