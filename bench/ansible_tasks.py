#!/usr/bin/env python3
"""What one provisioner.node.resource task costs against Ansible's own per-task cost.

One ``ansible-playbook`` run (connection local, the virtualenv's Python) of N no-op
``provisioner.node.resource`` tasks (the cell exists already, so each plans nothing and
changes nothing) interleaved with N ``ansible.builtin.command: true`` tasks (true, no-op,
true, no-op...), so that both kinds see the same load of a shared machine (two separate
runs, as until issue #14's module work, could differ by 2x from load alone). A callback
plugin next to the playbook records each task's wall time (task start to result), and
the median per task of each kind is printed with their ratio. The node is private: a
temporary state directory and a unique cgroup root (acting on this machine directly, no
daemon).

    python bench/ansible_tasks.py [--tasks 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import yaml

from provisioner.node.runtime.layer import NodeConfig, NodeLayer
from provisioner.node.runtime.teardown import remove_everything

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

#: A callback plugin (loaded from callback_plugins/ next to the playbook) that writes
#: each task's name and wall time to $TIMINGS_FILE.
CALLBACK = '''
import json, os, time
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timings"
    CALLBACK_NEEDS_ENABLED = False

    def __init__(self):
        super().__init__()
        self.started, self.times = None, []

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.started = (task.get_name(), time.perf_counter())

    def _done(self, result):
        name, started = self.started
        self.times.append([name, time.perf_counter() - started])

    v2_runner_on_ok = v2_runner_on_failed = _done

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["TIMINGS_FILE"], "w") as out:
            json.dump(self.times, out)
'''


def run(tmp: Path, name: str, tasks: list[dict[str, object]]) -> list[tuple[str, float]]:
    folder = tmp / name
    (folder / "callback_plugins").mkdir(parents=True)
    (folder / "callback_plugins" / "task_timings.py").write_text(CALLBACK)
    playbook = folder / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False,
                                         "tasks": tasks}], sort_keys=False))
    timings = folder / "timings.json"
    # Bytecode is written and used as an installed package's would be (start-up is most
    # of a no-op task's cost), whatever PYTHONDONTWRITEBYTECODE says.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ANSIBLE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO), TIMINGS_FILE=str(timings),
               ANSIBLE_HOME=str(folder / "ansible-home"))
    subprocess.run([str(VENV_BIN / "ansible-playbook"), str(playbook), "-i", "localhost,",
                    "-c", "local", "-e", f"ansible_python_interpreter={VENV_BIN / 'python'}"],
                   cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL)
    return [(task, float(seconds)) for task, seconds in json.loads(timings.read_text())]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (cgroups)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-ansible-") as tmp_name:
        tmp = Path(tmp_name)
        config = NodeConfig(state_dir=str(tmp / "state"),
                            cgroup_root=f"pbench-{uuid.uuid4().hex[:8]}")
        node = {"state_dir": config.state_dir, "cgroup_root": config.cgroup_root}
        cell = {"kind": "Cell", "name": "bench", "spec": {"cpu": {"weight": 100}}, **node}
        try:
            tasks: list[dict[str, object]] = [
                {"name": "create", "provisioner.node.resource": cell}]
            for i in range(args.tasks):
                tasks += [{"name": f"true {i}", "ansible.builtin.command": "true"},
                          {"name": f"noop {i}", "provisioner.node.resource": cell}]
            timings = run(tmp, "interleaved", tasks)
        finally:
            layer = NodeLayer(config)
            try:
                remove_everything(layer)
            finally:
                layer.close()
    noop = statistics.median(t for name, t in timings if name.startswith("noop"))
    baseline = statistics.median(t for name, t in timings if name.startswith("true"))
    print(f"provisioner.node.resource no-op task: median {noop:.3f} s "
          f"({args.tasks} tasks)")
    print(f"ansible.builtin.command true task:    median {baseline:.3f} s "
          f"({args.tasks} tasks, interleaved with those in one ansible-playbook run)")
    print(f"ratio resource / command: {noop / baseline:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
