"""Loading: templating, safety bounds, spelling equivalence, the model built."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.manifest import expand_paths, load
from provisioner.manifest.build import parse_duration
from provisioner.manifest.yamlsafe import MAX_FILE_BYTES
from provisioner.model import CellSpec, DriverSpec, ExecutableSpec, Kind, Ref, RestartPolicy

VALID = Path(__file__).parent / "valid"
CELL = "apiVersion: provisioner/v1\nkind: Cell\nmetadata:\n  name: {name}\n"


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_snake_and_camel_case_build_the_same_model() -> None:
    camel = load([str(VALID / "all-kinds-camel.yaml")])
    snake = load([str(VALID / "all-kinds-snake.yaml")])
    assert camel.ok and snake.ok
    strip = [r for r in camel.state.resources if r.kind is not Kind.DRIVER]
    assert strip == [r for r in snake.state.resources if r.kind is not Kind.DRIVER]


def test_model_values_and_defaults() -> None:
    result = load([str(VALID / "all-kinds-camel.yaml")])
    by_ref = result.state.by_ref()
    cell = by_ref[Ref(Kind.CELL, "app")]
    assert isinstance(cell, CellSpec)
    assert (cell.limits.cpu_weight, cell.limits.cpu_max_us) == (300, 250000)
    assert (cell.limits.cpuset_cpus, cell.isolate_process) == ("0-1", True)
    api = by_ref[Ref(Kind.EXECUTABLE, "api")]
    assert isinstance(api, ExecutableSpec)
    assert api.env == (("MODE", "prod"), ("RETRIES", "3"))
    assert api.restart_policy is RestartPolicy.ON_FAILURE
    assert api.stop_grace_s == 90.0
    assert api.depends_on == (Ref(Kind.CELL, "app"),)
    assert api.source.line == 11


def test_defaults_when_fields_are_absent(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "e.yaml",
        "apiVersion: provisioner/v1\nkind: Executable\n"
        "metadata: {name: e}\nspec: {command: 'true'}\n",
    )
    (spec,) = load([path]).state.resources
    assert isinstance(spec, ExecutableSpec)
    assert (spec.cell, spec.working_dir, spec.stop_grace_s) == ("", "/", 10.0)
    assert spec.restart_policy is RestartPolicy.NEVER


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10), ("500ms", 0.5), ("1m30s", 90), ("2h", 7200), ("1.5s", 1.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_billion_laughs_is_refused_fast(tmp_path: Path) -> None:
    text = (
        CELL.format(name="x")
        + "  annotations:\n    a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
    )
    for level in range(1, 12):
        text += f"    a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 10) + "]\n"
    path = write(tmp_path, "lol.yaml", text)
    started = time.perf_counter()
    result = load([path])
    elapsed = time.perf_counter() - started
    assert [i.message for i in result.issues] == [
        "document expands to more than 2000000 values (aliases expanding exponentially?)"
    ]
    assert elapsed < 0.5  # a safety bound, not a benchmark: it takes about a millisecond


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    (issue,) = load([str(path)]).issues
    assert "over the limit" in issue.message


def test_template_variables_from_cli_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "t.yaml", CELL.format(name="{{ prefix }}-{{ n }}"))
    vars_file = write(tmp_path, "v.yaml", "prefix: from-file\nn: 1\n")
    assert main(["validate", path, "--vars-file", vars_file, "--var", "n=7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] and out["resources"] == 1
    result = load([path], {"prefix": "from-file", "n": "7"})
    assert result.state.resources[0].name == "from-file-7"


def test_bad_var_syntax_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "c.yaml", CELL.format(name="web"))
    assert main(["validate", path, "--var", "no-equals-sign"]) == 64
    assert "--var expects NAME=VALUE" in capsys.readouterr().err
    assert main(["validate", path, "--vars-file", str(tmp_path / "missing.yaml")]) == 64


def test_plain_files_are_not_templated(tmp_path: Path) -> None:
    """Text that merely looks like Jinja inside a quoted string is still rendered, but a
    file without any marker keeps its exact text and line numbers."""
    path = write(
        tmp_path, "c.yaml", "\n\n" + CELL.format(name="web") + "spec: {cpu: {weight: 0}}\n"
    )
    (issue,) = load([path]).issues
    assert (issue.line, issue.path) == (7, "spec.cpu.weight")


def test_directory_expansion_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path, "sub/b.yml", CELL.format(name="b"))
    write(tmp_path, "a.yaml", CELL.format(name="a"))
    write(tmp_path, "notes.txt", "not a manifest")
    (tmp_path / ".hidden").mkdir()
    write(tmp_path, ".hidden/c.yaml", "garbage: [")
    result = load([str(tmp_path)])
    assert result.ok
    assert [r.name for r in result.state.resources] == ["a", "b"]
    missing = load([str(tmp_path / "nope.yaml")])
    assert [i.message for i in missing.issues] == ["no such file or directory"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no *.yaml" in load([str(empty)]).issues[0].message


@pytest.mark.parametrize("spelling", ["tree", "./tree//", "tree/../tree/", "{abs}/tree/"])
def test_files_found_in_a_folder_are_those_and_named_as_pathlib_found_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str) -> None:
    tree = tmp_path / "tree"
    for name in ("a.yaml", "sub/b.yml", "sub/deeper/c.yaml", "notes.txt", ".d.yaml",
                 ".hidden/e.yaml", "sub/.hidden/f.yaml", "elsewhere/g.yaml"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(CELL.format(name="x"))
    (tree / "folder.yaml").mkdir()
    (tree / "link.yaml").symlink_to(tree / "a.yaml")  # a linked file is found,
    (tree / "linked").symlink_to(tree / "elsewhere")  # a linked folder is not entered
    (tree / "broken.yaml").symlink_to(tree / "nothing")
    monkeypatch.chdir(tmp_path)
    given = spelling.format(abs=tmp_path)

    files, issues = expand_paths([given])

    # What the loader found with pathlib before it stopped importing it (start-up cost)
    was = sorted(str(p) for p in Path(given).rglob("*")
                 if p.suffix in (".yaml", ".yml") and p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(given).parts))
    assert issues == []
    assert files == was
    assert [os.path.relpath(f, tree) for f in files] == [
        "a.yaml", "elsewhere/g.yaml", "link.yaml", "sub/b.yml", "sub/deeper/c.yaml"]


def _expand_as_nobody(folder: str) -> tuple[list[str], list[str]]:
    """expand_paths([folder]) in a child that has dropped root (root reads past file
    modes): the files, and the issues rendered."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            files, issues = expand_paths([folder])
            os.write(write_end, json.dumps([files, [i.render() for i in issues]]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    files, rendered = json.loads(data)
    return files, rendered


def test_a_folder_that_cannot_be_read_is_an_issue_not_skipped() -> None:
    # A set that silently lacked a sub-folder's resources would lose them to --prune.
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    import shutil
    import tempfile

    top = tempfile.mkdtemp(prefix="prov-unreadable-")
    try:
        os.chmod(top, 0o755)
        for folder, mode in (("ok", 0o755), ("closed", 0o000), ("listed", 0o644)):
            os.mkdir(os.path.join(top, folder))
            with open(os.path.join(top, folder, "a.yaml"), "w") as f:
                f.write("apiVersion: provisioner/v1\n")
            os.chmod(os.path.join(top, folder), mode)
        files, issues = _expand_as_nobody(top)
    finally:
        for folder in ("closed", "listed"):
            os.chmod(os.path.join(top, folder), 0o755)
        shutil.rmtree(top)
    assert files == [f"{top}/ok/a.yaml"]
    assert sorted(issues) == [f"{top}/closed: cannot list this directory: Permission denied",
                              f"{top}/listed/a.yaml: cannot read: Permission denied"]


def test_a_drivers_source_is_spelt_as_before(tmp_path: Path) -> None:
    """Relative to the manifest's real folder, ``..`` kept: the spec compares equal to
    the one recorded by earlier versions (no spurious update)."""
    (tmp_path / "drivers").mkdir()
    (tmp_path / "drivers" / "raft.bin").write_bytes(b"raft")
    (tmp_path / "manifests").mkdir()
    (tmp_path / "here").symlink_to(tmp_path / "manifests")
    for source in ("../drivers//raft.bin", "./../drivers/./raft.bin/",
                   f"{tmp_path}//drivers/raft.bin"):
        manifest = write(tmp_path, "here/d.yaml", "apiVersion: provisioner/v1\nkind: Driver\n"
                         f"metadata: {{name: raft}}\nspec: {{version: v1, source: '{source}'}}\n")
        result = load([manifest])
        assert result.ok, result.issues
        (driver,) = result.state.resources
        assert isinstance(driver, DriverSpec)
        assert driver.source_path == str(Path(manifest).resolve().parent / source)


def test_errors_across_files_are_all_collected(tmp_path: Path) -> None:
    one = write(
        tmp_path,
        "1.yaml",
        CELL.format(name="web") + "---\n" + CELL.format(name="bad") + "spec: {cpu: {weight: 0}}\n",
    )
    two = write(tmp_path, "2.yaml", "kind: [")
    three = write(tmp_path, "3.yaml", CELL.format(name="web"))
    result = load([one, two, three])
    assert len(result.issues) == 3
    assert {Path(i.file).name for i in result.issues} == {"1.yaml", "2.yaml", "3.yaml"}


def test_json_output_lists_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path, "c.yaml", CELL.format(name="web") + "spec: {cpu: {weight: 0, max: -1}}\n"
    )
    assert main(["validate", "--json", path]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["format_version"] == 1 and out["valid"] is False
    assert [e["path"] for e in out["errors"]] == ["spec.cpu.weight", "spec.cpu.max"]
    assert out["errors"][0]["line"] == 5


def test_stdin_is_read_with_a_dash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import sys

    stdin = io.TextIOWrapper(io.BytesIO(CELL.format(name="web").encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["validate", "-"]) == 0
