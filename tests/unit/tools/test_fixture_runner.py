"""`python -m tools.fixtures` (shared/fixtures/README.md): every sGTM fixture passes through the real endpoints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.connectors.sgtm.test_normalize import FIXTURES

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="template fixtures need Node.js (SGTM-44)")


def _scenarios() -> list[Path]:
    return sorted(p for p in FIXTURES.glob("F*.json")
                  if not p.name.endswith(".expected.json"))


ROOT = Path(__file__).resolve().parents[3]


def _run_fixtures(*paths: Path) -> subprocess.CompletedProcess[str]:
    """The command an operator types in a checkout (README): `python -m tools.fixtures PATH...`."""
    return subprocess.run([sys.executable, "-m", "tools.fixtures", *map(str, paths)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)


def test_fixture_runner_passes_every_sgtm_fixture() -> None:
    paths = _scenarios()
    assert len(paths) >= 10
    result = _run_fixtures(*paths)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"{len(paths)} of {len(paths)} fixtures pass"


def test_fixture_runner_reports_each_mismatch(tmp_path: Path) -> None:
    (tmp_path / "sgtm").mkdir()
    shutil.copy(FIXTURES.parent / "seed.json", tmp_path / "seed.json")
    shutil.copy(FIXTURES / "F14.json", tmp_path / "sgtm" / "F14.json")
    expected = json.loads((FIXTURES / "F14.expected.json").read_text())
    expected["gateway"]["commands"][1]["revenue"] = "250.00"
    expected["gateway"]["body"]["consent"] = "unknown"
    (tmp_path / "sgtm" / "F14.expected.json").write_text(json.dumps(expected))
    result = _run_fixtures(tmp_path / "sgtm" / "F14.json")
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines[:-1] == [
        f"{tmp_path / 'sgtm' / 'F14.json'}: F14 gateway body.consent: expected 'unknown', got 'granted'",
        f"{tmp_path / 'sgtm' / 'F14.json'}: F14 commands[1].revenue: expected '250.00', got '249.00'",
    ]
    assert lines[-1] == "0 of 1 fixtures pass"


def test_fixture_runner_names_a_missing_scenario_file(tmp_path: Path) -> None:
    result = _run_fixtures(tmp_path / "F99.json")
    assert result.returncode == 2
    assert f"no such scenario file: {tmp_path / 'F99.json'}" in result.stderr
