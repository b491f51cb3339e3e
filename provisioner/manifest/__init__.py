"""Manifests: load (Jinja2, safe YAML) -> validate (JSON Schema, cross-checks) -> model.

The names below are imported on first use (PEP 562): importing one module of the
package (``provisioner.manifest.build`` for the protobuf conversion, say) must not load
the whole pipeline, Jinja2 and the schema validators with it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from provisioner.manifest.issues import Issue
    from provisioner.manifest.loader import LoadResult, expand_paths, load

__all__ = ["Issue", "LoadResult", "expand_paths", "load"]


def __getattr__(name: str) -> Any:
    if name == "Issue":
        from provisioner.manifest import issues

        return issues.Issue
    if name in ("LoadResult", "expand_paths", "load"):
        from provisioner.manifest import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'provisioner.manifest' has no attribute {name!r}")
