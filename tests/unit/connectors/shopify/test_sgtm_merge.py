"""sGTM purchases on an account that sells through Shopify (sgtm.md SGTM-29..SGTM-32, shopify.md SHP-50 step 4,
SHP-52): one conversion per order, whichever arrives first.

The purchase is the body the real template sends for F14c, under a fresh transaction id per test; orders are
webhook deliveries of the F1 order under the matching name. Holds are released by the Shopify sweep with the
services' clock moved, as the worker (or an inline `/shopify/*` request) runs it.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from connectors.shopify.sweep import sweep_due
from core.storage import models as m
from tests.unit.connectors.sgtm.test_normalize import FIXTURES
from tests.unit.connectors.shopify.test_orders import F1, PROCESSED, _at, _deliver, _ids, _order, _row, shop

__all__ = ["shop"]

F14C = json.loads((FIXTURES / "F14c.expected.json").read_text())["template"]["http_requests"][0]
PURCHASE_AT = PROCESSED + timedelta(seconds=40)


def _purchase(client: FlaskClient, transaction_id: str, event: str = "purchase") -> Any:
    body = copy.deepcopy(F14C["body"])
    body.update(transaction_id=transaction_id, event_name=event, event_id=f"evt_{transaction_id}_{event}",
                timestamp_ms=int(PURCHASE_AT.timestamp() * 1000))
    resp = client.post("/sgtm/v1/collect", data=json.dumps(body), headers={
        "Content-Type": "application/json", "Authorization": F14C["headers"]["Authorization"]})
    assert resp.status_code == 202, resp.get_json()
    return resp.get_json()


def _link(app: Flask, transaction_id: str) -> m.SgtmOrderLink:
    with app.config["MBUZZ"].sessions() as db:
        link = db.scalars(sa.select(m.SgtmOrderLink).where(m.SgtmOrderLink.transaction_id == transaction_id)).one()
        db.expunge(link)
        return link


def _conversions(app: Flask, *keys: str) -> dict[str, m.Conversion]:
    with app.config["MBUZZ"].sessions() as db:
        found = list(db.scalars(sa.select(m.Conversion).where(m.Conversion.account_id == "acct_01",
                                                              m.Conversion.idempotency_key.in_(keys))))
        for conv in found:
            db.expunge(conv)
        return {str(c.idempotency_key): c for c in found}


def _numbered_order(**changes: object) -> tuple[dict[str, Any], str]:
    """A fresh order named `#<n>` whose customer is new too, so no earlier test's identity can link it."""
    number = str(next(_ids))
    email = f"buyer-{number}@example.com"
    customer = {**F1["customer"], "id": int(number), "email": email}
    return _order(name=f"#{number}", email=email, customer=customer, **changes), number


def test_SGTM31_purchase_without_its_order_is_held_then_recorded_after_six_hours(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    txn = str(next(_ids))
    _at(app, PURCHASE_AT)
    answer = _purchase(client, txn)
    assert answer["outputs"] == [{"kind": "conversion", "key": f"sgtm:acct_01:txn:{txn}", "status": "held"}]
    link = _link(app, txn)
    assert (link.status, link.hold_until) == ("pending", PURCHASE_AT + timedelta(hours=6))
    _at(app, PURCHASE_AT + timedelta(hours=6) - timedelta(seconds=1))
    sweep_due(app.config["MBUZZ"])
    assert _conversions(app, f"sgtm:acct_01:txn:{txn}") == {}  # still waiting for Shopify
    _at(app, PURCHASE_AT + timedelta(hours=6))
    sweep_due(app.config["MBUZZ"])
    conv = _conversions(app, f"sgtm:acct_01:txn:{txn}")[f"sgtm:acct_01:txn:{txn}"]
    assert (conv.revenue_minor, conv.currency, conv.status) == (12950, "AUD", "active")
    assert conv.converted_at == PURCHASE_AT
    assert _link(app, txn).status == "converted"
    sweep_due(app.config["MBUZZ"])  # released once
    again = _purchase(client, txn)  # a reload of the thank-you page afterwards is the same sale
    assert again["outputs"][0]["status"] == "duplicate" and again["outputs"][0]["duplicate"] is True
    assert len(_conversions(app, f"sgtm:acct_01:txn:{txn}")) == 1


def test_SGTM32_a_late_shopify_order_supersedes_the_released_purchase(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    order, txn = _numbered_order(note_attributes=[{"name": "_mbuzz_visitor_id", "value": "cd" * 32}])
    _at(app, PURCHASE_AT)
    _purchase(client, txn)
    _at(app, PURCHASE_AT + timedelta(hours=6))
    sweep_due(app.config["MBUZZ"])
    sgtm_key, shopify_key = f"sgtm:acct_01:txn:{txn}", f"shopify:inst_01:order:{order['id']}"
    assert _conversions(app, sgtm_key)[sgtm_key].status == "active"
    # The order's webhook comes late (processed_at is still within 24 h of the purchase).
    assert _deliver(client, order) == 200
    both = _conversions(app, sgtm_key, shopify_key)
    assert both[shopify_key].status == "active" and both[shopify_key].revenue_minor == 12950
    assert both[sgtm_key].status == "cancelled"  # kept, but out of reports: one active conversion per order
    with app.config["MBUZZ"].sessions() as db:
        cancel = db.scalars(sa.select(m.ConversionAdjustment).where(
            m.ConversionAdjustment.conversion_key == sgtm_key)).one()
        assert (cancel.adjustment, cancel.status) == ("cancel", "applied")
        assert cancel.properties["cancel_reason"] == "superseded_by_shopify"
    link = _link(app, txn)
    assert (link.status, link.merged_into) == ("superseded", shopify_key)


def test_SGTM31_SHP52_purchase_links_a_parked_order_at_once(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    order, txn = _numbered_order()
    _at(app, PROCESSED + timedelta(seconds=30))
    assert _deliver(client, order) == 200
    assert _row(app, order["id"]).status == "parked"  # no pixel, no cart attribute: nothing links it yet
    _at(app, PURCHASE_AT)
    answer = _purchase(client, txn)
    shopify_key = f"shopify:inst_01:order:{order['id']}"
    assert answer["outputs"] == [{"kind": "conversion", "key": f"sgtm:acct_01:txn:{txn}", "status": "merged",
                                  "merged_into": shopify_key, "duplicate": True}]
    row = _row(app, order["id"])
    assert (row.status, row.attribution_method, row.visitor_id) == ("converted", "sgtm_transaction",
                                                                    answer["visitor_id"])
    assert set(_conversions(app, shopify_key, f"sgtm:acct_01:txn:{txn}")) == {shopify_key}
    assert (_link(app, txn).status, _link(app, txn).merged_into) == ("merged", shopify_key)
    _at(app, PURCHASE_AT + timedelta(hours=7))
    sweep_due(app.config["MBUZZ"])  # a merged link is never released
    assert set(_conversions(app, shopify_key, f"sgtm:acct_01:txn:{txn}")) == {shopify_key}


def test_SGTM31_an_order_linked_another_way_still_claims_the_held_purchase(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    order, txn = _numbered_order(note_attributes=[{"name": "_mbuzz_visitor_id", "value": "ef" * 32}])
    _at(app, PURCHASE_AT)
    assert _purchase(client, txn)["outputs"][0]["status"] == "held"
    assert _deliver(client, order) == 200  # linked by its cart attribute (step 1), not by the purchase
    shopify_key = f"shopify:inst_01:order:{order['id']}"
    assert _row(app, order["id"]).attribution_method == "cart_attribute"
    assert (_link(app, txn).status, _link(app, txn).merged_into) == ("merged", shopify_key)
    _at(app, PURCHASE_AT + timedelta(hours=7))
    sweep_due(app.config["MBUZZ"])
    assert set(_conversions(app, shopify_key, f"sgtm:acct_01:txn:{txn}")) == {shopify_key}


def test_SGTM29_refunds_come_from_shopify_webhooks(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    _at(app, PURCHASE_AT)
    answer = _purchase(client, str(next(_ids)), event="refund")
    assert answer["outputs"] == [] and answer["skipped_reason"] == "shopify_refunds"


def test_SGTM33_without_an_active_installation_a_purchase_is_an_ordinary_conversion(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    with app.config["MBUZZ"].sessions.begin() as db:
        db.get(m.Installation, "inst_01").status = "uninstalled"
    try:
        txn = str(next(_ids))
        _at(app, PURCHASE_AT)
        out = _purchase(client, txn)["outputs"][0]
        assert (out["status"], out["duplicate"]) == ("created", False)
        assert set(_conversions(app, f"sgtm:acct_01:txn:{txn}")) == {f"sgtm:acct_01:txn:{txn}"}
    finally:
        with app.config["MBUZZ"].sessions.begin() as db:
            db.get(m.Installation, "inst_01").status = "active"


def test_SGTM31_a_hold_ending_after_orders_create_waits_for_the_paid_order(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    order, txn = _numbered_order(note_attributes=[{"name": "_mbuzz_visitor_id", "value": "ad" * 32}])
    _at(app, PURCHASE_AT)
    _purchase(client, txn)
    assert _deliver(client, order, topic="orders/create") == 200  # the order is known, not paid yet
    shopify_key = f"shopify:inst_01:order:{order['id']}"
    _at(app, PURCHASE_AT + timedelta(hours=6))
    sweep_due(app.config["MBUZZ"])
    assert (_link(app, txn).status, _link(app, txn).merged_into) == ("merged", shopify_key)
    assert _conversions(app, shopify_key, f"sgtm:acct_01:txn:{txn}") == {}  # Shopify reports the sale when paid
    assert _deliver(client, order) == 200
    assert set(_conversions(app, shopify_key, f"sgtm:acct_01:txn:{txn}")) == {shopify_key}
