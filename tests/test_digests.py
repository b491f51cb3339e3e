"""provisioner.digests: the same digests as hashlib, without loading it for small input."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner import digests


@pytest.mark.parametrize("size", [0, 1, 1000, digests.SMALL, digests.SMALL + 1, 300_000])
def test_digests_are_hashlibs(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    assert digests.sha256_hex(data) == hashlib.sha256(data).hexdigest()
    assert digests.sha256(data[:10], size_hint=size).hexdigest() == \
        hashlib.sha256(data[:10]).hexdigest()
    blob = tmp_path / "blob"
    blob.write_bytes(b"skipped" + data)
    for algorithm in ("sha256", "sha512"):
        with open(blob, "rb") as f:
            f.seek(len(b"skipped"))
            assert digests.file_hexdigest(f, algorithm, size) == \
                hashlib.new(algorithm, data).hexdigest()
            assert f.tell() == len(b"skipped") + size


def test_an_unknown_algorithm_is_refused_as_hashlib_refuses_it() -> None:
    with pytest.raises(ValueError):
        digests.file_hexdigest(io.BufferedReader(io.BytesIO(b"x")), "nope", 1)


def test_small_input_does_not_load_hashlib(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"{}" * 100)
    probe = ("import sys; from provisioner import digests; "
             "print(digests.sha256_hex(b'x'), end=' '); "
             f"f = open({str(blob)!r}, 'rb'); print(digests.file_hexdigest(f, 'sha256', 200)); "
             "assert 'hashlib' not in sys.modules, 'hashlib was loaded'")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [hashlib.sha256(b"x").hexdigest(),
                                     hashlib.sha256(b"{}" * 100).hexdigest()]
