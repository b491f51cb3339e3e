"""The template sandbox through the loader: hostile templates are refused with their
line and run nothing; ordinary templating still works; file-level bounds have lines."""

from __future__ import annotations

import io
import sys
import time
import uuid
from pathlib import Path

import jinja2
import pytest

from provisioner.cli import main
from provisioner.manifest import load
from provisioner.manifest.template import render
from provisioner.manifest.template_limits import MAX_RENDER_SECONDS
from provisioner.manifest.yamlsafe import MAX_FILE_BYTES
from tests.hostile_templates import (
    ALL,
    ESCAPES,
    PAYLOAD_LINE,
    RUN_COMMANDS,
    TIMES,
    manifest,
    write_hostile_set,
)


@pytest.mark.parametrize("name", sorted(ALL))
def test_hostile_template_is_refused_at_its_line(tmp_path: Path, name: str) -> None:
    hostile = write_hostile_set(tmp_path, {name: ALL[name]})
    started = time.thread_time()  # CPU time: the machine may be busy
    result = load([str(hostile.folder)])
    took = time.thread_time() - started
    assert [(i.line, i.message.startswith("template")) for i in result.issues] == [
        (PAYLOAD_LINE, True)], result.issues
    assert not hostile.touched()
    assert took < (MAX_RENDER_SECONDS + 1.5 if name in TIMES else 1.5), took
    if name in TIMES:
        assert "rendering took longer than 2 s" in result.issues[0].message


@pytest.mark.parametrize("name", sorted(RUN_COMMANDS))
def test_the_escapes_are_real_a_plain_environment_runs_them(name: str) -> None:
    """The control: in the renderer used before the sandbox (a plain Environment) each
    of these payloads runs ``touch``, so the tests above would catch a weak sandbox."""
    marker = Path("/tmp") / f"provisioner-control-{uuid.uuid4().hex}"
    try:
        plain = jinja2.Environment(undefined=jinja2.StrictUndefined)
        plain.from_string(manifest("a", ESCAPES[name], marker)).render()
        assert marker.exists()
    finally:
        marker.unlink(missing_ok=True)


@pytest.mark.parametrize(("template", "message"), [
    ("{% include 'x' %}", "{% include %} is not allowed"),
    ("{{ range(10001)|list }}", "range() of 10,001 items is over the limit of 10,000"),
    ("{{ lipsum() }}", "'lipsum' is not available in manifest templates"),
    ("{{ 'x'|random }}", "No filter named 'random'"),
    ("{{ 'x' * 10**9 }}", "'*' would build a value of 1,000,000,000 characters"),
    ("{{ 2 ** 5000 }}", "'**' would produce an integer of about 5,000 bits"),
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
])
def test_messages_say_what_was_refused(template: str, message: str) -> None:
    with pytest.raises(Exception) as caught:
        render("m.yaml", f"a: 1\nb: {template}\n", {})
    assert str(caught.value).startswith("m.yaml:2: template")
    assert message in str(caught.value)


def test_include_is_exit_2_not_an_internal_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before the sandbox: "internal error: TypeError: no loader ..." and exit 1."""
    path = tmp_path / "m.yaml"
    path.write_text("a: 1\n{% include 'other.yaml' %}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: template error: {{% include %}} is not allowed" in err
    assert "internal error" not in err


def test_ordinary_templates_still_render() -> None:
    text = (
        "{% set ns = namespace(total=0) %}"
        "{% macro port(n) %}{{ 8000 + n }}{% endmacro %}"
        "{% for name in names|sort %}{% set ns.total = ns.total + loop.index %}"
        "{{ name|upper }}={{ port(loop.index) }} {% endfor %}\n"
        "{{ ns.total }} {{ '%03d'|format(7) }} {{ '{}-{}'.format('a', 1) }} "
        "{{ names|join(',') }} {{ {'k': 'v'}|tojson }} {{ dict(a=1).items()|list }} "
        "{{ 'x' ~ 2 ~ 'y' }} {{ 'a b'.split()|length }} {{ range(3)|sum }} "
        "{{ 2 ** 10 }} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ 'p'.rjust(3, '.') }} "
        "{{ 'l1\nl2'|indent(2) }} {{ missing|default('dflt') }}\n"
    )
    out = render("m.yaml", text, {"names": ["web", "api"]})
    assert out == ("API=8001 WEB=8002 \n3 007 a-1 web,api {\"k\": \"v\"} [('a', 1)] x2y 2 3 "
                   "1024 abab [1, 2] ..p l1\n  l2 dflt\n")


def test_the_limits_are_not_too_tight(tmp_path: Path) -> None:
    """A loop of 10,000 resources (the range limit) renders, well under the deadline."""
    path = tmp_path / "many.yaml"
    path.write_text("{% for i in range(10000) %}---\napiVersion: provisioner/v1\nkind: Cell\n"
                    "metadata:\n  name: c{{ i }}\n{% endfor %}")
    started = time.thread_time()  # CPU time: the machine may be busy
    result = load([str(path)])
    assert result.ok, result.issues[:3]
    assert len(result.state.resources) == 10000
    assert time.thread_time() - started < 10  # validation of 10,000 documents included


def test_variable_values_never_appear_in_errors() -> None:
    secrets = {"token": "s3cr3t-t0ken-value", "nested": {"pw": ["hunter2hunter2"]}}
    for template in ("{{ {}[token] }}", "{{ {}[nested.pw[0]].x }}",
                     "{{ (token ~ nested.pw[0])|int + {} }}", "{{ token.__class__ }}"):
        with pytest.raises(Exception) as caught:
            render("m.yaml", f"a: {template}\n", secrets)
        message = str(caught.value)
        assert message.startswith("m.yaml:1: template"), message
        assert "s3cr3t" not in message and "hunter2" not in message, message


def test_a_nul_byte_is_refused_at_its_line_and_column(tmp_path: Path) -> None:
    """Before: "invalid YAML: unacceptable character #x0000" without a line."""
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: a\0b}\n")
    (issue,) = load([str(path)]).issues
    assert (issue.line, issue.column) == (3, 19)
    assert issue.render().startswith(f"{path}:3:19: NUL character")


def test_an_oversized_file_is_refused_at_line_1(tmp_path: Path) -> None:
    """Before: "file is N bytes, over the limit" without a line."""
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    (issue,) = load([str(path)]).issues
    assert issue.render() == f"{path}:1: file is over the limit of 16,777,216 bytes"


def test_endless_stdin_is_read_only_to_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    class Endless(io.RawIOBase):
        read_bytes = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
            Endless.read_bytes += len(buffer)
            buffer[:] = b"#" * len(buffer)
            return len(buffer)

    fake = io.TextIOWrapper(io.BufferedReader(Endless()))
    monkeypatch.setattr(sys, "stdin", fake)
    (issue,) = load(["-"]).issues
    assert issue.render() == "-:1: file is over the limit of 16,777,216 bytes"
    assert Endless.read_bytes <= MAX_FILE_BYTES + 2 * io.DEFAULT_BUFFER_SIZE


@pytest.mark.parametrize(("text", "where", "message"), [
    ("a: 1\nb: x\x01y\n", ":2:5:", "character U+0001 is not allowed in YAML"),
    ("a: \u00e9\u00e9\nb: \ufffe\n", ":2:4:", "character U+FFFE is not allowed in YAML"),
])
def test_other_forbidden_characters_are_refused_at_their_place(
        tmp_path: Path, text: str, where: str, message: str) -> None:
    """Before: a multi-line 'invalid YAML ... position N' without a line (found by fuzzing)."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    (issue,) = load([str(path)]).issues
    assert issue.render().startswith(f"{path}{where} {message}"), issue


def test_a_kind_that_is_a_list_is_an_error_not_a_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: "internal error: TypeError: unhashable type: 'list'" (found by fuzzing)."""
    path = tmp_path / "k.yaml"
    path.write_text("apiVersion: provisioner/v1\nkind: []\nmetadata: {name: a}\n")
    assert main(["validate", str(path)]) == 2
    assert f"{path}:2:7: kind: unknown kind []" in capsys.readouterr().err


def test_control_characters_in_keys_are_printed_escaped(tmp_path: Path) -> None:
    path = tmp_path / "esc.yaml"
    path.write_text('apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: a, "\\e[2J": 1}\n')
    (issue,) = load([str(path)]).issues
    assert "\x1b" not in issue.render() and "\\x1b[2J" in issue.render()
