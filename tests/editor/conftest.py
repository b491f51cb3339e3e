"""The real yaml-language-server (``tools/editor``, pinned from npm), one per test module."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.editor.lsp import ROOT, SERVER, Client, server_command

VSCODE_SETTINGS = ROOT / ".vscode" / "settings.json"


def shipped_settings() -> dict[str, Any]:
    """``.vscode/settings.json`` as the editor sends it: ``yaml.schemas`` -> {"yaml": {...}}."""
    flat = json.loads(VSCODE_SETTINGS.read_text())
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        nested.setdefault(section, {})[name] = value
    # Tests never reach the internet: no schemastore.org catalog.
    nested["yaml"]["schemaStore"] = {"enable": False}
    return nested


def start(settings: dict[str, Any]) -> Client:
    """A server rooted at the checkout (VS Code's workspace folder), configured."""
    command = server_command()
    if command is None:
        if shutil.which("node") is None:
            pytest.skip("node is not installed: the editor tests need Node.js and npm")
        pytest.fail(f"{SERVER} is missing: run ./dev setup (npm ci in tools/editor)")
    client = Client(command, ROOT)
    try:
        client.initialize(settings)
    except BaseException:
        client.close()
        raise
    return client


@pytest.fixture(scope="module")
def editor() -> Iterator[Client]:
    """The server with the repository's own editor set-up (.vscode/settings.json)."""
    client = start(shipped_settings())
    try:
        yield client
    finally:
        client.close()


def problems(diagnostics: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(1-based line, message) of every error and warning (not hints nor information)."""
    return sorted(
        (d["range"]["start"]["line"] + 1, d["message"])
        for d in diagnostics
        if d.get("severity", 1) <= 2
    )


def virtual(path: str) -> Path:
    """A path in the checkout, for a document opened with its text only (never written)."""
    return ROOT / path
