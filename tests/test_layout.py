"""The tests mirror the source tree (issue 18 item 8): `tests/unit/<package path>` for the tests of one package,
`tests/integration` for what runs real processes together (gunicorn, workers, Redis, PostgreSQL), `tests/e2e` for
the browser. One home per package: a folder under tests/unit is a folder of the product or of its tooling."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
HOMES = {"unit", "integration", "e2e"}
SKIPPED = {"__pycache__", "node_modules"}


def test_the_tests_have_three_homes() -> None:
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and p.name not in SKIPPED}
    assert folders == HOMES


def test_every_unit_folder_mirrors_a_package_folder() -> None:
    unit = TESTS / "unit"
    strays = [str(folder.relative_to(TESTS)) for folder in sorted(unit.rglob("*"))
              if folder.is_dir() and not SKIPPED & set(folder.parts)
              and not (ROOT / folder.relative_to(unit) / "__init__.py").is_file()]
    assert strays == []
