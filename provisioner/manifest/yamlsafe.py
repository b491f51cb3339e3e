"""Safe, bounded YAML loading that remembers where every value came from.

Only plain data is built (mappings, sequences, strings, numbers, booleans, null); any
other tag is refused. Booleans follow YAML 1.2 (``true``/``false`` only), so the
"Norway problem" (``no`` read as false) cannot happen: ``on``, ``yes`` and ``no`` stay
strings. Duplicate keys are errors. Anchors and aliases are allowed, but the size of
the fully expanded document is computed first, without expanding it, so a
"billion laughs" file is refused at once.
"""

from __future__ import annotations

import math

import yaml

from provisioner.errors import LoadError
from provisioner.lazyre import lazy_pattern
from provisioner.manifest.document import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    PLAIN_TAG,
    STD_TAG,
    Document,
    is_merge_key,
    locate,
    no_gc,
)

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "Document", "decode", "load_documents", "locate",
           "no_gc"]

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available


class _Loader(_BaseLoader):  # type: ignore[misc]
    """Composes nodes without PyYAML's YAML 1.1 implicit typing.

    PyYAML's resolver runs a list of regular expressions on every scalar (and follows
    YAML 1.1: ``no`` is false, ``1:30`` is 90). We only mark plain scalars here and type
    them once, by YAML 1.2 core rules, when building the data.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            return PLAIN_TAG if implicit[0] else STD_TAG + "str"
        return STD_TAG + ("seq" if kind is yaml.SequenceNode else "map")


MAX_EXPANDED_NODES = 2_000_000

_INT_RE = lazy_pattern(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = lazy_pattern(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_FLOAT_SPECIAL = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
#: A plain scalar starting with any other character is a string.
_MAYBE_TYPED = frozenset("0123456789-+.~nNtTfF")


def decode(file: str, raw: bytes) -> str:
    """Decode UTF-8 (a BOM is allowed), reporting the line and column of a bad byte.

    A file over MAX_FILE_BYTES is refused at line 1 (pass at most one byte more than
    the limit: the size is known to be too large then), a NUL or another character YAML
    forbids at its place (a NUL usually means a binary or UTF-16 file)."""
    if len(raw) > MAX_FILE_BYTES:
        raise LoadError(file, f"file is over the limit of {MAX_FILE_BYTES:,} bytes", 1)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise LoadError(
            file, f"invalid UTF-8 (byte 0x{raw[exc.start]:02x})", line, column
        ) from None
    nul = text.find("\0")  # (other characters YAML forbids: see _reader_error)
    if nul >= 0:
        line, column = _line_column(text, nul)
        raise LoadError(file, "NUL character (a binary or UTF-16 file?); manifests are "
                        "UTF-8 text", line, column)
    return text


def load_documents(file: str, text: str) -> list[Document]:
    """Parse every document of ``text``; empty documents (a bare ``---``) are skipped."""
    with no_gc():
        try:
            nodes = list(yaml.compose_all(text, Loader=_Loader))
        except yaml.reader.ReaderError as exc:
            raise _reader_error(file, text, exc) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "invalid YAML"
            if mark is None:
                raise LoadError(file, f"invalid YAML: {problem}", 1) from None
            line, column = mark.line + 1, mark.column + 1
            raise LoadError(file, f"invalid YAML: {problem}", line, column) from None
        except yaml.YAMLError as exc:
            raise LoadError(file, "invalid YAML: " + " ".join(str(exc).split()), 1) from None
        except RecursionError:  # no mark to report: the file as a whole
            raise LoadError(file, f"nesting is deeper than {MAX_DEPTH} levels", 1) from None
        docs: list[Document] = []
        has_aliases = "*" in text
        for index, node in enumerate(nodes):
            if isinstance(node, yaml.ScalarNode) and node.tag == PLAIN_TAG and node.value in _NULLS:
                continue
            if has_aliases:  # without aliases the size is bounded by the file size
                _check_size(file, node)
            builder = _Builder(file)
            data = builder.build(node, 0)
            docs.append(Document(file, index, data, node, builder.snake_keys))
        return docs


def _line_column(text: str, at: int) -> tuple[int, int]:
    """1-based line and column of the character at index ``at``."""
    return text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1


def _reader_error(file: str, text: str, exc: yaml.reader.ReaderError) -> LoadError:
    """A character YAML forbids (a control character, U+FFFE ...), at its place: the
    reader gives an offset (in UTF-8 bytes with libyaml), not a line."""
    at = exc.position
    if not text.isascii():  # libyaml counts bytes of the UTF-8 text
        at = len(text.encode("utf-8", "surrogatepass")[:at].decode("utf-8", "ignore"))
    code = exc.character if isinstance(exc.character, int) else ord(exc.character or "?")
    line, column = _line_column(text, min(at, len(text)))
    return LoadError(file, f"character U+{code:04X} is not allowed in YAML (a control "
                     "character?)", line, column)


def _tag(tag: str) -> str:
    """How the user wrote a tag: ``!!python/object`` rather than its long form."""
    return "!!" + tag[len(STD_TAG) :] if tag.startswith(STD_TAG) else tag


def _where(file: str, node: yaml.Node, message: str) -> LoadError:
    return LoadError(file, message, node.start_mark.line + 1, node.start_mark.column + 1)


def _check_size(file: str, root: yaml.Node) -> None:
    """Count the nodes of the expanded document without expanding aliases."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise _where(file, node, "an alias refers to itself (recursive document)")
        if depth > MAX_DEPTH:
            raise _where(file, node, f"nesting is deeper than {MAX_DEPTH} levels")
        in_progress.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k, depth + 1) + size(v, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item, depth + 1)
        in_progress.discard(key)
        sizes[key] = total
        if total > MAX_EXPANDED_NODES:
            raise _where(
                file,
                root,
                f"document expands to more than {MAX_EXPANDED_NODES} values "
                "(aliases expanding exponentially?)",
            )
        return total

    size(root, 0)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.snake_keys = False  # whether any key has '_' (see Document.snake_keys)

    def build(self, node: yaml.Node, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _where(self.file, node, f"nesting is deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != STD_TAG + "seq":
                raise _where(
                    self.file, node, f"tag {_tag(node.tag)!r} is not allowed (plain data only)"
                )
            return [self.build(item, depth + 1) for item in node.value]
        if isinstance(node, yaml.MappingNode):
            if node.tag != STD_TAG + "map":
                raise _where(
                    self.file, node, f"tag {_tag(node.tag)!r} is not allowed (plain data only)"
                )
            return self.mapping(node, depth)
        raise _where(self.file, node, "unsupported YAML node")  # pragma: no cover

    def mapping(self, node: yaml.MappingNode, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if is_merge_key(key_node):
                merged.update(self.merge_source(value_node, depth))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise _where(self.file, key_node, "a mapping key must be a plain string")
            key = key_node.value
            if "_" in key:
                self.snake_keys = True
            if key in result:
                raise _where(self.file, key_node, f"duplicate key {key!r}")
            result[key] = self.build(value_node, depth + 1)
        for key, value in merged.items():
            result.setdefault(key, value)
        return result

    def merge_source(self, node: yaml.Node, depth: int) -> dict[str, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in reversed(sources):
            value = self.build(source, depth + 1)
            if not isinstance(value, dict):
                raise _where(self.file, source, "a merge key '<<' needs a mapping")
            merged.update(value)
        return merged

    def scalar(self, node: yaml.ScalarNode) -> Any:
        tag, value = node.tag, node.value
        if tag == PLAIN_TAG:
            return _plain(value)
        if tag == STD_TAG + "str":
            return value
        if tag in (STD_TAG + "int", STD_TAG + "float", STD_TAG + "bool", STD_TAG + "null"):
            typed = _plain(value)  # an explicit standard tag must agree with the text
            wanted = {"int": int, "float": float, "bool": bool, "null": type(None)}[
                tag[len(STD_TAG) :]
            ]
            if wanted is float and isinstance(typed, int) and not isinstance(typed, bool):
                return float(typed)
            if type(typed) is wanted:
                return typed
            raise _where(self.file, node, f"{value!r} is not a valid {_tag(tag)}")
        raise _where(self.file, node, f"tag {_tag(tag)!r} is not allowed (plain data only)")


def _plain(text: str) -> Any:
    """Type a plain scalar by the YAML 1.2 core schema: null, bool, int, float or str."""
    if text and text[0] not in _MAYBE_TYPED:
        return text
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INT_RE.match(text):
        return int(text, 0) if text[:2] in ("0o", "0x") else int(text)
    if _FLOAT_RE.match(text):
        return float(text)
    return _FLOAT_SPECIAL.get(text.lower(), text)
