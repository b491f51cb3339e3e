"""Hostile templates through the collection's modules, in real ``ansible-playbook`` runs.

``provisioner.node.manifest`` renders manifest files with the same sandboxed renderer as
the CLI (:func:`provisioner.manifest.load`): on the controller for ``src`` (the action
plugin), on the managed node for ``path``. Every hostile file fails the task with its
line, in apply and in check mode, and nothing runs or is created.
``provisioner.node.resource`` renders nothing: its values are data (Ansible's own
templating is the playbook's), so template text marked ``!unsafe`` reaches the node
layer as text and runs nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.ansible_content import template_names
from tests.ansible.harness import Play, play
from tests.hostile_templates import ALL, ESCAPES, PAYLOAD_LINE, manifest, write_hostile_set

__all__ = ["play"]
pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("where", ["src", "path"])
@pytest.mark.parametrize("flags", [(), ("--check",)])
def test_manifest_module_refuses_every_hostile_file_with_its_line(
        play: Play, flags: tuple[str, ...], where: str) -> None:
    hostile = write_hostile_set(play.tmp)
    folder = str(hostile.folder)
    run = play.tasks([{"name": "hostile", "provisioner.node.manifest": {
        where: folder if where == "src" else [folder], "manifest_set": "hostile"}}], *flags)
    assert (run.code, run.failed, run.changed) == (2, 1, 0), run.out
    assert "Traceback" not in run.out and "internal error" not in run.out
    [result] = run.results
    for path in hostile.files.values():
        assert f"{path}:{PAYLOAD_LINE}: template" in result["msg"], (path, result["msg"])
    assert not hostile.touched()
    assert not Path(play.state_dir).exists() or play.status() == {}


class Unsafe(str):
    """A string Ansible must not template (written as ``!unsafe``)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    Unsafe, lambda dumper, data: dumper.represent_scalar("!unsafe", str(data), style='"'))

#: One payload per class (each task costs about a second of Ansible).
ONE_PER_CLASS = ("str-mro-chain", "str-format-field", "global-lipsum", "global-cycler",
                 "global-joiner", "global-namespace", "global-range", "global-dict",
                 "include", "extends", "huge-range", "string-times", "nested-loops-output")


def test_resource_module_keeps_template_text_as_text(play: Play) -> None:
    marker = play.tmp / "marker"
    payloads = [manifest("x", ALL[name], marker).splitlines()[PAYLOAD_LINE - 1]
                [len('  labels: {x: "'):-2] for name in ONE_PER_CLASS]
    tasks: list[dict[str, Any]] = [
        {"name": f"executable e{index}", "provisioner.node.resource": {
            "kind": "Executable", "name": f"e{index}",
            "spec": {"command": Unsafe(payload), "env": {"P": Unsafe(payload)},
                     "stopGracePeriod": "1s"}}}
        for index, payload in enumerate(payloads)]
    tasks.append({"name": "label", "ignore_errors": True, "provisioner.node.resource": {
        "kind": "Cell", "name": "box",
        "labels": {"x": Unsafe(ESCAPES["global-cycler"].replace("{touch}", "'x'"))}}})
    path = play.tmp / "hostile-resources.yml"
    path.write_text(yaml.dump([{
        "hosts": "localhost", "gather_facts": False, "tasks": tasks,
        "module_defaults": {"group/provisioner.node.node": dict(play.node)}}], Dumper=_Dumper))
    run = play.playbook(str(path), "--check", "--diff")
    # Every executable would be created (check mode); the label is refused by the schema.
    assert (run.code, run.ok, run.changed, run.failed, run.ignored) == (
        0, len(payloads) + 1, len(payloads), 0, 1), run.out
    assert "metadata.labels.x:" in run.out and "Traceback" not in run.out
    assert "command: \"{% for c in ''.__class__.__mro__[1].__subclasses__()" in run.out
    assert not marker.exists()
    assert not Path(play.state_dir).exists() or play.status() == {}


def test_listing_a_templates_variables_evaluates_nothing() -> None:
    """The action plugin lists the names a template reads (to pass only those play
    variables) without folding constants: ``'x' * 10**12`` would take minutes and
    gigabytes outside the sandbox's limits."""
    text = "{{ 'x' * 10**12 }}{% for i in items %}{{ i ~ suffix }}{% endfor %}"
    assert {"items", "suffix"} <= template_names([("f.yaml", text)])
    assert template_names([("f.yaml", "{% include 'x' %")]) == set()  # syntax error
