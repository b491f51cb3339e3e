#!/usr/bin/env python3
"""Write a busybox OCI image layout, made from Debian's busybox-static, for pods.

    python scripts/busybox_image.py /srv/images/busybox [--tag latest]

The layout can then be named in a Pod manifest as ``image: oci:/srv/images/busybox``.
This node has no registry access; on a machine that has, ``skopeo copy
docker://busybox:latest oci:/srv/images/busybox:latest`` makes the same kind of layout
from a registry image. (The builder is the one the tests use: tests/oci_fixture.py.)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.oci_fixture import BUSYBOX, build_busybox_layout, is_static


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("dest", type=Path, help="the layout directory (made if missing)")
    parser.add_argument("--tag", default="latest")
    args = parser.parse_args()
    if not os.path.isfile(BUSYBOX) or not is_static(BUSYBOX):
        print(f"{BUSYBOX} is missing or not static: apt-get install busybox-static",
              file=sys.stderr)
        return 1
    args.dest.mkdir(parents=True, exist_ok=True)
    print(build_busybox_layout(args.dest.resolve(), args.tag))
    return 0


if __name__ == "__main__":
    sys.exit(main())
