"""Hostile templates through both Ansible modules, in real ``ansible-playbook`` runs.

``provisioner_manifest`` renders manifest files with the same sandboxed renderer as the
CLI (:func:`provisioner.manifest.load`): every hostile file fails the task with its line,
in apply and in check mode, and nothing runs or is created. ``provisioner_resource``
renders nothing: its values are data (Ansible's own templating is the playbook's), so
template text marked ``!unsafe`` reaches the node layer as text and runs nothing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.node.layer import NodeConfig, NodeLayer
from tests.ansible.test_module import REPO, VENV_BIN, Play
from tests.ansible.test_resource_module import RECAP_RE
from tests.conftest import tear_down
from tests.hostile_templates import (
    ALL,
    ESCAPES,
    PAYLOAD_LINE,
    manifest,
    write_hostile_set,
)

pytestmark = pytest.mark.kernel


@pytest.fixture
def play(tmp_path: Path) -> Iterator[Play]:
    if os.geteuid() != 0:
        pytest.skip("needs root, cgroups and namespaces")
    created = Play(tmp_path)
    try:
        yield created
    finally:
        tear_down(NodeLayer(NodeConfig(state_dir=created.state_dir,
                                       cgroup_root=created.root)))


@pytest.mark.parametrize("flags", [(), ("--check",)])
def test_manifest_module_refuses_every_hostile_file_with_its_line(
        play: Play, flags: tuple[str, ...]) -> None:
    hostile = write_hostile_set(play.tmp)
    play.src = hostile.folder
    run = play.run("apply.yml", *flags)
    assert (run.code, run.failed, run.changed) == (2, 1, 0), run.out
    assert "Traceback" not in run.out and "internal error" not in run.out
    for path in hostile.files.values():
        assert f'"{path}:{PAYLOAD_LINE}: template' in run.out, (path, run.out)
    assert "nothing was changed" in run.out
    assert not hostile.touched()
    assert not Path(play.state_dir).exists() or play.status() == {}


class Unsafe(str):
    """A string Ansible must not template (written as ``!unsafe``)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    Unsafe, lambda dumper, data: dumper.represent_scalar("!unsafe", str(data), style='"'))


def run_playbook(play: Play, tasks: list[dict[str, Any]], *flags: str) -> tuple[int, str]:
    path = play.tmp / "hostile-resources.yml"
    path.write_text(yaml.dump([{"hosts": "nodes", "gather_facts": False, "tasks": tasks,
                                "vars": {"ansible_python_interpreter":
                                         str(VENV_BIN / "python")}}], Dumper=_Dumper))
    done = subprocess.run([str(VENV_BIN / "ansible-playbook"), str(path), *flags], cwd=REPO,
                          env=play.env, capture_output=True, text=True, timeout=120,
                          check=False)
    return done.returncode, done.stdout + done.stderr


#: One payload per class (each task costs about a second of Ansible).
ONE_PER_CLASS = ("str-mro-chain", "str-format-field", "global-lipsum", "global-cycler",
                 "global-joiner", "global-namespace", "global-range", "global-dict",
                 "include", "extends", "huge-range", "string-times", "nested-loops-output")


def test_resource_module_keeps_template_text_as_text(play: Play) -> None:
    marker = play.tmp / "marker"
    payloads = [manifest("x", ALL[name], marker).splitlines()[PAYLOAD_LINE - 1]
                [len('  labels: {x: "'):-2] for name in ONE_PER_CLASS]
    tasks: list[dict[str, Any]] = [
        {"name": f"executable e{index}", "provisioner_resource": {
            "kind": "Executable", "name": f"e{index}", **play.node,
            "spec": {"command": Unsafe(payload), "env": {"P": Unsafe(payload)},
                     "stopGracePeriod": "1s"}}}
        for index, payload in enumerate(payloads)]
    tasks.append({"name": "label", "ignore_errors": True, "provisioner_resource": {
        "kind": "Cell", "name": "box", **play.node,
        "labels": {"x": Unsafe(ESCAPES["global-cycler"].replace("{touch}", "'x'"))}}})
    code, out = run_playbook(play, tasks, "--check", "--diff")
    recap = RECAP_RE.search(out)
    assert recap, out
    ok, changed, _, failed, ignored = (int(n) for n in recap.groups())
    # Every executable would be created (check mode); the label is refused by the schema.
    assert (code, ok, changed, failed, ignored) == (0, len(payloads) + 1, len(payloads),
                                                    0, 1), out
    assert "metadata.labels.x:" in out and "Traceback" not in out
    assert "command: \"{% for c in ''.__class__.__mro__[1].__subclasses__()" in out  # as text
    assert not marker.exists()
    assert not Path(play.state_dir).exists() or play.status() == {}
