"""The import rules (``[tool.importlinter]`` in pyproject.toml, run by ``./dev lint``):
the tree keeps them, and a copy of the package with one forbidden import breaks them,
naming that import. Also: the package's module graph has no import cycle at all."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on the package under ``root`` with ``root``'s pyproject.toml
    (the folder comes first on the import path, before the installed package)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def copy_of_the_package(dest: Path) -> Path:
    """A copy of ``provisioner/`` and pyproject.toml under ``dest`` (which is returned)."""
    shutil.copytree(REPO / "provisioner", dest / "provisioner",
                    ignore=shutil.ignore_patterns("__pycache__", "provisioner-shim*"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_tree_keeps_every_import_rule() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout
    assert "BROKEN" not in result.stdout


# (file to edit, line to append, the contract that must break, what the report must name)
CASES = {
    "upward: the compiler imports the daemon": (
        "plan/compiler.py", "import provisioner.daemon",
        "The package's layers", "provisioner.plan.compiler -> provisioner.daemon"),
    "upward inside the node layer: cgroups imports the runtime": (
        "node/cgroups/tree.py", "import provisioner.node.runtime.layer",
        "The node layer's rooms",
        "provisioner.node.cgroups.tree -> provisioner.node.runtime.layer"),
    "a room imported from outside the node layer": (
        "executors/local.py", "import provisioner.node.process.logs",
        "only the facade provisioner.node is imported",
        "provisioner.executors.local -> provisioner.node.process.logs"),
    "a lower room writes the store": (
        "node/process/leaf.py", "import provisioner.node.state.store",
        "Only the runtime room imports the store",
        "provisioner.node.process.leaf -> provisioner.node.state.store"),
    "protobuf in the plan compiler": (
        "plan/steps.py", "import provisioner._proto.meta.meta_pb2",
        "Generated code (_proto)", "provisioner.plan.steps -> provisioner._proto.meta.meta_pb2"),
    "a cycle between two base modules": (
        "model.py", "import provisioner.state",
        "No import cycle", "provisioner.model -> provisioner.state"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_forbidden_import_breaks_its_rule_and_is_named(tmp_path: Path, case: str) -> None:
    relative, line, contract, named = CASES[case]
    root = copy_of_the_package(tmp_path)
    target = root / "provisioner" / relative
    target.write_text(target.read_text() + f"\n{line}  # added by tests/test_layering.py\n")

    result = lint_imports(root)

    assert result.returncode != 0, result.stdout
    broken = [row for row in result.stdout.splitlines() if " BROKEN" in row]
    assert [row for row in broken if contract in row], result.stdout
    report = result.stdout.replace("\n   ", " ")  # long chains wrap
    if "No import cycle" in contract:  # the cycle is named by the packages it joins
        assert ".model -> .state" in report or ".state -> .model" in report, report
    else:
        assert named in report, report


def test_a_new_top_level_module_must_be_given_a_layer(tmp_path: Path) -> None:
    root = copy_of_the_package(tmp_path)
    (root / "provisioner" / "newcomer.py").write_text('"""Not yet placed."""\n')
    result = lint_imports(root)
    assert result.returncode != 0, result.stdout
    assert "provisioner.newcomer" in result.stdout


def import_cycles(modules: Iterable[str],
                  imports_of: Mapping[str, Iterable[str]] | None = None,
                  graph: grimp.ImportGraph | None = None) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative):
    each is a set of modules that import one another in a circle."""
    def direct(module: str) -> Iterable[str]:
        if graph is not None:
            return sorted(graph.find_modules_directly_imported_by(module))
        assert imports_of is not None
        return imports_of.get(module, ())

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(direct(start)))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(direct(child))))
                    break
                if child in on_stack:
                    low[module] = min(low[module], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == module:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    imports = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["e2"], "e2": ["e"]}
    assert sorted(import_cycles(imports, imports)) == [["a", "b", "c"], ["e", "e2"]]
    assert import_cycles(["x", "y"], {"x": ["y"]}) == []


def test_the_package_has_no_import_cycle_at_all() -> None:
    # The acyclic_siblings contract compares siblings only; this also sees a cycle through
    # a package's own __init__ (a room importing the facade that loads it, say). Imports
    # under TYPE_CHECKING and inside functions count, as they do for import-linter.
    graph = grimp.build_graph("provisioner", cache_dir=None)
    assert import_cycles(graph.modules, graph=graph) == []
