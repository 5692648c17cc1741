"""F13a–F13f through the fixture runner (`mbuzz run-fixtures`): the app install flow, the query HMAC known
answers and the session-token cases against a live gateway whose outbound calls reach a local fake Shopify
(shopify.md SHP-17, SHP-20..SHP-23, SHP-30, SHP-31)."""

from __future__ import annotations

import pytest

from tests.unit.connectors.sgtm.test_normalize import SHARED
from tools.fixtures import run_fixture

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


@pytest.mark.parametrize("case", ["F13a", "F13b", "F13c", "F13d", "F13e", "F13f"])
def test_SHP17_SHP23_SHP30_install_fixtures(case: str) -> None:
    assert run_fixture(SHARED / "fixtures" / "shopify" / f"{case}.json") == []
