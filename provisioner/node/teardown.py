"""Remove everything a node layer manages: for tests, benchmarks and lab resets."""

from __future__ import annotations

import contextlib

from provisioner.model import Kind
from provisioner.node.layer import NodeLayer


def remove_everything(layer: NodeLayer, remove_root: bool = True) -> None:
    """Stop every executable and free every cell (recorded or left over), deepest last
    freed first, then (optionally) the cgroup root; best effort, never raises for one
    object that is already gone."""
    for process in layer.store.list_processes():
        with contextlib.suppress(Exception):
            layer.stop_executable(process.name, forget=True)
    cells = [r.name for r in layer.store.list_resources(Kind.CELL)]
    for cell in sorted(cells, key=lambda c: c.count("/")):
        with contextlib.suppress(Exception):
            layer.free_cell(cell)
    for cell in sorted(layer.cgroups.list_cells(), key=lambda c: -c.count("/")):
        with contextlib.suppress(Exception):
            layer.free_cell(cell)
    if remove_root:
        layer.cgroups.remove_root()
