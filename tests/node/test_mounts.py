"""mountinfo as the node layer reads it: the kernel's octal escapes undone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from provisioner.node.oci.mounts import mountinfo, mounts_under, unmount

pytestmark = [pytest.mark.kernel]


def test_mount_points_with_escaped_characters_read_back_as_made(tmp_path: Path) -> None:
    plain, odd = tmp_path / "plain", tmp_path / "a b\\c\td"
    for point in (plain, odd):
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "none", str(point)], check=True)
    try:
        points = {point for _, point, fstype in mountinfo() if fstype == "tmpfs"}
        assert {str(plain), str(odd)} <= points
        assert mounts_under(str(tmp_path)) in ([str(plain), str(odd)], [str(odd), str(plain)])
    finally:
        for point in (plain, odd):
            unmount(str(point))
    assert mounts_under(str(tmp_path)) == []
