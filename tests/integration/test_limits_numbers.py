"""No number poisons a tenant (issue 15 item 7; quality.md Q-60; docs/api.md API-47-D1, API-122-D2).

The drill: a property number beyond 64 bits was accepted, PostgreSQL's JSONB kept it as a big integer, and from
then on `GET /api/v1/data/events` answered 500 and its CSV export ended early without a word. Here, on the run's
real database (PostgreSQL, or SQLite in the quick pass): huge numbers are written and read back as strings, rows
stored before the rule existed are answered too, and a property test over arbitrary JSON numbers never sees a
5xx on write or read.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.storage import models as m
from gateway import create_app
from gateway.csv_stream import ERROR_MARK
from tests.conftest import AccountKeys, make_settings, new_account
from tests.integration.helpers import post

WARNING = "properties: stored {n} numbers outside the signed 64-bit range as strings"


def _spliced(body: dict[str, Any], first: str, second: str = "0") -> bytes:
    """``body`` as JSON with the strings ``"@1"`` / ``"@2"`` replaced by number *texts*, as a client would put
    them on the wire (Python's own JSON writer could not spell most of them)."""
    return json.dumps(body).replace('"@1"', first).replace('"@2"', second).encode()


def _event(value: str, visitor: str = "v-numbers") -> bytes:
    return _spliced({"event_type": "page_view", "visitor_id": visitor, "properties": {"n": "@1"}}, value)


def _rows_json(client: FlaskClient, acct: AccountKeys) -> list[dict[str, Any]]:
    resp = client.get("/api/v1/data/events", query_string={"limit": 1000}, headers=acct.headers())
    assert resp.status_code == 200, resp.get_data()[:300]
    rows: list[dict[str, Any]] = resp.get_json()["data"]
    return rows


def _rows_csv(client: FlaskClient, acct: AccountKeys) -> list[list[str]]:
    resp = client.get("/api/v1/data/events", query_string={"format": "csv"}, headers=acct.headers())
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    assert ERROR_MARK not in text, text[-300:]
    return list(csv.reader(io.StringIO(text, newline="")))[1:]


def test_Q60_drill_huge_property_numbers_are_stored_and_answered_as_strings(client: FlaskClient,
                                                                              acct: AccountKeys) -> None:
    """2e19, 1e30 and -2e19 are finite floats: accepted, stored as strings with a warning, read back as strings
    (JSON and CSV, 200, every row). An integer literal beyond 64 bits is the whole-body 400 of api.md API-20,
    so nothing of its request is stored and nothing can poison the reads."""
    accepted = {}
    for text, stored in (("2e19", "2e+19"), ("1e30", "1e+30"), ("-2e19", "-2e+19")):
        resp = post(client, acct, "/events", _event(text))
        assert resp.status_code == 202 and resp.get_json()["accepted"] == 1, resp.get_json()
        assert resp.get_json()["events"][0]["warnings"] == [WARNING.format(n=1)]
        accepted[resp.get_json()["events"][0]["id"]] = stored
    together = b'{"event_type": "e", "visitor_id": "v", "properties": {"a": 2e19, "b": 1e30, "c": [-2e19, 7]}}'
    resp = post(client, acct, "/events", together)
    assert resp.get_json()["events"][0]["warnings"] == [WARNING.format(n=3)]
    together_id = resp.get_json()["events"][0]["id"]
    resp = post(client, acct, "/events", _event("123456789012345678901234567890"))
    assert (resp.status_code, resp.get_json()) == (400, {"error": "Request body contains a number outside the "
                                                                  "supported range"})

    rows = {r["id"]: r for r in _rows_json(client, acct)}
    assert set(rows) == {*accepted, together_id}
    assert {i: rows[i]["properties"]["n"] for i in accepted} == accepted
    assert rows[together_id]["properties"] == {"a": "2e+19", "b": "1e+30", "c": ["-2e+19", 7]}
    lines = {line[0]: json.loads(line[-1]) for line in _rows_csv(client, acct)}
    assert set(lines) == set(rows)
    assert {i: lines[i]["n"] for i in accepted} == accepted


def test_Q60_rows_stored_before_the_rule_are_answered(app: Flask, client: FlaskClient, acct: AccountKeys) -> None:
    """What PostgreSQL already holds from before the fix (an integer beyond 64 bits in JSONB, here written
    straight into the rows): the data API page and the CSV export answer 200 with every row, the value as a
    string, the rows around it intact."""
    ids = [post(client, acct, "/events", _event(str(i), f"v-old-{i}")).get_json()["events"][0]["id"]
           for i in range(3)]
    poisoned = {"a": 20000000000000000000, "b": 10**30, "c": -(2 * 10**19), "d": 123456789012345678901234567890,
                "deep": [{"x": 2**64}], "ok": 9223372036854775807, "f": 1.5}
    with app.config["MBUZZ"].sessions.begin() as db:
        db.execute(sa.update(m.Event).where(m.Event.account_id == acct.account_id, m.Event.id == ids[1])
                   .values(properties=poisoned))
    expected = {"a": "20000000000000000000", "b": "1000000000000000000000000000000", "c": "-20000000000000000000",
                "d": "123456789012345678901234567890", "deep": [{"x": "18446744073709551616"}],
                "ok": 9223372036854775807, "f": 1.5}
    rows = {r["id"]: r["properties"] for r in _rows_json(client, acct)}
    assert set(rows) == set(ids)
    assert rows[ids[1]] == expected
    assert rows[ids[0]] == {"n": 0} and rows[ids[2]] == {"n": 2}
    lines = {line[0]: json.loads(line[-1]) for line in _rows_csv(client, acct)}
    assert set(lines) == set(ids)  # the export is whole: no row after the poisoned one is lost
    assert lines[ids[1]] == expected


def test_Q60_conversion_properties_and_traits_follow_the_same_rule(app: Flask, client: FlaskClient,
                                                                    acct: AccountKeys) -> None:
    body = b'{"conversion_type": "purchase", "visitor_id": "v-conv", "revenue": 10, "properties": {"n": 1e30}}'
    resp = post(client, acct, "/conversions", body)
    assert resp.status_code in (201, 202), resp.get_json()
    assert "properties: stored 1 numbers outside the signed 64-bit range as strings" in resp.get_json()["warnings"]
    resp = post(client, acct, "/identify", b'{"user_id": "u-numbers", "traits": {"score": -2e19, "plan": 3}}')
    assert resp.status_code in (200, 201, 202), resp.get_json()
    assert "traits: stored 1 numbers outside the signed 64-bit range as strings" in resp.get_json()["warnings"]
    with app.config["MBUZZ"].sessions() as db:
        conv = db.scalars(sa.select(m.Conversion).where(m.Conversion.account_id == acct.account_id)).one()
        user = db.scalars(sa.select(m.User).where(m.User.account_id == acct.account_id,
                                                  m.User.user_key == "u-numbers")).one()
    assert conv.properties["n"] == "1e+30"
    assert user.traits == {"score": "-2e+19", "plan": 3}
    for revenue in (b"1e30", b"1e308", b"-2e19", b"9223372036854775807"):  # revenue: API-22, never a 5xx
        resp = post(client, acct, "/conversions", b'{"conversion_type": "p", "visitor_id": "v", "revenue": %s}'
                    % revenue)
        assert resp.status_code == 422, (revenue, resp.get_json())
        assert resp.get_json()["errors"][0].startswith("revenue must be"), resp.get_json()


# ------------------------------------------------------------------------------------- property test

_SIGN = st.sampled_from(["", "-"])
_NUMBER_TEXT = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.builds(lambda sign, whole, frac, exp: f"{sign}{whole}{frac}{exp}", _SIGN,
              st.from_regex(r"0|[1-9][0-9]{0,30}", fullmatch=True),
              st.from_regex(r"(\.[0-9]{1,20})?", fullmatch=True),
              st.from_regex(r"([eE][+-]?[0-9]{1,4})?", fullmatch=True)),
)


@pytest.fixture(scope="module")
def numbers_app(database_url: str) -> Iterator[tuple[Flask, AccountKeys]]:
    """Its own app: two reads per example would soon meet the data API's 60 per minute of one key (API-140)."""
    app = create_app(make_settings(database_url, ratelimit_data="100000 per minute"))
    yield app, new_account(app, "Numbers")
    app.config["MBUZZ"].engine.dispose()


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=_NUMBER_TEXT, other=_NUMBER_TEXT)
def test_Q60_any_json_number_in_properties_never_yields_a_5xx(numbers_app: tuple[Flask, AccountKeys],
                                                              value: str, other: str) -> None:
    """Any number JSON can spell, as a property, a nested property, a trait or a revenue: every write answers
    below 500, and the data API (JSON and CSV) answers 200 with every stored row."""
    app, acct = numbers_app
    client = app.test_client()
    answers = [
        post(client, acct, "/events", _spliced(
            {"event_type": "n", "visitor_id": "v-prop", "properties": {"n": "@1", "deep": {"list": ["@2", 1]}}},
            value, other)),
        post(client, acct, "/conversions", _spliced(
            {"conversion_type": "p", "visitor_id": "v-prop", "revenue": "@1", "properties": {"n": "@2"}},
            value, other)),
        post(client, acct, "/identify", _spliced({"user_id": "u-prop", "traits": {"n": "@1"}}, value, other)),
    ]
    for resp in answers:
        assert resp.status_code < 500, (value, other, resp.status_code, resp.get_data()[:200])
    rows = _rows_json(client, acct)
    assert len(_rows_csv(client, acct)) == len(rows)


# ------------------------------------------------------------------------------------- the pixel


@pytest.fixture()
def shop_app(database_url: str) -> Iterator[Flask]:
    """The seeded Shopify installation (tests/unit/connectors/shopify/test_orders.py) with the clock at its batch."""
    from tests.unit.connectors.sgtm.test_normalize import SEED
    from tests.unit.connectors.shopify.test_orders import PROCESSED, SECRET
    from tools.fixtures import seed

    app = create_app(make_settings(database_url, shopify_api_secret=SECRET,
                                   shopify_api_key=SEED["config"]["SHOPIFY_API_KEY"]))
    seed(app, SEED)
    app.config["MBUZZ"].clock = lambda: PROCESSED
    yield app
    app.config["MBUZZ"].engine.dispose()


def test_Q60_pixel_quantity_1e30_is_no_500(shop_app: Flask) -> None:
    """The drill's `quantity: 1e30` (and its kin: a price beyond any amount, a count beyond 64 bits, an exponent
    whose int() alone would take minutes) keeps the event and drops the number, as a non-number is dropped."""
    from tests.unit.connectors.shopify.test_orders import _ids

    ids = [f"sh-{next(_ids)}" for _ in range(3)]
    events = [
        {"id": ids[0], "name": "product_added_to_cart", "data": {"quantity": "@1", "price": "@1", "currency": "USD",
                                                                 "line_total": "@2", "product_id": "gid://x/1"}},
        {"id": ids[1], "name": "product_added_to_cart", "data": {"quantity": 3, "price": "19.99", "currency": "USD"}},
        {"id": ids[2], "name": "cart_viewed", "data": {"line_count": "@2", "cart_total": "@1"}},
    ]
    for event in events:
        event.update(timestamp="2026-05-20T03:13:00Z", url="https://aurora-lamps.com/")
    batch = {"v": 1, "ingest_key": "pk_px_3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e", "account_id": "acct_01",
             "shop_domain": "aurora-lamps.myshopify.com", "consent": {"analytics": True}, "visitor_id": "ef" * 32,
             "events": events}
    raw = json.dumps(batch).replace('"@1"', "1e30").replace('"@2"', "1e999999")
    resp = shop_app.test_client().post("/shopify/pixel/v1/events", data=raw, content_type="text/plain")
    assert resp.status_code == 202, resp.get_data()[:300]
    assert resp.get_json()["accepted"] == 3 and resp.get_json()["rejected"] == []
    with shop_app.config["MBUZZ"].sessions() as db:
        stored = {e.idempotency_key.rsplit(":", 1)[-1]: e.properties for e in db.scalars(sa.select(m.Event).where(
            m.Event.account_id == "acct_01", sa.or_(*(m.Event.idempotency_key.endswith(i) for i in ids))))}
    assert stored[ids[0]] == {"product_id": "1", "currency": "USD"}
    assert stored[ids[1]] == {"quantity": 3, "price": "19.99", "currency": "USD"}
    assert stored[ids[2]] == {}
