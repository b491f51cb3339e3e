"""Jinja2 templating of manifest files, before YAML parsing, in a sandbox.

A file is rendered only when it contains Jinja syntax, so plain YAML keeps its exact
line numbers. Undefined variables are errors (StrictUndefined) that name the variable
and the template line. Errors found later in a rendered file refer to lines of the
rendered text; with ``{% for %}`` loops these can differ from the source.

Templates run in :class:`provisioner.manifest.sandbox.ManifestSandbox`: they cannot
reach Python objects, read other files, or render for long or large (the limits are
in :mod:`provisioner.manifest.template_limits`). Every failure is a LoadError naming
the file and the template line; values of variables never appear in its message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import jinja2
import yaml

from provisioner.errors import LoadError, UsageError
from provisioner.manifest.sandbox import (
    REMOVED_GLOBALS,
    ManifestSandbox,
    guard_loops,
    refuse_file_access,
)
from provisioner.manifest.template_limits import (
    MAX_OUTPUT_CHARS,
    TemplateLimitExceeded,
    budget,
    end_budget,
    start_budget,
)

_JINJA_MARKERS = ("{{", "{%", "{#")
_UNDEFINED_NAME_RE = re.compile(r"'([^']+)' is undefined")
_MAX_MESSAGE = 300

_ENV = ManifestSandbox()


def needs_rendering(text: str) -> bool:
    """True when the text contains a Jinja marker (``{{``, ``{%``, ``{#``)."""
    return any(marker in text for marker in _JINJA_MARKERS)


def render(file: str, text: str, variables: Mapping[str, Any]) -> str:
    """Render ``text`` with ``variables``; errors name the file and template line."""
    if not needs_rendering(text):
        return text
    token = start_budget()  # before compiling: Jinja folds constants while compiling
    try:
        return _render(file, text, variables)
    except LoadError:
        raise
    except jinja2.TemplateSyntaxError as exc:
        message = exc.message or "invalid template"
        if message.startswith("No filter named"):
            message += " (not available in manifest templates)"
        raise LoadError(file, f"template syntax error: {_redact(message, variables, text)}",
                        exc.lineno) from None
    except jinja2.UndefinedError as exc:
        line = _template_line(exc.__traceback__, file)
        match = _UNDEFINED_NAME_RE.search(str(exc))
        if match and match.group(1) in REMOVED_GLOBALS and "attribute" not in str(exc):
            what = f"{match.group(1)!r} is not available in manifest templates (sandbox)"
        elif match and "attribute" not in str(exc):
            what = f"variable {match.group(1)!r} is undefined (pass it with --var or --vars-file)"
        else:
            what = str(exc)
        raise LoadError(file, f"template error: {_redact(what, variables, text)}", line) from None
    except jinja2.TemplateError as exc:
        raise LoadError(file, f"template error: {_redact(str(exc), variables, text)}",
                        _template_line(exc.__traceback__, file)) from None
    except RecursionError as exc:
        raise LoadError(file, "template error: recursion is too deep (a macro or recursive "
                        "loop that never ends?)", _template_line(exc.__traceback__, file)
                        ) from None
    except MemoryError as exc:
        raise LoadError(file, "template error: out of memory while rendering",
                        _template_line(exc.__traceback__, file)) from None
    except Exception as exc:  # any other failure of an expression: a user error, with a line
        what = _redact(f"{type(exc).__name__}: {exc}", variables, text)
        raise LoadError(file, f"template error: {what}",
                        _template_line(exc.__traceback__, file)) from None
    finally:
        end_budget(token)


def _render(file: str, text: str, variables: Mapping[str, Any]) -> str:
    tree = _ENV.parse(text, filename=file)
    refuse_file_access(tree, file)
    guard_loops(tree)
    code = _ENV.compile(tree, filename=file)
    template = _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None))
    stream = template.generate(dict(variables))
    return "".join(_bounded(stream))


def _bounded(stream: Iterator[str]) -> Iterator[str]:
    """The rendered chunks, stopped (inside the template, so the error gets its line)
    once they pass the output limit or the deadline."""
    written = 0
    current = budget()
    generator = stream if hasattr(stream, "throw") else None
    for chunk in stream:
        written += len(chunk)
        problem: TemplateLimitExceeded | None = None
        if written > MAX_OUTPUT_CHARS:
            problem = TemplateLimitExceeded(
                f"the rendered file is over the limit of {MAX_OUTPUT_CHARS:,} characters")
        else:
            try:
                current.check_time()
            except TemplateLimitExceeded as exc:
                problem = exc
        if problem is not None:
            if generator is not None:
                generator.throw(problem)  # raises, rewritten with the template line
            raise problem
        yield chunk


def _redact(message: str, variables: Mapping[str, Any], text: str) -> str:
    """``message`` without any variable's value the template does not itself show,
    and not longer than a line or two."""
    for value in _string_leaves(variables, 0):
        if len(value) >= 4 and value in message and value not in text:
            message = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", "<redacted>", message)
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "..."
    return message


def _string_leaves(value: Any, depth: int) -> Iterator[str]:
    if depth > 20:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _string_leaves(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _string_leaves(item, depth + 1)


def _template_line(tb: TracebackType | None, file: str) -> int:
    """The last traceback line inside the template: Jinja rewrites template frames so
    that they carry the template's file name and source line. Line 1 when no frame
    is the template's (an error before rendering started): every error has a line."""
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == file:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def parse_var(assignment: str) -> tuple[str, str]:
    """``name=value`` from ``--var``."""
    name, sep, value = assignment.partition("=")
    if not sep or not name.isidentifier():
        raise UsageError(f"--var expects NAME=VALUE with NAME an identifier, got {assignment!r}")
    return name, value


def load_vars_file(path: str) -> dict[str, Any]:
    """Variables from a YAML (or JSON) mapping file given with ``--vars-file``."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle.read())
    except OSError as exc:
        raise UsageError(f"--vars-file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--vars-file {path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--vars-file {path}: must hold a mapping of variables")
    return data
