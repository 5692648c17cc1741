"""ATT-66 acceptance vectors: the engine must reproduce every case exactly.

Each line of shared/fixtures/attribution/vectors.jsonl is its own test, judged by the same
``core.attribution.vectors.check_case`` that ``mbuzz check-vectors`` uses. Data-driven cases fit their
`paths` corpus and check the fit values (6 dp) as well as the credits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from core.attribution.vectors import check_case


def vectors_path() -> Path:
    shared = os.environ.get("MBUZZ_SHARED_DIR")
    base = Path(shared) if shared else Path(__file__).parents[4].parent / "shared"
    return base / "fixtures/attribution/vectors.jsonl"


def _load() -> list[dict[str, Any]]:
    path = vectors_path()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


CASES = _load()


def test_ATT66_vector_file_present() -> None:
    assert CASES, f"no vectors found at {vectors_path()}"
    assert {c["model"] for c in CASES} >= {"markov_chain", "shapley_value", "time_decay"}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_ATT66_vector(case: dict[str, Any]) -> None:
    assert check_case(case) == []


def test_ATT66_a_wrong_expectation_is_reported() -> None:
    """The checker is not a rubber stamp: a changed credit, fit value or fallback is named."""
    case = next(c for c in CASES if c["id"] == "markov-example-fit")
    broken = json.loads(json.dumps(case))
    broken["expected"][0]["credit"] = "0.2803"
    broken["expected_removal_effects"]["email"] = "0.798659"
    problems = check_case(broken)
    assert len(problems) == 2
    assert problems[0].startswith("expected_removal_effects") and problems[1].startswith("rows")
