"""Query and body HMAC, host and freshness (shopify.md SHP-16, SHP-17, SHP-18, SHP-33): F13e's known answers."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.shopify.querysign import (
    body_hmac_valid,
    canonical_query,
    decoded_host,
    fresh,
    query_hmac_valid,
)
from tests.unit.connectors.sgtm.test_normalize import SHARED

F13E = json.loads((SHARED / "fixtures" / "shopify" / "F13e.json").read_text())
F13E_EXPECTED = json.loads((SHARED / "fixtures" / "shopify" / "F13e.expected.json").read_text())


@pytest.mark.parametrize(("case", "valid"), list(zip(F13E["cases"], F13E_EXPECTED["results"], strict=True)))
def test_SHP17_F13e_known_answers(case: dict[str, Any], valid: bool) -> None:
    assert case["valid"] is valid
    assert query_hmac_valid(case["query"], [case["secret"]]) is valid


@pytest.mark.parametrize(("case", "valid"), list(zip(F13E["webhook_cases"], F13E_EXPECTED["webhook_results"],
                                                     strict=True)))
def test_SHP33_F13e_body_known_answers(case: dict[str, str], valid: bool) -> None:
    """`body_hmac_valid` is what both webhook routes call (SHP-33, SHP-78)."""
    raw = case["body_raw"].encode()
    assert body_hmac_valid(raw, case["header"], [case["secret"]]) is valid


def test_SHP17_previous_secret_verifies_during_rotation() -> None:
    query = F13E["cases"][0]["query"]
    assert query_hmac_valid(query, ["new-secret", "hush"])
    assert not query_hmac_valid(query, ["new-secret"])
    assert not query_hmac_valid(query, [])


def test_SHP17_canonical_message_escapes_and_lists() -> None:
    # hmac and signature are dropped, keys sorted, %/&/= escaped in keys and %/& in values, name[] a JSON list
    raw = "b=1%262&a%3Dx=%25&ids%5B%5D=2&ids%5B%5D=1&signature=s&hmac=h"
    assert canonical_query(raw) == 'a%3Dx=%25&b=1%262&ids=["2", "1"]'


def test_SHP17_repeated_plain_parameter_and_missing_hmac_never_verify() -> None:
    query = F13E["cases"][1]["query"]
    assert query_hmac_valid(query, ["hush"])
    assert not query_hmac_valid(query + "&shop=evil.myshopify.com", ["hush"])
    assert not query_hmac_valid(query.replace("hmac=", "x="), ["hush"])
    assert not query_hmac_valid(query + "&hmac=00", ["hush"])  # two hmac values


def test_SHP16_host_decoding() -> None:
    def enc(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    assert decoded_host(enc("admin.shopify.com/store/birch-goods")) == "admin.shopify.com/store/birch-goods"
    assert decoded_host(enc("birch-goods.myshopify.com/admin")) == "birch-goods.myshopify.com/admin"
    assert decoded_host(enc("admin.shopify.com/store/birch-goods").rstrip("=")) is not None  # padding optional
    for bad in ("evil.com/admin", "admin.shopify.com/store/Birch", "admin.shopify.com/store/x/../y",
                "birch-goods.myshopify.com/admin/extra"):
        assert decoded_host(enc(bad)) is None
    assert decoded_host("%%%") is None
    assert decoded_host(None) is None


def test_SHP18_freshness_windows() -> None:
    now = datetime(2026, 5, 20, 3, 30, tzinfo=UTC)
    stamp = int(now.timestamp())
    assert fresh(str(stamp - 300), now, 300)
    assert not fresh(str(stamp - 301), now, 300)
    assert fresh(str(stamp + 60), now, 300)
    assert not fresh(str(stamp + 61), now, 300)
    assert fresh(str(stamp - 3600), now, 3600)
    assert not fresh(str(stamp - 3601), now, 3600)
    assert not fresh("1779247790.5", now, 300)
    assert not fresh(None, now, 300)
