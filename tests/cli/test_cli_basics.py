"""The command line: usage errors, version, schema export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.manifest.overlay import KINDS


@pytest.mark.parametrize(
    "argv", [[], ["bogus"], ["validate"], ["schema", "Nope"], ["validate", "--no-such-flag", "x"]]
)
def test_usage_errors_exit_64_with_a_short_message(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 64
    err = capsys.readouterr().err
    assert err.startswith("provisioner: ")
    assert "Traceback" not in err
    assert len(err.splitlines()) <= 6


def test_usage_error_from_the_real_process_has_no_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "provisioner", "frobnicate"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 64
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) >= {"format_version", "version", "grpcio", "protobuf"}


def test_schema_print_one_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "cell"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Cell"
    assert schema["properties"]["kind"] == {"const": "Cell"}


def test_schema_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([f"{k.lower()}.schema.json" for k in KINDS] + ["manifest.schema.json"])
