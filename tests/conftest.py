"""Shared fixtures: a real node layer on a private cgroup root and state directory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.node.process.logs import LogLimits
from provisioner.node.runtime.layer import NodeConfig, NodeLayer
from provisioner.node.runtime.teardown import remove_everything


def make_config(state_dir: Path) -> NodeConfig:
    """A node of its own: unique cgroup root, private state, quick back-off."""
    return NodeConfig(state_dir=str(state_dir), cgroup_root=f"ptest-{uuid.uuid4().hex[:10]}",
                      log_limits=LogLimits(max_bytes=256 * 1024, keep=2),
                      backoff_base_s=0.05, backoff_cap_s=0.2)


def tear_down(layer: NodeLayer) -> None:
    """Stop every process and free every cell the test made, then the cgroup root."""
    try:
        remove_everything(layer)
    finally:
        layer.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeLayer]:
    if os.geteuid() != 0:
        pytest.skip("the node layer needs root, cgroups and namespaces")
    layer = NodeLayer(make_config(tmp_path / "state"))
    try:
        yield layer
    finally:
        tear_down(layer)
