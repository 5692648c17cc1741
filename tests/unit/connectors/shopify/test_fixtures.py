"""Every Shopify fixture through `mbuzz run-fixtures`' runner: a live gateway, real HTTP, the fixture rules.

The OAuth and session-token fixtures (F13*) are run by the install tests; the rest are here, each on a fresh
database loaded from `seed.json` with its `requires` played first, then each of its `variants` on a fresh
database of its own (README rule 4: F4's `offline_orders` and F5's `exclude_test_orders`).
"""

from __future__ import annotations

import pytest

from tests.unit.connectors.sgtm.test_normalize import SHARED
from tools.fixtures import run_fixture

FOLDER = SHARED / "fixtures" / "shopify"
CASES = sorted(p.name.removesuffix(".json") for p in FOLDER.glob("F*.json")
               if not p.name.endswith(".expected.json") and not p.name.startswith("F13"))


@pytest.mark.parametrize("case", CASES)
def test_shopify_fixture(case: str) -> None:
    """F1 (SHP-40..43), F2/F2b/F2c (SHP-34, SHP-58), F4 (SHP-47), F5 (SHP-46), F6* (SHP-68..76), F8/F8b
    (SHP-65, SHP-66), F9 (SHP-67), F10* (SHP-87..89, Q-48), F11 (SHP-84), F12* (SHP-32..35, Q-43)."""
    assert run_fixture(FOLDER / f"{case}.json") == []
