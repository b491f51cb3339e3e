"""Hostile manifest templates, one per class of attack, shared by the tests that feed
them to every entry point (loader, CLI, daemon, Ansible modules).

Each payload sits on line :data:`PAYLOAD_LINE` of an otherwise valid Cell manifest. A
payload that reached Python would run ``touch <marker>``; the tests assert that every
file is refused with that line and that no marker exists afterwards.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

#: The line of every manifest that holds the payload.
PAYLOAD_LINE = 5
_MANIFEST = ("apiVersion: provisioner/v1\nkind: Cell\nmetadata:\n  name: {name}\n"
             "  labels: {{x: \"{payload}\"}}\n")

#: The touch command, written as the payloads need it: ``{touch}`` is replaced by
#: ``'touch /path/of/marker'`` (a quoted Jinja string).
_TOUCH = "{touch}"

#: The class whose ``__init__`` globals hold ``popen`` (os._wrap_close), found by name.
_WRAP_CLOSE = ("{% for c in START.__subclasses__() %}{% if c.__name__ == '_wrap_close' %}"
               "{{ c.__init__.__globals__['popen'](" + _TOUCH + ").read() }}{% endif %}"
               "{% endfor %}")


def _from(start: str) -> str:
    return _WRAP_CLOSE.replace("START", start)


#: Each of these runs ``touch`` in a plain ``jinja2.Environment`` (the renderer before
#: the sandbox); tests/manifests/test_template_sandbox.py checks that they still would.
ESCAPES: dict[str, str] = {
    # attribute chains from a string, through every spelling of attribute access
    "str-mro-chain": _from("''.__class__.__mro__[1]"),
    "str-getitem-chain": _from("''['__class__']['__mro__'][1]"),
    "str-attr-filter": _from("(''|attr('__class__')).__base__"),
    "str-format-field": "{{ '{0.__class__.__mro__[1].__subclasses__}'.format('') }}",
    # every global of a plain Jinja environment
    "global-lipsum": "{{ lipsum.__globals__['os'].popen(" + _TOUCH + ").read() }}",
    "global-cycler": "{{ cycler.__init__.__globals__.os.popen(" + _TOUCH + ").read() }}",
    "global-joiner": "{{ joiner.__init__.__globals__.os.popen(" + _TOUCH + ").read() }}",
    "global-namespace": "{{ namespace.__init__.__globals__.os.popen(" + _TOUCH + ").read() }}",
    "global-range": _from("range.__mro__[1]"),
    "global-dict": _from("dict.mro()[1]"),
    # objects a template makes itself
    "template-self": "{{ self._TemplateReference__context.environment.globals.update }}",
    "loop-object": "{% for i in [1] %}{{ loop.__class__.__init__.__globals__['__builtins__']"
                   "['__import__']('os').popen(" + _TOUCH + ").read() }}{% endfor %}",
    "macro-object": "{% macro m() %}{% endmacro %}{{ m._func.__globals__['__builtins__']"
                    "['__import__']('os').popen(" + _TOUCH + ").read() }}",
    "namespace-object": "{% set ns = namespace() %}{{ ns.__class__.__init__.__globals__['os']"
                        ".popen(" + _TOUCH + ").read() }}",
    "int-to-bytes": "{{ (1).to_bytes(10**8, 'big')|length }}",
    "str-encode": "{{ 'a'.encode() }}",
    "str-translate": "{{ 'a'.translate({97: 'b'}) }}",
}
#: The ESCAPES that run a command in a plain environment (the others read or build
#: what they must not, without a command).
RUN_COMMANDS = frozenset(name for name, payload in ESCAPES.items() if _TOUCH in payload)
FILE_TAGS: dict[str, str] = {
    "include": "{% include '/etc/passwd' %}",
    "import": "{% import '/etc/passwd' as p %}",
    "from-import": "{% from '/etc/passwd' import x %}",
    "extends": "{% extends '/etc/passwd' %}",
}
#: Payloads refused by a size bound (fast).
SIZES: dict[str, str] = {
    "huge-range": "{% for i in range(10**9) %}{% endfor %}",
    "string-times": "{{ 'x' * 10**9 }}",
    "list-times": "{{ [0] * 10**9 }}",
    "power": "{{ 10 ** (10 ** 10) }}",
    "big-int-times": "{{ (10 ** 1000) * (10 ** 1000) }}",
    "padding-filter": "{{ 'x'|center(10**9) }}",
    "padding-method": "{{ 'x'.ljust(10**9) }}",
    "printf-width": "{{ '%999999999d'|format(1) }}",
    "format-width": "{{ '{:>999999999}'.format(1) }}",
    "replace-empty": "{{ ('x' * 1000000)|replace('', 'y' * 1000) }}",
    "join-shared": "{{ ['x' * 1000000] * 1000 | join }}",
    "shared-lists": "{% set a = ['xxxxxxxxxx'] * 10 %}{% set b = [a] * 10 %}"
                    "{% set c = [b] * 10 %}{% set d = [c] * 10 %}{% set e = [d] * 10 %}"
                    "{% set f = [e] * 10 %}{% set g = [f] * 10 %}{% set h = [g] * 10 %}{{ h }}",
    "doubling-concat": "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "sum-of-lists": "{{ [[1] * 1000] * 1000 | sum(start=[]) }}",
    "batch-parts": "{{ [1]|batch(10**9, 0)|list }}",
    "endless-macro": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "output-size": "{% for i in range(10000) %}{{ 'x' * 2000 }}{% endfor %}",
}
#: Payloads stopped by the 2 s deadline (each takes that long).
TIMES: dict[str, str] = {
    "nested-loops-output": "{% for i in range(10000) %}{% for j in range(10000) %}x"
                           "{% endfor %}{% endfor %}",
    "nested-loops-silent": "{% set l = range(10000)|list %}{% for i in l %}{% for j in l %}"
                           "{% endfor %}{% endfor %}",
}
ALL: dict[str, str] = {**ESCAPES, **FILE_TAGS, **SIZES, **TIMES}


@dataclass(frozen=True)
class HostileSet:
    """A folder of hostile manifests (one per payload) and the marker they aim at."""

    folder: Path
    marker: Path
    files: dict[str, Path]

    def touched(self) -> bool:
        return self.marker.exists()


def manifest(name: str, payload: str, marker: Path) -> str:
    touch = repr(f"touch {marker}")
    return _MANIFEST.format(name=name, payload=payload.replace(_TOUCH, touch))


def write_hostile_set(tmp: Path, payloads: dict[str, str] | None = None) -> HostileSet:
    """One manifest per payload in ``tmp/hostile``; the marker is unique to this call."""
    folder = tmp / "hostile"
    folder.mkdir()
    marker = Path("/tmp") / f"provisioner-pwned-{uuid.uuid4().hex}"
    files = {}
    for index, (name, payload) in enumerate(sorted((payloads or ALL).items())):
        path = folder / f"{name}.yaml"
        path.write_text(manifest(f"c{index}", payload, marker))
        files[name] = path
    return HostileSet(folder, marker, files)


def assert_every_file_refused_at_its_line(messages: list[str], hostile: HostileSet) -> None:
    """Each file has an error ``FILE:LINE: ...`` at the payload's line."""
    for name, path in hostile.files.items():
        prefix = f"{path}:{PAYLOAD_LINE}"
        assert any(m.startswith(prefix) for m in messages), (name, messages)
    assert not hostile.touched(), f"a payload ran a command: {hostile.marker} exists"
