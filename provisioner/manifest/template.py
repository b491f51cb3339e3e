"""Jinja2 templating of manifest files, before YAML parsing.

A file is rendered only when it contains Jinja syntax, so plain YAML keeps its exact
line numbers. Undefined variables are errors (StrictUndefined) that name the variable
and the template line. Errors found later in a rendered file refer to lines of the
rendered text; with ``{% for %}`` loops these can differ from the source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
import yaml

from provisioner.errors import LoadError, UsageError

_JINJA_MARKERS = ("{{", "{%", "{#")
_UNDEFINED_NAME_RE = re.compile(r"'([^']+)' is undefined")


def _environment() -> jinja2.Environment:
    # Manifests are YAML, not HTML: autoescaping would corrupt values.
    return jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


_ENV = _environment()


def needs_rendering(text: str) -> bool:
    return any(marker in text for marker in _JINJA_MARKERS)


def render(file: str, text: str, variables: Mapping[str, Any]) -> str:
    """Render ``text`` with ``variables``; errors name the file and template line."""
    if not needs_rendering(text):
        return text
    try:
        template = _ENV.from_string(text)
        template.filename = file  # makes template frames carry the file name
        return template.render(dict(variables))
    except jinja2.TemplateSyntaxError as exc:
        raise LoadError(file, f"template syntax error: {exc.message}", exc.lineno) from None
    except jinja2.UndefinedError as exc:
        line = _template_line(exc.__traceback__, file)
        match = _UNDEFINED_NAME_RE.search(str(exc))
        if match and "attribute" not in str(exc):
            what = f"variable {match.group(1)!r} is undefined (pass it with --var or --vars-file)"
        else:
            what = str(exc)
        raise LoadError(file, f"template error: {what}", line) from None
    except jinja2.TemplateError as exc:
        raise LoadError(
            file, f"template error: {exc}", _template_line(exc.__traceback__, file)
        ) from None


def _template_line(tb: TracebackType | None, file: str) -> int | None:
    """The last traceback line inside the template: Jinja rewrites template frames so
    that they carry the template's file name and source line."""
    line = None
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
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--vars-file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--vars-file {path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--vars-file {path}: must hold a mapping of variables")
    return data
