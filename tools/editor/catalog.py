#!/usr/bin/env python3
"""Publish the manifest schemas with a JSON schema catalog (the schemastore.org format).

    python tools/editor/catalog.py BASE_URL OUT_DIR [--match GLOB ...]

writes OUT_DIR/*.schema.json (the generated schemas) and OUT_DIR/catalog.json, whose
schema URLs are BASE_URL + file name: serve OUT_DIR at BASE_URL (any web server) and set
``yaml.schemaStore.url`` to BASE_URL + "catalog.json". yaml-language-server reads a
catalog over http(s) only, and needs absolute schema URLs in it, hence the base URL.
Files matching ``*.provisioner.yaml`` / ``*.provisioner.yml`` (and each ``--match``)
are then checked with manifest.schema.json, every document with its kind's schema.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

SCHEMAS = Path(__file__).resolve().parents[2] / "provisioner" / "schemas"
DEFAULT_MATCH = ["*.provisioner.yaml", "*.provisioner.yml"]


def catalog(base_url: str, matches: list[str]) -> dict[str, object]:
    """The catalog: the whole-file schema with file patterns, each kind's without."""
    entries: list[dict[str, object]] = [{
        "name": "provisioner manifest",
        "description": "A provisioner manifest file: every document checked with its kind",
        "fileMatch": matches,
        "url": base_url + "manifest.schema.json",
    }]
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        if path.name != "manifest.schema.json":
            title = json.loads(path.read_text())["title"]
            entries.append({
                "name": f"provisioner {title}",
                "description": f"One provisioner manifest document of kind {title}",
                "fileMatch": [],
                "url": base_url + path.name,
            })
    return {"$schema": "https://json.schemastore.org/schema-catalog.json", "version": 1,
            "schemas": entries}


def publish(base_url: str, out: Path, matches: list[str]) -> None:
    """Copy the schemas into ``out`` and write ``out/catalog.json`` for ``base_url``."""
    if not base_url.endswith("/"):
        base_url += "/"
    out.mkdir(parents=True, exist_ok=True)
    for path in SCHEMAS.glob("*.schema.json"):
        shutil.copyfile(path, out / path.name)
    text = json.dumps(catalog(base_url, matches), indent=2) + "\n"
    (out / "catalog.json").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", help="where OUT_DIR will be served, e.g. https://host/schemas/")
    parser.add_argument("out", type=Path)
    parser.add_argument("--match", action="append", default=[],
                        help="another file pattern for manifest.schema.json (repeatable)")
    args = parser.parse_args()
    publish(args.base_url, args.out, DEFAULT_MATCH + args.match)


if __name__ == "__main__":
    main()
