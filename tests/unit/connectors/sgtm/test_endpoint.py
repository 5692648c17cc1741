"""`POST /sgtm/v1/collect` through the Flask app (sgtm.md SGTM-19..SGTM-34), inline mode, both databases."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from core.accounts import create_api_key
from core.storage import models as m
from tests.unit.connectors.sgtm.test_normalize import FIXTURES, SEED
from tools.fixtures import Placeholders, match, seed

NOW = datetime(2026, 5, 20, 3, 20, tzinfo=UTC)


@pytest.fixture()
def seeded(app: Flask) -> Iterator[FlaskClient]:
    """The accounts and API keys of seed.json (exact ids and plaintexts), with the clock at the fixtures' now."""
    services = app.config["MBUZZ"]
    seed(app, SEED)
    services.clock = lambda: NOW
    try:
        yield app.test_client()
    finally:
        services.clock = lambda: datetime.now(UTC)


def _template_body(case: str) -> tuple[dict[str, Any], str]:
    expected = json.loads((FIXTURES / f"{case}.expected.json").read_text())
    request = expected["template"]["http_requests"][0]
    return request["body"], request["headers"]["Authorization"]


def _post(client: FlaskClient, body: object, auth: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post("/sgtm/v1/collect", data=data, headers=headers)


def _subset(expected: Any, got: Any) -> bool:
    """The fixture rules for answers (placeholders included), as the fixture runner applies them."""
    return match(expected, got, "body", Placeholders()) == []


def test_SGTM33_purchase_then_reload_is_one_conversion(app: Flask, seeded: FlaskClient) -> None:
    """F14 then F14b: the template's purchase body creates the conversion; the thank-you reload is a duplicate."""
    body, auth = _template_body("F14")
    first = _post(seeded, body, auth)
    assert first.status_code == 202, first.get_json()
    f14 = json.loads((FIXTURES / "F14.expected.json").read_text())["gateway"]["body"]
    assert _subset(f14, first.get_json()), first.get_json()
    again = _post(seeded, body, auth)
    f14b = json.loads((FIXTURES / "F14b.expected.json").read_text())["gateway"]["body"]
    f14b["outputs"][1]["id"] = first.get_json()["outputs"][1]["id"]  # <same_as:F14.conversion>
    assert _subset(f14b, again.get_json()), again.get_json()
    with app.config["MBUZZ"].sessions() as db:
        conversions = db.scalars(sa.select(m.Conversion).where(
            m.Conversion.account_id == "acct_02",
            m.Conversion.idempotency_key == "sgtm:acct_02:txn:ORD-20260520-0042")).all()
        assert len(conversions) == 1
        conv = conversions[0]
        assert (conv.revenue_minor, conv.currency, conv.environment) == (24900, "AUD", "live")
        user = db.get(m.User, (conv.account_id, conv.user_id)) if conv.user_id else None
        assert user is not None and user.user_key == "crm_48213"
        assert user.email_sha256 == "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"


def test_SGTM19_keys(app: Flask, seeded: FlaskClient) -> None:
    body, auth = _template_body("F14")
    assert _post(seeded, body, None).get_json() == {"error": "missing_api_key"}
    for bad in ("Bearer pk_sgtm_live_" + "0" * 32, "Bearer nonsense", "Basic abc", "Bearer pk_px_" + "1" * 32):
        resp = _post(seeded, body, bad)
        assert (resp.status_code, resp.get_json()) == (401, {"error": "invalid_api_key"})
    with app.config["MBUZZ"].sessions.begin() as db:
        created = create_api_key(db, "acct_02", "test", kind="sgtm")
    assert created.plaintext.startswith("pk_sgtm_test_") and len(created.plaintext) == len("pk_sgtm_test_") + 32
    rest = seeded.post("/api/v1/events", json={"event_type": "x", "visitor_id": "v"},
                       headers={"Authorization": f"Bearer {created.plaintext}"})
    assert rest.status_code == 401  # write-only: accepted nowhere else


def test_SGTM20_limits_and_SGTM21_validation(seeded: FlaskClient) -> None:
    _, auth = _template_body("F14")
    assert (_post(seeded, b"{" + b" " * 40_000 + b"}", auth).status_code) == 413
    too_big = _post(seeded, b"{" + b" " * 40_000 + b"}", auth).get_json()
    assert too_big == {"error": "payload_too_large"}
    for raw in (b"not json", b"[1, 2]", b"[" * 16_000 + b"]" * 16_000):  # the last nests beyond the parser
        resp = _post(seeded, raw, auth)
        assert (resp.status_code, resp.get_json()) == (400, {"error": "invalid_json"})
    resp = _post(seeded, {"v": 1, "event_name": "page_view", "timestamp_ms": 1}, auth)
    assert resp.status_code == 422
    assert resp.get_json() == {"success": False, "errors": [
        "timestamp_ms: must be within 72 hours before and 5 minutes after the server time"]}
    huge = _post(seeded, {"v": 1, "event_name": "page_view", "timestamp_ms": 10**30}, auth)
    assert huge.status_code == 422 and huge.get_json()["errors"] == [
        "timestamp_ms: must be within 72 hours before and 5 minutes after the server time"]


def test_SGTM22_denied_page_view_stores_nothing(app: Flask, seeded: FlaskClient) -> None:
    _, auth = _template_body("F14")
    body = {"v": 1, "event_name": "page_view", "timestamp_ms": int(NOW.timestamp() * 1000),
            "visitor_id": "c" * 64, "page_location": "https://shop.example.com/",
            "consent": {"analytics_storage": "denied", "ad_storage": "denied"}}
    resp = _post(seeded, body, auth)
    assert resp.status_code == 202
    assert resp.get_json() == {"status": "accepted", "visitor_id": None, "consent": "denied", "outputs": [],
                               "skipped_reason": "consent_denied"}
    with app.config["MBUZZ"].sessions() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(m.Visitor).where(
            m.Visitor.visitor_key == "c" * 64)) == 0


@pytest.mark.parametrize("case", ["F17a", "F17b", "F17c", "F17d", "F17e"])
def test_SGTM35_published_v1_template_bodies_are_accepted(app: Flask, seeded: FlaskClient, case: str) -> None:
    scenario = json.loads((FIXTURES / f"{case}.json").read_text())
    expected = json.loads((FIXTURES / f"{case}.expected.json").read_text())
    for step, want in zip(scenario["steps"], expected["steps"], strict=True):
        request = step["request"]
        resp = seeded.open(request["path"], method=request["method"], data=request["body_raw"].encode(),
                           headers=request["headers"])
        assert resp.status_code == want["response"]["status"], resp.get_json()
        assert _subset(want["response"]["body"], resp.get_json()), resp.get_json()
        for check in want.get("after_processing", []):
            if check["table"] == "visitors":
                with app.config["MBUZZ"].sessions() as db:
                    count = db.scalar(sa.select(sa.func.count()).select_from(m.Visitor).where(
                        m.Visitor.account_id == check["where"]["account_id"],
                        m.Visitor.visitor_key == check["where"]["visitor_id"]))
                assert count == check["expect"]["count"]
            elif check["table"] == "conversions":
                with app.config["MBUZZ"].sessions() as db:
                    rows = db.scalars(sa.select(m.Conversion).where(
                        m.Conversion.account_id == check["where"]["account_id"],
                        m.Conversion.conversion_type == check["where"]["conversion_type"])).all()
                assert len(rows) == check["expect"]["count"] and rows[0].revenue_minor is None


def test_SGTM23_ga_client_alias_keeps_one_visitor(app: Flask, seeded: FlaskClient) -> None:
    """With the cookie the client id is remembered; a later cookie-less request of that client is the same visitor."""
    _, auth = _template_body("F14")
    ts = int(NOW.timestamp() * 1000)
    cookie, client_id = "d" * 64, "777.888"
    base = {"v": 1, "event_name": "view_item", "timestamp_ms": ts, "ga_client_id": client_id}
    first = _post(seeded, {**base, "visitor_id": cookie, "event_id": "a1"}, auth).get_json()
    assert first["visitor_id"] == cookie
    derived = hashlib.sha256(f"ga:{client_id}".encode()).hexdigest()
    second = _post(seeded, {**base, "visitor_id": derived, "event_id": "a2"}, auth).get_json()
    assert second["visitor_id"] == cookie  # the template had no cookie: the alias wins
    other = "e" * 64
    third = _post(seeded, {**base, "visitor_id": other, "event_id": "a3"}, auth).get_json()
    assert third["visitor_id"] == other  # a real cookie is never replaced
    with app.config["MBUZZ"].sessions() as db:
        aliases = db.scalars(sa.select(m.VisitorAlias).where(m.VisitorAlias.alias == client_id)).all()
    assert [(a.namespace, a.visitor_key) for a in aliases] == [("ga_client", cookie)]


def test_SGTM36_v1_session_ids_do_not_drive_resolution(app: Flask, client: FlaskClient) -> None:
    """The v1 template's session_id is a fixed 30-minute bucket: for its requests it binds nothing (SES-9)."""
    from tests.conftest import new_account

    keys = new_account(app)
    for agent, visitor in (("mbuzz-sgtm/1.0.0", "v1-visitor"), ("mbuzz-python/0.11.1", "sdk-visitor")):
        for i, url in enumerate(("https://site.example/?utm_source=a&utm_medium=email",
                                 "https://site.example/?utm_source=b&utm_medium=cpc")):
            resp = client.post("/api/v1/sessions", json={"session": {
                "visitor_id": visitor, "session_id": "bucket-1", "url": url,
                "started_at": f"2026-11-20T1{i}:00:00Z"}}, headers={**keys.headers("test"), "User-Agent": agent})
            assert resp.status_code == 202, resp.get_json()
    with app.config["MBUZZ"].sessions() as db:
        def bindings(visitor_key: str) -> int:
            visitor = db.scalar(sa.select(m.Visitor.id).where(m.Visitor.account_id == keys.account_id,
                                                              m.Visitor.visitor_key == visitor_key))
            return int(db.scalar(sa.select(sa.func.count()).select_from(m.SessionBinding).where(
                m.SessionBinding.visitor_id == visitor)) or 0)

        assert bindings("v1-visitor") == 0 and bindings("sdk-visitor") == 1


def test_SGTM24_user_only_page_view_records_the_event_without_a_session(app: Flask, seeded: FlaskClient) -> None:
    _, auth = _template_body("F14")
    body = {"v": 1, "event_name": "page_view", "timestamp_ms": int(NOW.timestamp() * 1000), "user_id": "u-only",
            "page_location": "https://shop.example.com/", "event_id": "uo-1"}
    resp = _post(seeded, body, auth)
    assert resp.status_code == 202, resp.get_json()
    assert [o["kind"] for o in resp.get_json()["outputs"]] == ["identify", "event"]
    explicit = _post(seeded, {**body, "call": "session", "event_id": "uo-2"}, auth)
    assert explicit.status_code == 202 and [o["kind"] for o in explicit.get_json()["outputs"]] == ["identify"]


def test_SGTM21_numeric_custom_properties_are_stored(app: Flask, seeded: FlaskClient) -> None:
    """The body is parsed with decimal floats; custom property numbers still store as JSON numbers."""
    _, auth = _template_body("F14")
    body = {"v": 1, "event_name": "purchase", "timestamp_ms": int(NOW.timestamp() * 1000), "visitor_id": "b" * 64,
            "transaction_id": "T-props", "value": 3.5, "currency": "USD",
            "properties": {"score": 1.5, "count": 2, "nested": {"x": 2.25}}}
    resp = _post(seeded, body, auth)
    assert resp.status_code == 202, resp.get_json()
    with app.config["MBUZZ"].sessions() as db:
        conv = db.scalars(sa.select(m.Conversion).where(m.Conversion.idempotency_key == "sgtm:acct_02:txn:T-props")
                          ).one()
    assert conv.revenue_minor == 350
    assert (conv.properties["score"], conv.properties["count"], conv.properties["nested"]) == (1.5, 2, {"x": 2.25})


def test_Q60_numbers_beyond_64_bits_never_poison_the_tenant(app: Flask, seeded: FlaskClient) -> None:
    """Q-60 on the sGTM edge: NaN, the infinities, 1e5000 and 1e30 as properties, and huge item quantities and
    timestamps, answer without a 500; numbers beyond signed 64 bits are stored as decimal text (API-47-D1), so
    the tenant's data API still answers."""
    _, auth = _template_body("F14")
    stamp = int(NOW.timestamp() * 1000)
    head = f'{{"v": 1, "event_name": "purchase", "visitor_id": "{"c" * 64}", "value": 3.5, "currency": "USD", '
    raw = (head + f'"timestamp_ms": {stamp}, "transaction_id": "T-q60", "properties": {{"nan": NaN, '
           '"inf": -Infinity, "huge": 1e5000, "big": 1e30, "wide": 123456789012345678901234567890, "fine": 7}}')
    resp = _post(seeded, raw.encode(), auth)
    assert resp.status_code == 202, resp.get_json()
    with app.config["MBUZZ"].sessions() as db:
        conv = db.scalars(sa.select(m.Conversion).where(m.Conversion.idempotency_key == "sgtm:acct_02:txn:T-q60")
                          ).one()
    assert {k: conv.properties[k] for k in ("nan", "inf", "huge", "big", "wide", "fine")} == {
        "nan": None, "inf": None, "huge": "1E+5000", "big": "1e+30", "wide": "123456789012345678901234567890",
        "fine": 7}  # as the REST API stores 1e30 and the integer
    head = f'{{"v": 1, "event_name": "purchase", "visitor_id": "{"d" * 64}", "transaction_id": "T-bad", "value": 1, '
    for bad, error in (('"timestamp_ms": 1e1000000', "timestamp_ms: must be within 72 hours"),
                       (f'"timestamp_ms": {stamp}, "items": [{{"item_id": "x", "quantity": 1e1000000}}]',
                        "items[0].quantity: must be an integer from 1 to 100000")):
        answer = _post(seeded, (head + '"currency": "USD", ' + bad + "}").encode(), auth)
        assert answer.status_code == 422 and answer.get_json()["errors"][0].startswith(error), answer.get_json()
