#!/usr/bin/env python3
"""One busybox pod, created and removed: the provisioner against podman and bare runc.

Four cycles, interleaved (one of each per round, in turn, so they share the machine's
load), each on the same busybox image (Debian's busybox-static in one layer, made by
``scripts/busybox_image.py``'s builder) running ``sleep 3600``:

The provisioner is a wheel of this checkout installed in a virtualenv of its own, as a
node has it (``bench/installed.py``: the development virtualenv's editable install
runs an import hook at every Python start that no installed copy has).

* local: ``provisioner apply POD.yaml`` then ``provisioner destroy POD.yaml`` with a
  private ``--state-dir`` and ``--cgroup-root`` (so this machine, in-process);
* daemon: the same two commands with ``--target unix://SOCK``, a daemon the benchmark
  started on a temporary socket (stopped at the end);
* podman: ``podman run -d --network none IMAGE sleep 3600`` then ``podman rm -f -t 0``
  (the image loaded into podman's storage once, before timing);
* runc: bare ``runc run -d`` of a bundle (``runc spec``'s config, a plain root
  directory) then ``runc kill KILL`` and ``runc delete --force``: the floor.

Each is timed wall-clock from the first command's start to the last one's end. The
pod is ``network: loopback`` (its own namespace with ``lo`` only: podman's
``--network none``) and ``stopGracePeriod: 0s``: ``sleep`` as a container's pid 1
ignores SIGTERM, so every cycle kills at once (``podman rm -t 0``, ``runc kill KILL``)
instead of waiting out a grace period. ``apply`` returns once the supervisor has
``runc run`` going, ``podman run -d`` once the container has started; so that both
cycles stop a running container, the two provisioner cycles wait - before timing
``destroy`` - until ``sleep`` runs in the container's cgroup, and that wait counts in
their time (a read of ``cgroup.procs`` per millisecond). podman gets
``--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`` (the provisioner's and
``runc spec``'s NOFILE; podman's default raises both, which needs CAP_SYS_RESOURCE).

Medians of the rounds are printed, per cycle and per step, with the ratios against
podman (the target of issue #14: <= 1.0, local and daemon) and bare runc. podman is
skipped when it is not installed (``./dev bench`` installs it; the tests never use it).

    python bench/pods.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.installed import installed_copy
from tests.oci_fixture import build_busybox_layout, busybox_layer

TARGET_RATIO = 1.0
POD = """\
apiVersion: provisioner/v1
kind: Pod
metadata: {{name: {name}}}
spec:
  network: loopback
  stopGracePeriod: 0s
  containers:
    - name: box
      image: oci:{image}:latest
      command: ["sleep", "3600"]
"""

#: cycle name -> step name -> seconds per round
Samples = dict[str, dict[str, list[float]]]


#: Bytecode is written and used as an installed package's would be, whatever
#: PYTHONDONTWRITEBYTECODE says (without it every CLI run compiles ~80 modules: +150 ms).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(argv: list[str], what: str) -> str:
    """Run ARGV to its end; its stdout. Stops the benchmark if it fails."""
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False, env=ENV)
    if done.returncode != 0:
        raise SystemExit(f"{what}: {' '.join(argv)} failed ({done.returncode}):\n"
                         f"{done.stdout}{done.stderr}")
    return done.stdout


def timed(steps: dict[str, list[float]], name: str, work: Callable[[], object]) -> None:
    """Run WORK, adding its wall time to ``steps[name]``."""
    started = time.perf_counter()
    work()
    steps.setdefault(name, []).append(time.perf_counter() - started)


def wait_running(procs_file: str, command: str = "sleep", timeout: float = 10) -> None:
    """Until a process of COMMAND is in the cgroup whose ``cgroup.procs`` is PROCS_FILE."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with open(procs_file) as f:
                pids = f.read().split()
            for pid in pids:
                with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == command:
                        return
        time.sleep(0.001)
    raise SystemExit(f"no {command} in {procs_file} after {timeout:g} s")


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A private directory under /var/tmp, removed at the end. Its name has only
    lowercase letters, digits and single dashes: podman names an ``oci:`` image after
    its path, and refuses one with ``_`` or ``-_`` in it (which tempfile's names can
    have)."""
    path = Path("/var/tmp") / f"bench-pods-{uuid.uuid4().hex}"
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class ProvisionerCycle:
    """``apply`` + ``destroy`` of the pod with the CLI: on this machine, or through a
    daemon (``target``)."""

    def __init__(self, tmp: Path, image: str, cli: str, cgroup_root: str,
                 target: str | None) -> None:
        self.name = "bench"
        self.manifest = tmp / f"pod-{cgroup_root}.yaml"
        self.manifest.write_text(POD.format(name=self.name, image=image))
        self.where = (["--target", target] if target else
                      ["--state-dir", str(tmp / f"state-{cgroup_root}"),
                       "--cgroup-root", cgroup_root])
        self.cli = cli
        self.procs = f"/sys/fs/cgroup/pids/{cgroup_root}/_x.{self.name}.box/ctr/cgroup.procs"

    def cycle(self, steps: dict[str, list[float]]) -> None:
        """One apply + destroy, its steps timed."""
        timed(steps, "apply", lambda: run([self.cli, "apply", str(self.manifest),
                                           *self.where], "apply"))
        timed(steps, "until running", lambda: wait_running(self.procs))
        timed(steps, "destroy", lambda: run([self.cli, "destroy", str(self.manifest),
                                             *self.where], "destroy"))


class PodmanCycle:
    """``podman run -d`` + ``podman rm -f -t 0`` of the same image."""

    def __init__(self, layout: str) -> None:
        out = run(["podman", "pull", "-q", f"oci:{layout}:latest"], "loading the image")
        self.image = out.strip().splitlines()[-1]
        self.count = 0

    def cycle(self, steps: dict[str, list[float]]) -> None:
        """One run + rm, its steps timed."""
        self.count += 1
        name = f"bench-pods-{os.getpid()}-{self.count}"
        timed(steps, "run -d", lambda: run(
            ["podman", "run", "-d", "--name", name, "--network", "none",
             "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
             self.image, "sleep", "3600"], "podman run"))
        timed(steps, "rm -f", lambda: run(["podman", "rm", "-f", "-t", "0", name],
                                          "podman rm"))

    def close(self) -> None:
        """Remove what the benchmark left in podman's storage."""
        subprocess.run(["podman", "rm", "-af", "-t", "0"], capture_output=True, check=False)
        subprocess.run(["podman", "rmi", "-f", self.image], capture_output=True, check=False)


class RuncCycle:
    """Bare ``runc run -d`` + ``kill`` + ``delete`` of a bundle with a plain root."""

    def __init__(self, tmp: Path) -> None:
        self.bundle = tmp / "runc-bundle"
        self.root = tmp / "runc-root"
        rootfs = self.bundle / "rootfs"
        rootfs.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(busybox_layer())) as tar:
            tar.extractall(rootfs, filter="tar")
        run(["runc", "spec", "--bundle", str(self.bundle)], "runc spec")
        config_file = self.bundle / "config.json"
        config = json.loads(config_file.read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = ["sleep", "3600"]
        config_file.write_text(json.dumps(config))
        self.runc = ["runc", "--root", str(self.root)]
        self.count = 0

    def cycle(self, steps: dict[str, list[float]]) -> None:
        """One run -d + kill + delete, its steps timed."""
        self.count += 1
        ident = f"bench-pods-{os.getpid()}-{self.count}"
        # (the container inherits runc's stdio: no pipe, or reading it never ends)
        timed(steps, "run -d", lambda: subprocess.run(
            [*self.runc, "run", "-d", "--bundle", str(self.bundle), ident],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=True))
        timed(steps, "kill + delete", lambda: (
            run([*self.runc, "kill", ident, "KILL"], "runc kill"),
            run([*self.runc, "delete", "--force", ident], "runc delete")))

    def close(self) -> None:
        """Delete any container left (a failed round)."""
        with contextlib.suppress(SystemExit):
            listed = json.loads(run([*self.runc, "list", "--format", "json"], "runc list")
                                or "null") or []
            for ctr in listed:
                subprocess.run([*self.runc, "delete", "--force", ctr["id"]],
                               capture_output=True, check=False)


@contextlib.contextmanager
def daemon(python: str, tmp: Path, cgroup_root: str) -> Iterator[str]:
    """A node daemon on a temporary unix socket, its target; stopped (and its pods and
    cgroups removed) at the end."""
    sock = tmp / "d.sock"
    state = tmp / f"state-{cgroup_root}"
    proc = subprocess.Popen(
        [python, "-m", "provisioner", "daemon", "--socket", str(sock), "--state-dir",
         str(state), "--cgroup-root", cgroup_root, "--stop-on-exit"], env=ENV,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([python, "-m", "provisioner", "status", "--target",
                              f"unix://{sock}"], capture_output=True, env=ENV,
                             check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the daemon did not start")
            time.sleep(0.1)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        tear_down(state, cgroup_root)


def tear_down(state: Path, cgroup_root: str) -> None:
    """Remove every pod, executable and cgroup of a node layer the benchmark used."""
    from provisioner.node.runtime.layer import NodeConfig, NodeLayer
    from provisioner.node.runtime.teardown import remove_everything

    if not state.exists():
        return
    layer = NodeLayer(NodeConfig(state_dir=str(state), cgroup_root=cgroup_root))
    try:
        remove_everything(layer)
    finally:
        layer.close()


def report(samples: Samples, rounds: int) -> bool:
    """Print the medians and ratios; whether the target is met."""
    totals = {name: statistics.median(sum(round_) for round_ in zip(*steps.values(),
                                                                    strict=True))
              for name, steps in samples.items()}
    print(f"one busybox pod, create + remove: medians of {rounds} interleaved rounds "
          "(wall ms)")
    print(f"  {'cycle':<10}{'total':>8}{'/ podman':>10}{'/ runc':>8}   steps")
    met = True
    for name, steps in samples.items():
        total = totals[name]
        vs_podman = f"{total / totals['podman']:10.2f}" if "podman" in totals else f"{'-':>10}"
        if name in ("local", "daemon") and "podman" in totals:
            met = met and total / totals["podman"] <= TARGET_RATIO
        parts = ", ".join(f"{step} {statistics.median(s) * 1000:.0f}"
                          for step, s in steps.items())
        print(f"  {name:<10}{total * 1000:8.0f}{vs_podman}{total / totals['runc']:8.2f}"
              f"   {parts}")
    if "podman" in totals:
        print(f"target (local and daemon <= {TARGET_RATIO} x podman) met: "
              f"{'yes' if met else 'NO'}")
    else:
        print("podman is not installed: no ratio against it (./dev bench installs it)")
    return met


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (1-100)")
    parser.add_argument("--only", action="append", choices=("local", "daemon", "podman",
                                                            "runc"),
                        help="run only these cycles (repeatable; runc always runs)")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 100:
        parser.error("--rounds: 1 to 100")
    if os.geteuid() != 0:
        print("pods: skipped (needs root: cgroups, mounts, runc)")
        return 0
    if shutil.which("runc") is None:
        print("pods: skipped (runc is not installed: ./dev setup)")
        return 0
    only = set(args.only or ("local", "daemon", "podman", "runc")) | {"runc"}
    if "podman" in only and shutil.which("podman") is None:
        only.discard("podman")
    tag = uuid.uuid4().hex[:6]
    with scratch_dir() as tmp, contextlib.ExitStack() as stack:
        installed = stack.enter_context(installed_copy(tmp))  # the CLI as a node has it
        cli = installed.cli
        image = build_busybox_layout(tmp / "busybox")
        cycles: dict[str, Callable[[dict[str, list[float]]], None]] = {}
        if "local" in only:
            local_root = f"bpl{tag}"
            stack.callback(tear_down, tmp / f"state-{local_root}", local_root)
            cycles["local"] = ProvisionerCycle(tmp, image, cli, local_root, None).cycle
        if "daemon" in only:
            daemon_root = f"bpd{tag}"
            target = stack.enter_context(daemon(installed.python, tmp, daemon_root))
            cycles["daemon"] = ProvisionerCycle(tmp, image, cli, daemon_root,
                                                target).cycle
        if "podman" in only:
            podman = PodmanCycle(image)
            stack.callback(podman.close)
            cycles["podman"] = podman.cycle
        bare = RuncCycle(tmp)
        stack.callback(bare.close)
        cycles["runc"] = bare.cycle
        for cycle in cycles.values():  # warm-up: page cache, bytecode, podman's storage
            cycle({})
        samples: Samples = {name: {} for name in cycles}
        for _ in range(args.rounds):
            for name, cycle in cycles.items():
                cycle(samples[name])
    report(samples, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
