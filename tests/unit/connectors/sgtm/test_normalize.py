"""sGTM payload validation and the GA4 mapping (sgtm.md SGTM-21..SGTM-29), against the fixtures' commands.

For every sGTM fixture with a template block, the body the template sends (``template.http_requests[0].body``
of the expected file) is validated and mapped; the connector commands must match ``gateway.commands`` by the
fixture rules (subset match, ``properties_exact``, ``absent``, ``<present>``).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.sgtm.normalize import output_kind, outputs_for, validate
from core.fingerprint import clean_user_agent, fingerprint, mask_ip
from tools.fixtures import Placeholders, match_commands

SHARED = Path(os.environ.get("MBUZZ_SHARED_DIR") or Path(__file__).parents[5] / "shared")
FIXTURES = SHARED / "fixtures" / "sgtm"
NOW = datetime(2026, 5, 20, 3, 20, tzinfo=UTC)


def _cases() -> list[str]:
    found = []
    for path in sorted(FIXTURES.glob("*.expected.json")):
        expected = json.loads(path.read_text())
        if expected.get("template", {}).get("http_requests") and "commands" in expected.get("gateway", {}):
            found.append(path.name.removesuffix(".expected.json"))
    return found


CASES = _cases()
SEED = json.loads((SHARED / "fixtures" / "seed.json").read_text())


def _tenant_of(case: str) -> tuple[str, str, bool]:
    """The account and environment of the fixture's key, and whether it has an active Shopify installation."""
    key = json.loads((FIXTURES / f"{case}.json").read_text())["template"]["params"]["apiKey"]
    row = next(k for k in SEED["api_keys"] if k["plaintext"] == key)
    shopify = any(i["account_id"] == row["account_id"] and i["environment"] == row["environment"]
                  and i["status"] == "active" for i in SEED["installations"])
    return row["account_id"], row["environment"], shopify


def _decode(body: object) -> Any:
    return json.loads(json.dumps(body), parse_float=Decimal)  # the endpoint parses with decimal floats


@pytest.mark.parametrize("case", CASES)
def test_SGTM24_template_bodies_map_to_the_fixture_commands(case: str) -> None:
    expected = json.loads((FIXTURES / f"{case}.expected.json").read_text())
    body = _decode(expected["template"]["http_requests"][0]["body"])
    payload, errors = validate(body, NOW)
    assert errors == [] and payload is not None
    masked = mask_ip(payload.get("ip"), [])
    account_id, environment, shopify = _tenant_of(case)
    outputs = outputs_for(payload, account_id, environment,
                          fingerprint(masked, clean_user_agent(payload.get("user_agent"))), shopify_active=shopify)
    gateway = expected["gateway"]
    assert outputs.visitor_id == gateway["body"]["visitor_id"]
    assert outputs.consent == gateway["body"]["consent"]
    assert outputs.skipped_reason == gateway["body"].get("skipped_reason")
    assert match_commands(gateway, outputs.commands, Placeholders()) == []
    assert [(output_kind(o), o["idempotency_key"]) for o in outputs.commands] == [
        (o["kind"], o["key"]) for o in gateway["body"]["outputs"]]


def _body(**extra: Any) -> dict[str, Any]:
    return {"v": 1, "event_name": "page_view", "timestamp_ms": int(NOW.timestamp() * 1000),
            "visitor_id": "a" * 64, "page_location": "https://shop.example/p?x=1#top", **extra}


def test_SGTM21_every_failure_is_listed_with_its_field() -> None:
    payload, errors = validate(_decode({"v": 2, "event_name": "9bad", "timestamp_ms": 1.5, "visitor_id": "xyz",
                                        "value": "-3", "currency": "dollars", "items": [{"quantity": 0}],
                                        "consent": {"analytics_storage": "maybe"}}), NOW)
    assert payload is None
    assert errors == [
        "v: must be 1",
        "event_name: must start with a letter and hold at most 40 letters, digits or underscores",
        "timestamp_ms: must be an integer",
        "visitor_id: must be 64 lower-case hex characters",
        "value: must be between 0 and 1000000000000",
        "currency: must be a 3-letter ISO 4217 code",
        "items[0].quantity: must be an integer from 1 to 100000",
        "consent.analytics_storage: must be granted, denied or unknown",
    ]
    old = int(NOW.timestamp() * 1000) - 73 * 3600 * 1000
    assert validate(_body(timestamp_ms=old), NOW)[1] == [
        "timestamp_ms: must be within 72 hours before and 5 minutes after the server time"]
    assert validate(_body(visitor_id=None, page_location=None), NOW)[1] == [
        "page_location: required for a session",
        "visitor_id: one of visitor_id, ga_client_id or user_id is required"]
    assert validate(_body(event_name="refund"), NOW)[1] == ["transaction_id: required for refund"]
    assert validate(_body(value="10"), NOW)[1] == ["currency: required when value is above 0"]


def test_SGTM22_denied_consent_keeps_only_conversions_without_identifiers() -> None:
    denied = {"analytics_storage": "denied", "ad_storage": "denied"}
    page, _ = validate(_decode(_body(consent=denied)), NOW)
    assert page is not None
    skipped = outputs_for(page, "acct_02", "live", "f" * 32)
    assert (skipped.commands, skipped.skipped_reason, skipped.visitor_id) == ([], "consent_denied", None)
    purchase, _ = validate(_decode(_body(event_name="purchase", consent=denied, transaction_id="T-1", value=12.5,
                                         currency="eur", user_id="u1", user_agent="UA", ip="203.0.113.9",
                                         user_data={"email_sha256": "b" * 64})), NOW)
    assert purchase is not None
    out = outputs_for(purchase, "acct_02", "live", "f" * 32)
    (conversion,) = out.commands
    assert out.visitor_id is None and out.consent == "denied"
    assert conversion["visitor_id"] != "a" * 64 and len(conversion["visitor_id"]) == 64  # sha256("anon:" + key)
    for gone in ("user_id", "identifier", "user_agent", "device_fingerprint"):
        assert gone not in conversion
    assert conversion["revenue"] == "12.50" and conversion["currency"] == "EUR"
    assert conversion["properties"]["url"] == "https://shop.example/p" and conversion["properties"]["consent"] == \
        "denied"


def test_SGTM24_page_view_gives_a_session_and_an_event_and_ignored_events_nothing() -> None:
    page, _ = validate(_decode(_body(page_title="Home", event_id="e1")), NOW)
    assert page is not None
    out = outputs_for(page, "acct_02", "live", None)
    assert [(c["kind"], c["idempotency_key"]) for c in out.commands] == [
        ("session", "sgtm:acct_02:session:e1"), ("event", "sgtm:acct_02:evt:page_view:e1")]
    assert out.commands[1]["properties"] == {"title": "Home", "event_id": "e1"}
    ignored, _ = validate(_decode(_body(event_name="user_engagement")), NOW)
    assert ignored is not None and outputs_for(ignored, "acct_02", "live", None).skipped_reason == \
        "ignored_event"
    test_ping, _ = validate(_decode(_body(page_location="https://gtm-msr.appspot.com/render")), NOW)
    assert test_ping is not None
    assert outputs_for(test_ping, "acct_02", "live", None).skipped_reason == "measurement_test"


def test_SGTM29_refund_and_SGTM30_order_link_with_shopify() -> None:
    refund, _ = validate(_decode(_body(event_name="refund", transaction_id="T-9", value="5", currency="USD",
                                       event_id="r1")), NOW)
    assert refund is not None
    (adjustment,) = outputs_for(refund, "acct_02", "live", None).commands
    assert adjustment["kind"] == "order_adjustment" and adjustment["amount"] == "5.00"
    assert adjustment["conversion_key"] == "sgtm:acct_02:txn:T-9"
    assert adjustment["idempotency_key"] == "sgtm:acct_02:refund:T-9:r1"
    assert outputs_for(refund, "acct_02", "live", None, shopify_active=True).skipped_reason == \
        "shopify_refunds"
    purchase, _ = validate(_decode(_body(event_name="purchase", transaction_id="T-9", value="5", currency="USD")),
                           NOW)
    assert purchase is not None
    (link,) = outputs_for(purchase, "acct_02", "live", None, shopify_active=True).commands
    assert link["kind"] == "sgtm_order_link" and link["hold_until"] == "2026-05-20T09:20:00Z"
