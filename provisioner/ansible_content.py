"""Manifests that reach an Ansible module as content rather than as files on the node.

- ``src``: files or a directory on the *controller*. The collection's action plugin
  reads them there (:func:`read_sources`), asks which variables they use
  (:func:`template_names`) so that only those of the play are resolved, renders them
  with the provisioner's own templating (:func:`render_sources`, through
  :func:`provisioner.manifest.template.render`) and sends the rendered texts to the
  node, each named by its controller path; the module validates them there with
  :func:`provisioner.manifest.loader.load_texts`, so every error keeps the controller
  file's ``file:line:col``.
- ``definition``: a YAML string (named ``definition``, lines counted in the string) or
  a list of documents (each named ``definition[i]``), validated on the node
  (:func:`load_definition`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jinja2
import jinja2.meta

from provisioner.errors import LoadError
from provisioner.manifest.from_data import validate_data
from provisioner.manifest.issues import Issue
from provisioner.manifest.loader import LoadResult, expand_paths, load_texts
from provisioner.manifest.template import needs_rendering, render
from provisioner.manifest.yamlsafe import decode

DEFINITION_LABEL = "definition"

#: Parses templates only to list the variables they use; rendering is
#: :func:`provisioner.manifest.template.render`'s, with its own (sandboxed) environment.
_PARSER = jinja2.Environment(autoescape=False)


def read_sources(paths: Iterable[str]) -> tuple[list[tuple[str, str]], list[Issue]]:
    """``(file, text)`` of every manifest file ``paths`` name (directories: every
    ``*.yaml`` / ``*.yml`` below them, sorted, hidden ones skipped), and the issues of
    what could not be read."""
    files, issues = expand_paths(paths)
    texts: list[tuple[str, str]] = []
    for file in files:
        try:
            with open(file, "rb") as handle:
                texts.append((file, decode(file, handle.read())))
        except LoadError as exc:
            issues.append(Issue.from_load_error(exc))
        except OSError as exc:
            issues.append(Issue(file, 0, 0, "", f"cannot read: {exc.strerror}"))
    return texts, issues


def template_names(texts: Iterable[tuple[str, str]]) -> set[str]:
    """The variables the templates among ``texts`` use (a text with a syntax error
    contributes none: rendering it reports the error with its line)."""
    names: set[str] = set()
    for _, text in texts:
        if not needs_rendering(text):
            continue
        try:
            names |= jinja2.meta.find_undeclared_variables(_PARSER.parse(text))
        except jinja2.TemplateSyntaxError:
            continue
    return names


def render_sources(texts: Iterable[tuple[str, str]], variables: Mapping[str, Any]
                   ) -> tuple[list[tuple[str, str]], list[Issue]]:
    """Every text rendered with ``variables``; a template error becomes an issue with
    the file and the template line."""
    rendered: list[tuple[str, str]] = []
    issues: list[Issue] = []
    for file, text in texts:
        try:
            rendered.append((file, render(file, text, variables)))
        except LoadError as exc:
            issues.append(Issue.from_load_error(exc))
    return rendered, issues


def load_definition(definition: Any, manifest_set: str) -> LoadResult:
    """Validate a ``definition``: a YAML string, one document (a mapping) or a list of
    documents."""
    if isinstance(definition, str):
        return load_texts([(DEFINITION_LABEL, definition)], manifest_set)
    items: Sequence[Any] = [definition] if isinstance(definition, Mapping) else definition
    if not isinstance(items, list) or not items:
        raise ValueError("definition must be a YAML string, a document (mapping) or a "
                         "non-empty list of documents")
    bad = [index for index, item in enumerate(items) if not isinstance(item, Mapping)]
    if bad:
        raise ValueError(f"definition[{bad[0]}] is not a document (a mapping)")
    return validate_data(items, manifest_set, label=DEFINITION_LABEL)
