"""Declarative node provisioner: YAML manifests -> validated model -> plan -> node."""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # Resolved on first use: importlib.metadata costs ~25 ms at import, and every process
    # that imports the package pays it - the per-executable shim among them.
    if name != "__version__":
        raise AttributeError(f"module 'provisioner' has no attribute {name!r}")
    from importlib import metadata

    try:
        version = metadata.version("provisioner")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        version = "0.0.0+source"
    globals()["__version__"] = version
    return version
