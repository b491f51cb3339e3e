"""Property tests of the loader and validator: whatever the input, the answer is
"valid" or errors that each name a file and line (CLI exit 2) — never a traceback, an
internal error, a command run or a file touched.

Bounded example counts in ``./dev test`` (profile ``ci``), many more in ``./dev fuzz``
(profile ``fuzz``); see tests/fuzz/conftest.py.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.cli import main
from provisioner.manifest import load
from provisioner.manifest.from_data import validate_data
from provisioner.manifest.template_limits import MAX_RENDER_SECONDS
from tests.fuzz.manifest_strategies import documents

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").rglob("*.yaml"))
EXAMPLE_BYTES = [path.read_bytes() for path in EXAMPLES]
MARKER = Path("/tmp") / f"provisioner-fuzz-{uuid.uuid4().hex}"
# (Hypothesis warns when a failing input is large to print; it is printed anyway.)
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
#: The cheap properties get three times the profile's examples.
MORE = settings(max_examples=3 * settings().max_examples)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A temporary folder, checked unchanged (names, sizes, times) on the way out."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as name:
        yield Path(name)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def validate_cli(path: Path) -> tuple[int, list[str]]:
    """``provisioner validate PATH`` in-process: exit code and stderr lines."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    return code, err.getvalue().split("\n")[:-1]  # (str.splitlines splits at \x1e too)


def assert_valid_or_located(path: Path) -> None:
    before = snapshot(path.parent)
    code, lines = validate_cli(path)
    assert code in (0, 2), lines
    if code == 2:
        *issues, summary = lines
        assert summary.startswith("invalid: "), lines
        for line in issues:
            where = line[len(str(path)) + 1:].split(":", 1)[0]
            assert line.startswith(f"{path}:") and where.isdigit() and int(where) >= 1, line
    assert snapshot(path.parent) == before
    assert not MARKER.exists()


def mutate(original: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    data = bytearray(original)
    for position, action, value in edits:
        at = position % (len(data) + 1)
        if action == 0:
            data[at:at + 1] = bytes([value])
        elif action == 1:
            data.insert(at, value)
        else:
            del data[at:at + 1 + value % 8]
    return bytes(data)


mutated_examples = st.builds(
    mutate, st.sampled_from(EXAMPLE_BYTES),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 2), st.integers(0, 255)),
             min_size=1, max_size=6))


@MORE
@given(st.one_of(st.binary(max_size=3000), mutated_examples))
def test_arbitrary_bytes_are_valid_or_refused_with_a_line(data: bytes) -> None:
    with scratch() as folder:
        path = folder / "m.yaml"
        path.write_bytes(data)
        assert_valid_or_located(path)


# -- templates built from pieces of Jinja, hostile ones included ------------------------

_LEAVES = ["1", "7", "100", "9999", "10**9", "-3", "'x'", "'%s'", "'{}'", "''", "[1, 'a']",
           "{'a': 1}", "ns", "ns.a", "range", "dict", "lipsum", "cycler", "joiner",
           "namespace", "x", "loop", "self", repr(f"touch {MARKER}")]
_OPERATORS = [" * ", " ** ", " + ", " ~ ", " % ", " - ", " // ", " / ", " == ", " in "]
_ATTRIBUTES = [".__class__", ".__globals__", ".__init__", ".__mro__", ".__subclasses__",
               ".__builtins__", ".os", ".popen", ".read", ".mro", ".upper", ".join",
               ".format", ".items", ".encode", ".ljust", "[0]", "['__class__']", ".a"]
_FILTERS = ["join", "center", "format", "list", "sum", "replace", "indent", "batch", "string",
            "tojson", "length", "upper", "attr", "random", "map", "int", "default"]

expressions = st.recursive(
    st.sampled_from(_LEAVES),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(_OPERATORS), inner).map(lambda t: f"({''.join(t)})"),
        st.tuples(inner, st.sampled_from(_ATTRIBUTES)).map("".join),
        st.tuples(inner, st.lists(inner, max_size=2)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(inner, st.sampled_from(_FILTERS), st.lists(inner, max_size=2)).map(
            lambda t: f"({t[0]}|{t[1]}({', '.join(t[2])}))"),
    ),
    max_leaves=8,
)
_STATEMENTS = ["{{{{ {0} }}}}", "{{% for x in {0} %}}{{{{ {1} }}}}{{% endfor %}}",
               "{{% set ns = namespace(a={0}) %}}", "{{% set ns.a = {0} %}}",
               "{{% if {0} %}}a{{% else %}}{{{{ {1} }}}}{{% endif %}}",
               "{{% macro m(n) %}}{{{{ {0} }}}}{{% endmacro %}}{{{{ m({1}) }}}}",
               "{{% include {0} %}}", "{{% extends {0} %}}", "{{% import {0} as y %}}",
               "{{{{ {0} }}", "{{% for %}}", "{{# {0}"]
statements = st.tuples(st.sampled_from(_STATEMENTS), expressions, expressions).map(
    lambda t: t[0].format(t[1], t[2]))


@MORE
@given(st.lists(statements, min_size=1, max_size=4))
def test_templates_are_valid_or_refused_with_a_line_and_run_nothing(
        parts: list[str]) -> None:
    text = ("apiVersion: provisioner/v1\nkind: Cell\nmetadata:\n  name: a\n"
            "  annotations: {x: '" + "".join(parts).replace("'", "''") + "'}\n")
    with scratch() as folder:
        path = folder / "m.yaml"
        path.write_text(text)
        started = time.thread_time()
        assert_valid_or_located(path)
        assert time.thread_time() - started < MAX_RENDER_SECONDS + 2


# -- documents shaped like manifests --------------------------------------------------

def _dump(docs: list[Any]) -> str:
    return yaml.safe_dump_all(docs, allow_unicode=True, sort_keys=False)


@given(documents)
def test_manifest_shaped_files_are_valid_or_refused_with_a_line(docs: list[Any]) -> None:
    with scratch() as folder:
        path = folder / "m.yaml"
        path.write_text(_dump(docs), encoding="utf-8", errors="surrogatepass")
        before = snapshot(folder)
        result = load([str(path)])
        assert all(issue.line >= 1 for issue in result.issues), result.issues
        assert result.ok or result.issues
        assert snapshot(folder) == before
        assert_valid_or_located(path)


@given(documents)
def test_manifest_shaped_requests_are_valid_or_refused_with_a_line(docs: list[Any]) -> None:
    """The daemon's and provisioner_resource's path: documents as data (run in an empty
    working directory, which stays empty: /tmp itself is shared with other tests)."""
    with scratch() as folder, contextlib.chdir(folder):
        result = validate_data(docs)
        assert all(issue.line >= 1 for issue in result.issues), result.issues
        if result.ok:
            assert len(result.state.resources) == len(docs)
        assert snapshot(folder) == {}
