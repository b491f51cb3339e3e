"""A manifest document: its data, and the YAML node tree that says where each value is.

Apart from :mod:`provisioner.manifest.yamlsafe` (the parser) so that checking documents
made from data - an Ansible task's options, a daemon request - does not load PyYAML (~15
ms a process): such a document's node tree is composed only when an issue needs a line
and column (see :mod:`provisioner.manifest.from_data`). Nodes are PyYAML's; the
functions that walk them run only once a node exists, so PyYAML is loaded by then.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

    import yaml

#: The largest manifest file (and rendered template) read.
MAX_FILE_BYTES = 16 * 1024 * 1024
#: The deepest nesting of mappings and sequences in a document.
MAX_DEPTH = 100

STD_TAG = "tag:yaml.org,2002:"
#: Internal tag of an untagged plain scalar (typed by YAML 1.2 rules when built).
PLAIN_TAG = "!provisioner/plain"


class Document:
    """One document: its data and the node tree that locates values in it.

    ``node`` is the tree itself or a function that composes it when first asked for
    (a document made from data); ``start`` is then where the document starts, known
    without composing it."""

    __slots__ = ("_compose", "_node", "_start", "data", "file", "index", "snake_keys")

    def __init__(self, file: str, index: int, data: Any,
                 node: yaml.Node | Callable[[], yaml.Node], snake_keys: bool = True,
                 start: tuple[int, int] | None = None) -> None:
        self.file = file
        self.index = index  # 0-based position of the document in its file
        self.data = data
        #: Whether any mapping key contains '_': only then can a field be given twice,
        #: in snake_case and lowerCamelCase, so only then is that checked.
        self.snake_keys = snake_keys
        self._node: yaml.Node | None = None if callable(node) else node
        self._compose = node if callable(node) else None
        self._start = start

    @property
    def node(self) -> yaml.Node:
        """The document's root node (composed now if it was not yet)."""
        if self._node is None:
            assert self._compose is not None
            self._node = self._compose()
        return self._node

    @property
    def line(self) -> int:
        """The 1-based line where the document starts."""
        if self._start is not None:
            return self._start[0]
        return int(self.node.start_mark.line) + 1

    @property
    def column(self) -> int:
        """The 1-based column where the document starts."""
        if self._start is not None:
            return self._start[1]
        return int(self.node.start_mark.column) + 1


class no_gc:  # (lower case: it was a function, and reads as one at each use)
    """Pause the cyclic garbage collector while a large node tree is built.

    Composing allocates many long-lived objects, which triggers collection after
    collection over the growing tree (3-4x slower on a 10,000-document file). Nothing
    built here needs the cyclic collector; it runs again afterwards. (A class, not
    ``contextlib.contextmanager``: validate would import contextlib for it alone.)
    """

    __slots__ = ("was_enabled",)

    def __enter__(self) -> None:
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was_enabled:
            gc.enable()


def is_merge_key(node: yaml.Node) -> bool:
    """Whether ``node`` is a ``<<`` merge key."""
    return (node.tag == PLAIN_TAG and node.value == "<<") or node.tag == STD_TAG + "merge"


def locate(root: yaml.Node, path: tuple[str | int, ...], at_key: bool = False) -> yaml.Node:
    """The node at ``path`` (or its key node), or the deepest node found on the way."""
    node = root
    for index, part in enumerate(path):
        found = _child(node, part, at_key and index == len(path) - 1)
        if found is None:
            return node
        node = found
    return node


def _child(node: yaml.Node, part: str | int, want_key: bool) -> yaml.Node | None:
    import yaml  # loaded already: ``node`` is one of its nodes

    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key_node, value_node in _pairs(node):
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == part:
                return key_node if want_key else value_node
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        child: yaml.Node = node.value[part]
        return child
    return None


def _pairs(node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    import yaml

    for key_node, value_node in node.value:
        if is_merge_key(key_node):
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                if isinstance(source, yaml.MappingNode):
                    yield from _pairs(source)
        else:
            yield key_node, value_node
