"""Check documents against the generated JSON Schemas and explain each error in place.

Valid documents, the common case, are checked by a compiled fastjsonschema validator
alone; ``jsonschema`` (~50 ms to import) is imported only to explain a failure.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from functools import cache

from provisioner.cpulist import parse_cpu_list
from provisioner.errors import InvalidArgument
from provisioner.lazyre import lazy_pattern
from provisioner.limits import MAX_STOP_GRACE_S, format_seconds
from provisioner.manifest.build import parse_duration
from provisioner.manifest.document import Document, locate
from provisioner.manifest.issues import Issue, json_path
from provisioner.manifest.overlay import DURATION, KINDS, PATTERN_HELP

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from jsonschema import Draft7Validator, FormatChecker
    from jsonschema.exceptions import ValidationError

DURATION_RE = lazy_pattern(DURATION)


def _is_cpu_list(value: object) -> bool:
    if isinstance(value, str):
        parse_cpu_list(value)
    return True


def check_duration(value: object) -> None:
    """A duration's bound (the pattern checks its syntax): InvalidArgument past it."""
    if isinstance(value, str) and DURATION_RE.fullmatch(value):
        seconds = parse_duration(value)
        if seconds > MAX_STOP_GRACE_S:
            raise InvalidArgument(f"{value!r} is longer than the limit, "
                                  f"{format_seconds(MAX_STOP_GRACE_S)}")


def _is_duration(value: object) -> bool:
    check_duration(value)
    return True


def _is_image_reference(value: object) -> bool:
    _check_image_reference(value)
    return True


def _is_registry_host(value: object) -> bool:
    _check_registry_host(value)
    return True


def _check_image_reference(value: object) -> None:
    # (imageref compiles its grammar at import: only documents with an image load it)
    from provisioner.imageref import parse_image_reference

    if isinstance(value, str):
        parse_image_reference(value)


def _check_registry_host(value: object) -> None:
    from provisioner.imageref import parse_registry

    if isinstance(value, str) and value:
        parse_registry(value)


@cache
def format_checker() -> FormatChecker:
    """The explaining validator's checks of the schemas' own formats (an
    InvalidArgument's message is the error's)."""
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    checker.checks("cpu-list", raises=InvalidArgument)(_is_cpu_list)
    checker.checks("duration", raises=InvalidArgument)(_is_duration)
    checker.checks("image-reference", raises=InvalidArgument)(_is_image_reference)
    checker.checks("registry-host", raises=InvalidArgument)(_is_registry_host)
    return checker


_SCHEMA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "schemas")


def load_schema(name: str) -> dict[str, Any]:
    """A generated schema shipped in the package (``provisioner/schemas``)."""
    try:  # a plain file in an installed package (importlib.resources costs ~6 ms to import)
        with open(os.path.join(_SCHEMA_DIR, name), encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:  # a zipped package, say
        from importlib import resources

        text = resources.files("provisioner").joinpath("schemas", name).read_text(
            encoding="utf-8")
    import json  # (only to explain a failure: valid documents never read a schema)

    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def validator_for(kind: str) -> Draft7Validator:
    """The explaining validator: slow, but it finds every error and says where."""
    from jsonschema import Draft7Validator

    return Draft7Validator(load_schema(f"{kind.lower()}.schema.json"),
                           format_checker=format_checker())


def _passes_check(check: Callable[[object], object]) -> Callable[[object], bool]:
    """A format check for fastjsonschema: False where ``check`` raises."""

    def passes(value: object) -> bool:
        try:
            check(value)
        except InvalidArgument:
            return False
        return True

    return passes


_FAST_FORMATS = {
    "cpu-list": _passes_check(parse_cpu_list),  # type: ignore[arg-type]
    "duration": _passes_check(check_duration),
    "image-reference": _passes_check(_check_image_reference),
    "registry-host": _passes_check(_check_registry_host),
}


#: Where scripts/generate.py writes each kind's pass/fail check as Python (its bytecode
#: is cached like any module's, so a process does not generate and compile it again).
GENERATED_CHECKS = "provisioner._schemacheck"


@cache
def fast_check_for(kind: str) -> Callable[[object], object]:
    """A compiled validator (fastjsonschema, ~50x faster) that only says pass or fail.

    Valid documents, the common case, are checked by it alone; a failure is explained by
    ``validator_for``, which then reports every error of the document. The check is the
    generated module of the kind (``provisioner/_schemacheck/``); without one (a schema
    made at run time, or a tree without the generated code) it is compiled here.
    """
    try:
        module = __import__(f"{GENERATED_CHECKS}.{kind.lower()}", fromlist=["check"])
    except ModuleNotFoundError:
        return compile_pass_fail(load_schema(f"{kind.lower()}.schema.json"))
    return functools.partial(module.check, custom_formats=_FAST_FORMATS)


def pass_fail_source(schema: dict[str, Any]) -> tuple[str, str]:
    """The Python source of ``schema``'s pass/fail check, and its function's name.

    ``fastjsonschema``'s draft-7 code (``use_default=False``: data untouched), except
    that a failure raises a bare JsonSchemaValueException: its detailed ones put the
    schema of every rule into the generated code, five times as long and slower to build,
    and its own ``detailed_exceptions=False`` breaks on ``const`` (2.22). Which data pass
    is the same; why is ``validator_for``'s. The format checks are the call's
    ``custom_formats`` (see :func:`fast_check_for`).

    Its ``REGEX_PATTERNS`` are compiled on first use (``provisioner.lazyre``), not when
    the module is imported: a document uses few of them."""
    from fastjsonschema.draft07 import CodeGeneratorDraft07
    from fastjsonschema.generator import serialize_regexes
    from fastjsonschema.ref_resolver import RefResolver

    class PassFail(CodeGeneratorDraft07):
        def exc(self, msg: str, *args: object, append_to_msg: str | None = None,
                rule: str | None = None) -> None:
            self.l('raise JsonSchemaValueException("invalid")')

    resolver = RefResolver.from_schema(schema, handlers={}, store={})
    generator = PassFail(  # type: ignore[no-untyped-call]
        schema, resolver=resolver, formats=_FAST_FORMATS, use_default=False)
    head = generator.global_state_code
    patterns: dict[str, re.Pattern[str]] = generator._compile_regexps
    replacements = dict(_OWN_IMPORTS)
    if patterns:
        replacements["import re\n"] = "from provisioner.lazyre import LazyPatterns\n"
        table = "REGEX_PATTERNS = " + serialize_regexes(patterns)  # type: ignore[no-untyped-call]
        replacements[table] = _lazy_table(patterns)
    for line, ours in replacements.items():
        if line not in head:
            raise RuntimeError(f"fastjsonschema's generated code no longer has {line!r}")
        head = head.replace(line, ours)
    return f"{head}\n{generator.func_code}\n", resolver.get_scope_name()


def _lazy_table(patterns: dict[str, re.Pattern[str]]) -> str:
    """``REGEX_PATTERNS`` as source: a :class:`~provisioner.lazyre.LazyPatterns` of the
    same keys and patterns (which have no flags but ``str`` patterns' own)."""
    for pattern in patterns.values():
        if pattern.flags != re.UNICODE:
            raise RuntimeError(f"a schema pattern with flags: {pattern!r}")
    items = ",\n    ".join(f"{key!r}: {pattern.pattern!r}" for key, pattern in patterns.items())
    return f"REGEX_PATTERNS = LazyPatterns({{\n    {items}\n}})"


class CheckFailed(Exception):
    """Raised by a pass/fail check when a document fails (why: ``validator_for``)."""


#: fastjsonschema's generated code imports its exceptions (and so all of fastjsonschema)
#: and Decimal (and so the decimal module), ~4 ms per process; the checks raise
#: CheckFailed instead and see no Decimal (documents are YAML or JSON data: a number is
#: an int or a float), so a process that validates loads neither.
_OWN_IMPORTS = {
    "from decimal import Decimal\n":
        "Decimal: tuple[type, ...] = ()  # none in YAML or JSON data\n",
    "from fastjsonschema import JsonSchemaValueException, JsonSchemaValuesException\n":
        "from provisioner.manifest.schema_check import CheckFailed as JsonSchemaValueException\n"
        "JsonSchemaValuesException = JsonSchemaValueException\n",
}


def compile_pass_fail(schema: dict[str, Any]) -> Callable[[object], object]:
    """``schema``'s pass/fail check (:func:`pass_fail_source`), compiled in this process."""
    source, name = pass_fail_source(schema)
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<check of {schema.get('title', 'a schema')}>", "exec"), namespace)
    check: Callable[..., object] = namespace[name]
    return functools.partial(check, custom_formats=_FAST_FORMATS)


def _passes(kind: str, data: object) -> bool:
    try:
        fast_check_for(kind)(data)
    except CheckFailed:
        return False
    return True


def check_document(doc: Document) -> list[Issue]:
    """Every schema error of one document (empty when valid)."""
    data = doc.data
    if not isinstance(data, dict):
        what = type(data).__name__ if not isinstance(data, list) else "list"
        return [
            Issue(
                doc.file,
                doc.line,
                doc.column,
                "",
                f"document {doc.index + 1} is a {_yaml_type(data)} ({what}), not a "
                "mapping with apiVersion, kind, metadata and spec",
            )
        ]
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:  # a list or mapping is unhashable
        node = locate(doc.node, ("kind",))
        if "kind" not in data:
            message = f"missing 'kind' (one of {', '.join(KINDS)})"
        else:
            message = f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})"
        return [Issue.at(doc.file, node, ("kind",) if "kind" in data else (), message)]
    twice = _spelled_twice(doc, data, ()) if doc.snake_keys else []
    if not twice and _passes(kind, data):
        return []
    validator = validator_for(kind)
    issues = [_explain(doc, error) for error in validator.iter_errors(data) if not _shadowed(error)]
    issues.extend(twice)
    return sorted(issues)


_SNAKE_RE = lazy_pattern(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")
_FREE_FORM = {"env", "labels", "annotations"}


def _spelled_twice(doc: Document, data: object, path: tuple[str | int, ...]) -> list[Issue]:
    """A field given both as snake_case and lowerCamelCase is ambiguous: refuse it."""
    issues: list[Issue] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if _SNAKE_RE.match(key):
                head, *rest = key.split("_")
                alias = head + "".join(part.title() for part in rest)
                if alias in data:
                    node = locate(doc.node, (*path, alias), at_key=True)
                    issues.append(
                        Issue.at(
                            doc.file, node, (*path, alias), f"given twice, as {key!r} and {alias!r}"
                        )
                    )
            if key not in _FREE_FORM:
                issues.extend(_spelled_twice(doc, value, (*path, key)))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            issues.extend(_spelled_twice(doc, item, (*path, index)))
    return issues


def _schema_of(error: ValidationError) -> dict[str, Any]:
    return dict(error.schema) if isinstance(error.schema, dict) else {}


def _shadowed(error: ValidationError) -> bool:
    """A CPU list failing its pattern also fails its format, whose message says more;
    a string too long to read fails its length, which says enough; the schemas' "not
    both spellings" rule (``dependencies``, for editors) is ``_spelled_twice``'s to say."""
    if "dependencies" in error.relative_schema_path:
        return True
    if isinstance(error.instance, str) and error.validator in ("pattern", "format") and len(
            error.instance) > _max_length(error):
        return True
    return error.validator == "pattern" and _schema_of(error).get("format") == "cpu-list"


def _max_length(error: ValidationError) -> int:
    limit = _schema_of(error).get("maxLength")
    return limit if isinstance(limit, int) else 1 << 62


def _yaml_type(value: object) -> str:
    if isinstance(value, list):
        return "sequence"
    if value is None:
        return "null value"
    return "scalar"


def _explain(doc: Document, error: ValidationError) -> Issue:
    path = tuple(error.absolute_path)
    validator = error.validator
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = _schema_of(error).get("properties", {})
        extras = [key for key in error.instance if key not in allowed]
        key = extras[0] if extras else ""
        node = locate(doc.node, (*path, key), at_key=True)
        names = sorted(k for k in allowed if k == k.lower())
        return Issue.at(
            doc.file, node, (*path, key), f"unknown field {key!r} (allowed: {', '.join(names)})"
        )
    if "propertyNames" in error.relative_schema_path:
        key = str(error.instance)
        node = locate(doc.node, (*path, key), at_key=True)
        return Issue.at(doc.file, node, (*path, key), f"key {_message(error, path)}")
    if validator == "required":
        node = locate(doc.node, path)
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return Issue.at(doc.file, node, path, f"missing required field {missing!r}")
    node = locate(doc.node, path)
    return Issue.at(doc.file, node, path, _message(error, path))


def _message(error: ValidationError, path: tuple[str | int, ...]) -> str:
    import json

    value: Any = error.instance
    validator = error.validator
    expected: Any = error.validator_value
    if validator == "type" and expected == "string" and isinstance(value, int | float | bool):
        return f'{json.dumps(value)} is not a string (quote it: "{json.dumps(value)}")'
    if validator == "format":
        cause = error.cause
        return str(cause) if cause else f"{value!r} is not a valid {expected}"
    if validator == "maxLength":
        return f"{_short(value)} is {len(value)} characters long; the limit is {expected}"
    if validator == "maxItems":
        return f"{len(value)} items; the limit is {expected}"
    if validator == "maxProperties":
        return f"{len(value)} entries; the limit is {expected}"
    if validator == "pattern" and path and path[-1] == "name" and len(path) == 2:
        return f"{value!r} is not a valid name ({_name_help(error)})"
    if validator == "pattern":
        wanted = PATTERN_HELP.get(expected)
        if wanted:
            return f"{value!r} is not {wanted}"
        return f"{value!r} does not match the required pattern {expected}"
    if validator == "type" and expected == "boolean":
        return f"{json.dumps(value)} is not a boolean (write true or false)"
    if validator == "const":
        return f"{value!r} must be {expected!r}"
    if validator == "enum":
        choices = ", ".join(str(v) for v in expected)
        return f"{value!r} is not one of: {choices}"
    return error.message


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...{text[-6:]}"


def _name_help(error: ValidationError) -> str:
    pattern: Any = error.validator_value
    for kind, info in KINDS.items():
        if info["name"] == pattern:
            return f"{kind} names are {info['name_help']}"
    return "bad name"


__all__ = ["check_document", "json_path", "load_schema", "validator_for"]
