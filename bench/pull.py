#!/usr/bin/env python3
"""Pulling busybox from a local registry: the image store against ``skopeo copy`` alone.

A Debian ``docker-registry`` is started on 127.0.0.1 (plain HTTP, a temporary config,
killed at the end) and the busybox image of the tests (Debian's busybox-static in one
gzip layer, ~1 MB) is pushed to it with skopeo. Then, each ``--repeat`` times,
alternating, into fresh directories:

* store: ``ImageStore.pull(HOST/library/busybox:1.0)`` with an empty cache - the
  skopeo copy (to a staging layout, blobs to the shared directory), the layout
  resolved, every blob verified again, the layer unpacked, the reference recorded;
* skopeo: ``skopeo copy docker://HOST/library/busybox:1.0 oci:DIR:tag`` alone - the
  transfer, with nothing unpacked (the baseline: what any pull costs);
* cached: ``ImageStore.pull`` again with the image present (IfNotPresent: no network);
* layout: ``ImageStore.pull(oci:LAYOUT)`` of the same image from its local layout with
  an empty cache - the verify + unpack share of a pull, without any transfer.

Medians are printed with the ratio store / skopeo. Needs root only for nothing (the
unpack keeps owners when root); needs skopeo and docker-registry (./dev setup).

    python bench/pull.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.node.oci.images import ImageStore
from tests.oci_fixture import build_busybox_layout
from tests.registry_fixture import local_registry, push


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for program in ("skopeo", "/usr/bin/docker-registry"):
        if shutil.which(program) is None:
            print(f"pull: skipped ({program} is not installed: ./dev setup)")
            return 0
    with tempfile.TemporaryDirectory(prefix="bench-pull-", dir="/var/tmp") as tmp_:
        tmp = Path(tmp_)
        layout = build_busybox_layout(tmp / "busybox")
        with local_registry(tmp / "registry") as registry:
            push(registry, layout, "library/busybox", "1.0")
            reference = f"{registry.host}/library/busybox:1.0"
            store_s: list[float] = []
            skopeo_s: list[float] = []
            cached_s: list[float] = []
            layout_s: list[float] = []
            for run in range(args.repeat):
                store = ImageStore(str(tmp / f"state{run}"))
                started = time.perf_counter()
                store.pull(reference)
                store_s.append(time.perf_counter() - started)
                started = time.perf_counter()
                store.pull(reference)
                cached_s.append(time.perf_counter() - started)
                started = time.perf_counter()
                subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                f"docker://{reference}", f"oci:{tmp / f'copy{run}'}:tag"],
                               check=True, capture_output=True)
                skopeo_s.append(time.perf_counter() - started)
                started = time.perf_counter()
                ImageStore(str(tmp / f"local{run}")).pull(f"oci:{layout}")
                layout_s.append(time.perf_counter() - started)
    store_m, skopeo_m = statistics.median(store_s), statistics.median(skopeo_s)
    print(f"pull busybox from 127.0.0.1 ({args.repeat} runs, medians):")
    print(f"  image store pull + verify + unpack: {store_m * 1000:8.1f} ms")
    print(f"  skopeo copy alone:                  {skopeo_m * 1000:8.1f} ms")
    print(f"  image store, cached (IfNotPresent): {statistics.median(cached_s) * 1000:8.2f} ms")
    print(f"  image store from the local layout:  "
          f"{statistics.median(layout_s) * 1000:8.1f} ms (verify + unpack, no transfer)")
    print(f"  ratio store / skopeo: {store_m / skopeo_m:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
