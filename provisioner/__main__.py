"""``python -m provisioner``: the command line (the same as the ``provisioner`` script)."""

import sys

from provisioner.cli import main

sys.exit(main())
