"""The ``provisioner`` command line."""

from provisioner.cli.main import main

__all__ = ["main"]
