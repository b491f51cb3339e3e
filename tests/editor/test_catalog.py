"""The published schema catalog (tools/editor/catalog.py), read by the real server.

The catalog and schemas are served on 127.0.0.1 as any web server would serve them;
the language server finds the schema of ``*.provisioner.yaml`` through the catalog
alone (no ``yaml.schemas`` mapping) and checks every document of the file.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.editor.conftest import problems, start, virtual
from tests.editor.lsp import ROOT, Client

SCRIPT = ROOT / "tools" / "editor" / "catalog.py"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The catalog's URL, on a web server of this test's own on 127.0.0.1."""
    out = tmp_path_factory.mktemp("schemas")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(_Quiet, directory=str(out)))
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        subprocess.run([sys.executable, str(SCRIPT), base, str(out)], check=True)
        yield base + "catalog.json"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="module")
def by_catalog(served: str) -> Iterator[Client]:
    client = start({"yaml": {"validate": True,
                             "schemaStore": {"enable": True, "url": served}}})
    try:
        yield client
    finally:
        client.close()


def test_the_catalog_is_in_the_schemastore_format(served: str, tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(SCRIPT), "https://example.org/s", str(tmp_path),
                    "--match", "manifests/**/*.yaml"], check=True)
    catalog = json.loads((tmp_path / "catalog.json").read_text())
    assert catalog["$schema"] == "https://json.schemastore.org/schema-catalog.json"
    whole = catalog["schemas"][0]
    assert whole["url"] == "https://example.org/s/manifest.schema.json"
    assert whole["fileMatch"] == ["*.provisioner.yaml", "*.provisioner.yml",
                                  "manifests/**/*.yaml"]
    assert len(catalog["schemas"]) == 6
    assert all((tmp_path / e["url"].rsplit("/", 1)[1]).is_file() for e in catalog["schemas"])


def test_every_document_of_a_matching_file_is_checked(by_catalog: Client) -> None:
    text = ("apiVersion: provisioner/v1\nkind: Cell\nmetadata: {name: web}\n---\n"
            "apiVersion: provisioner/v1\nkind: Executable\nmetadata: {name: api}\n"
            "spec:\n  command: x\n  restartPolicy: sometimes\n")
    found = problems(by_catalog.diagnose(virtual("deploy/web.provisioner.yaml"), text))
    assert [line for line, _ in found] == [10]
    assert found[0][1].startswith("Value is not accepted.")
    # A file the catalog does not name is not checked (no mapping in this set-up).
    assert problems(by_catalog.diagnose(virtual("deploy/web.yaml"), text)) == []
