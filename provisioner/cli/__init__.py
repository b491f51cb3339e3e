"""The ``provisioner`` command line."""

from provisioner.cli.main import main, run

__all__ = ["main", "run"]
