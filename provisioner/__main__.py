"""``python -m provisioner``: the command line (the same as the ``provisioner`` script)."""

from provisioner.cli import run

run()
