"""A stand-in for ansible-test's pip bootstrap script (``get-pip-<version>.py``), which
it downloads from ci-files.testing.ansible.com, a host this machine cannot reach.

ansible-test runs the script (through its ``quiet_pip.py``) inside a fresh virtualenv
made without pip, with pip's install options and the packages it wants (``pip==24.2``),
plus ``--no-setuptools`` / ``--no-wheel``. This script does the same job from what is
here: Python's own ``ensurepip`` puts the bundled pip into the virtualenv (offline),
and that pip then installs the packages asked for from the package index.
``scripts/collection.py sanity`` copies it to where ansible-test looks for the cached
download (``~/.ansible/test/cache/get_pip_<version>.py``).
"""

from __future__ import annotations

import subprocess
import sys

#: Options of get-pip.py that pip itself does not know.
GET_PIP_ONLY = frozenset({"--no-setuptools", "--no-wheel"})


def main() -> int:
    # In a process of its own: ensurepip points PIP_CONFIG_FILE at /dev/null in the
    # environment of the process that runs it, which would hide pip's configuration
    # (the index, the certificates) from the install below.
    subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade"], check=True)
    options = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    return subprocess.run([sys.executable, "-m", "pip", "install", *options],
                          check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
