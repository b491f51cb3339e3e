"""Manifests: load (Jinja2, safe YAML) -> validate (JSON Schema, cross-checks) -> model."""

from provisioner.manifest.issues import Issue
from provisioner.manifest.loader import LoadResult, expand_paths, load

__all__ = ["Issue", "LoadResult", "expand_paths", "load"]
