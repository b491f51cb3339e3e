#!/usr/bin/env python3
"""What starting the ``provisioner`` command costs against starting Python itself.

Three commands, run interleaved (one of each per round, in turn, so they share the
machine's load), each a fresh process of the interpreter of a copy of this checkout
installed from a wheel, as a node has it (``bench/installed.py``: the development
virtualenv's editable install runs an import hook at every start that no installed
copy has):

* ``python -c pass`` (the baseline: the interpreter's own start-up with site);
* ``provisioner version``;
* ``provisioner validate FILE`` of one small manifest (one Cell).

For each: the median CPU time of the child (user + system, from ``wait4``), the median
wall time and the peak resident memory, then the CPU ratios
against the baseline with their targets (issue #14: version <= 2.5, validate <= 4).
Bytecode is written and used as an installed package's would be, whatever
PYTHONDONTWRITEBYTECODE says (one warm-up run of each command writes it).

    python bench/cli_startup.py [--rounds 30]

``--python`` runs another virtualenv's interpreter and console script instead (say
``--python .venv/bin/python``: the editable install, hook included); ``--pythonpath``
puts another checkout first on the path (for a before/after:
``--pythonpath /tmp/old-checkout``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.installed import installed_copy

#: CPU time of the command / CPU time of ``python -c pass`` (medians), at most.
TARGETS = {"version": 2.5, "validate": 4.0}
BASELINE = "python -c pass"
GNU_TIME = "/usr/bin/time"  # (./dev bench installs it: Debian's time)

MANIFEST = """\
apiVersion: provisioner/v1
kind: Cell
metadata: {name: web}
spec: {cpu: {weight: 200}}
"""


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``argv`` to its end: (CPU seconds, wall seconds) of the child alone. Output
    is discarded; a non-zero exit stops the benchmark."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert proc.stderr is not None
    stderr = proc.stderr.read()  # (small: the child writes nothing there unless it fails)
    proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): "
                         f"{stderr.decode(errors='replace')}")
    return usage.ru_utime + usage.ru_stime, wall


def peak_rss_kib(argv: list[str], env: dict[str, str]) -> int | None:
    """The command's peak resident memory (KiB), as GNU time reports it; None without
    /usr/bin/time. Not this process's own ``wait4``: a child keeps the high-water mark
    of the memory it was forked (or vforked) with across exec, so every child of this
    benchmark would read as at least the benchmark's own size (~15 MiB). GNU time is a
    small parent."""
    if not os.path.exists(GNU_TIME):
        return None
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run([GNU_TIME, "-f", "%M", "-o", out.name, *argv], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return int(out.read().split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds")
    parser.add_argument("--python", help="the interpreter, with its virtualenv's console "
                        "script (default: a wheel of this checkout, installed)")
    parser.add_argument("--pythonpath", help="a checkout to run instead of the installed "
                        "package (put first on PYTHONPATH)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp, \
            contextlib.ExitStack() as stack:
        python = args.python or stack.enter_context(installed_copy(Path(tmp))).python
        # The console script the package installs (it runs `provisioner.cli.run()` with
        # the same interpreter, so site and the import path are the baseline's).
        cli = [str(Path(python).parent / "provisioner")]
        manifest = Path(tmp) / "cell.yaml"
        manifest.write_text(MANIFEST)
        commands = {
            BASELINE: [python, "-c", "pass"],
            "version": [*cli, "version"],
            "validate": [*cli, "validate", str(manifest)],
        }
        for argv in commands.values():  # warm the page cache and write the bytecode
            measure(argv, env)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                samples[name].append(measure(argv, env))
        peaks = {name: [peak_rss_kib(argv, env) for _ in range(3)]
                 for name, argv in commands.items()}
    cpu = {name: statistics.median(s[0] for s in runs) for name, runs in samples.items()}
    where = (f" ({args.pythonpath})" if args.pythonpath else
             f" ({args.python})" if args.python else " (a wheel of this checkout, installed)")
    print(f"CLI start-up{where}: medians of {args.rounds} interleaved rounds "
          "(CPU = user + system of the child)")
    print(f"  {'command':<16}{'CPU ms':>8}{'wall ms':>9}{'peak RSS MiB':>14}"
          f"{'CPU ratio':>11}{'target':>8}")
    met = True
    for name, runs in samples.items():
        wall = statistics.median(s[1] for s in runs)
        known = [kib for kib in peaks[name] if kib is not None]
        peak = f"{max(known) / 1024:14.1f}" if known else f"{'-':>14}"
        ratio = cpu[name] / cpu[BASELINE]
        target = TARGETS.get(name)
        met = met and (target is None or ratio <= target)
        print(f"  {name:<16}{cpu[name] * 1000:8.1f}{wall * 1000:9.1f}{peak}"
              f"{ratio:11.2f}{f'<= {target}' if target else '':>8}")
    if not os.path.exists(GNU_TIME):
        print(f"  (no peak memory: {GNU_TIME} is missing; ./dev bench installs it)")
    print(f"targets met: {'yes' if met else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
