"""Remove everything a node layer manages: for tests, benchmarks and lab resets."""

from __future__ import annotations

import contextlib

from provisioner.model import Kind
from provisioner.node.runtime.layer import NodeLayer


def remove_everything(layer: NodeLayer, remove_root: bool = True) -> None:
    """Stop every executable and free every cell (recorded or left over), deepest last
    freed first, then (optionally) the cgroup root; best effort, never raises for one
    object that is already gone. Pods go first (their containers are processes too)."""
    from provisioner.node.runtime.pods import Pods  # pods build on the node layer

    for record in layer.store.list_resources(Kind.POD):
        with contextlib.suppress(Exception):
            Pods(layer).free(record.name)
    for process in layer.store.list_processes():
        with contextlib.suppress(Exception):
            layer.stop_executable(process.name, forget=True)
    cells = [r.name for r in layer.store.list_resources(Kind.CELL)]
    for cell in sorted(cells, key=lambda c: c.count("/")):
        with contextlib.suppress(Exception):
            Pods(layer).free_cell(cell)
    for cell in sorted(layer.cgroups.list_cells(), key=lambda c: -c.count("/")):
        with contextlib.suppress(Exception):
            Pods(layer).free_cell(cell)
    if remove_root:
        from provisioner.node.oci.containers import remove_runc_cgroups

        remove_runc_cgroups(layer.cgroups.root_name)  # what runc made beside our root
        layer.cgroups.sweep_staging()  # beside the root too: remove_root cannot see them
        layer.cgroups.remove_root()
