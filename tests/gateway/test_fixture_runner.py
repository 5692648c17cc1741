"""`mbuzz run-fixtures` (shared/fixtures/README.md): every sGTM fixture passes through the real endpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from flask import Flask

from tests.connectors.sgtm.test_normalize import FIXTURES

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="template fixtures need Node.js (SGTM-44)")


def _scenarios() -> list[Path]:
    return sorted(p for p in FIXTURES.glob("F*.json")
                  if not p.name.endswith(".expected.json"))


def test_fixture_runner_passes_every_sgtm_fixture(app: Flask) -> None:
    paths = _scenarios()
    assert len(paths) >= 10
    result = app.test_cli_runner().invoke(args=["mbuzz", "run-fixtures", *map(str, paths)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"{len(paths)} of {len(paths)} fixtures pass"


def test_fixture_runner_reports_each_mismatch(app: Flask, tmp_path: Path) -> None:
    (tmp_path / "sgtm").mkdir()
    shutil.copy(FIXTURES.parent / "seed.json", tmp_path / "seed.json")
    shutil.copy(FIXTURES / "F14.json", tmp_path / "sgtm" / "F14.json")
    expected = json.loads((FIXTURES / "F14.expected.json").read_text())
    expected["gateway"]["commands"][1]["revenue"] = "250.00"
    expected["gateway"]["body"]["consent"] = "unknown"
    (tmp_path / "sgtm" / "F14.expected.json").write_text(json.dumps(expected))
    result = app.test_cli_runner().invoke(args=["mbuzz", "run-fixtures", str(tmp_path / "sgtm" / "F14.json")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[:-1] == [
        f"{tmp_path / 'sgtm' / 'F14.json'}: F14 gateway body.consent: expected 'unknown', got 'granted'",
        f"{tmp_path / 'sgtm' / 'F14.json'}: F14 commands[1].revenue: expected '250.00', got '249.00'",
    ]
    assert lines[-1] == "0 of 1 fixtures pass"
