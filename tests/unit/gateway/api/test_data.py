"""Data API over HTTP (api.md §8.6 API-120..API-128, API-12, API-14, API-140) against the run's real database."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from core import accounts
from core.commands import OrderAdjustmentCommand
from core.ids import new_id
from core.settings import save_settings
from core.storage import models as m
from core.tenant import Tenant
from gateway import create_app
from tests.conftest import AccountKeys, make_settings, new_account
from tests.integration.helpers import SERVER_ID, fixture, fixture_bytes, iso, post, touch

AT = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)  # the four-touch scenario of api.md §13
NOV = {"start_date": "2026-11-01", "end_date": "2026-11-30"}
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def get(client: FlaskClient, acct: AccountKeys, path: str, env: str = "test", headers: dict[str, str] | None = None,
        **params: Any) -> Any:
    return client.get(f"/api/v1/data{path}", query_string=params, headers=acct.headers(env, **(headers or {})))


@pytest.fixture()
def clock(app: Flask) -> Iterator[list[datetime]]:
    """The gateway's receive time (and "today" of the data API) pinned to the scenario's instant."""
    services = app.config["MBUZZ"]
    now = [AT]
    services.clock = lambda: now[0]
    yield now
    services.clock = lambda: datetime.now(UTC)


def four_touch(client: FlaskClient, acct: AccountKeys) -> dict[str, Any]:
    """conversion_response_created.json: sessions 28, 21, 14 and 7 days before 2026-11-20T15:30:00Z."""
    visitor = fixture("conversion_keyed_request.json")["visitor_id"]
    touch(client, acct, visitor, "https://www.acme.com/", AT - timedelta(days=28), referrer="https://www.google.com/")
    touch(client, acct, visitor, "https://www.acme.com/?utm_source=facebook&utm_medium=paid_social"
          "&utm_campaign=bf_retarget", AT - timedelta(days=21))
    touch(client, acct, visitor, "https://www.acme.com/?utm_source=newsletter&utm_medium=email"
          "&utm_campaign=nov_digest", AT - timedelta(days=14))
    touch(client, acct, visitor, "https://www.acme.com/?utm_source=google&utm_medium=cpc&utm_campaign=brand"
          "&gclid=Cj0KC", AT - timedelta(days=7), referrer="https://www.google.com/")
    resp = post(client, acct, "/conversions", fixture_bytes("conversion_keyed_request.json"))
    assert resp.status_code == 201, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def convert(client: FlaskClient, acct: AccountKeys, visitor: str, at: datetime, env: str = "test",
            **extra: Any) -> dict[str, Any]:
    resp = post(client, acct, "/conversions", {"conversion_type": "purchase", "visitor_id": visitor,
                                               "timestamp": iso(at), **extra}, env)
    assert resp.status_code == 201, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def event(client: FlaskClient, acct: AccountKeys, visitor: str, at: datetime, event_type: str = "page_view",
          env: str = "test", **extra: Any) -> str:
    resp = post(client, acct, "/events", {"events": [{"event_type": event_type, "visitor_id": visitor,
                                                      "timestamp": iso(at), **extra}]}, env)
    assert resp.status_code == 202 and resp.get_json()["accepted"] == 1, resp.get_json()
    return str(resp.get_json()["events"][0]["id"])


def csv_rows(resp: Any) -> list[list[str]]:
    return list(csv.reader(io.StringIO(resp.get_data(as_text=True), newline="")))


def adjust(app: Flask, acct: AccountKeys, order_key: str, adjustment: str, amount: str | None = None) -> None:
    cmd = OrderAdjustmentCommand(id=new_id("cmd"), idempotency_key=f"{order_key}:{adjustment}:{amount}",
                                 conversion_key=order_key, adjustment=adjustment, occurred_at=AT, received_at=AT,
                                 amount=amount, currency="USD")
    app.config["MBUZZ"].log.append(Tenant(acct.account_id, "test"), [cmd])


# ------------------------------------------------------------------------------------------ API-128 report


def test_API128_attribution_reproduces_the_fixture(client: FlaskClient, acct: AccountKeys,
                                                   clock: list[datetime]) -> None:
    four_touch(client, acct)
    resp = get(client, acct, "/attribution", model="first_touch,linear", **NOV)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.get_json() == fixture("data_attribution_response.json")


def test_API128_default_models_are_the_enabled_ones_in_API94_order(client: FlaskClient, acct: AccountKeys,
                                                                    clock: list[datetime]) -> None:
    four_touch(client, acct)
    body = get(client, acct, "/attribution", **NOV).get_json()
    assert body["meta"]["models"] == ["first_touch", "last_touch", "linear", "time_decay", "u_shaped",
                                      "participation", "markov_chain", "shapley_value"]
    last = [r for r in body["data"] if r["model"] == "last_touch"]
    assert [(r["channel"], r["conversions"], r["revenue"]) for r in last] == [("paid_search", 1.0, "100.00")]
    participation = [r for r in body["data"] if r["model"] == "participation"]
    assert [r["conversions"] for r in participation] == [1.0, 1.0, 1.0, 1.0]  # ATT-57: not additive
    assert {r["revenue"] for r in participation} == {"100.00"}


def test_API128_csv(client: FlaskClient, acct: AccountKeys, clock: list[datetime]) -> None:
    four_touch(client, acct)
    resp = get(client, acct, "/attribution", model="linear", format="csv", **NOV)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="attribution_2026-11-01_2026-11-30.csv"'
    raw = resp.get_data()
    assert not raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\r\n") == 5
    assert csv_rows(resp) == [
        ["model", "channel", "currency", "conversions", "revenue", "conversion_share", "revenue_share",
         "touchpoints"],
        ["linear", "paid_search", "USD", "0.2500", "25.00", "0.2500", "0.2500", "1"],
        ["linear", "organic_search", "USD", "0.2500", "25.00", "0.2500", "0.2500", "1"],
        ["linear", "paid_social", "USD", "0.2500", "25.00", "0.2500", "0.2500", "1"],
        ["linear", "email", "USD", "0.2500", "25.00", "0.2500", "0.2500", "1"],
    ]


def test_API128_net_revenue_and_cancelled_conversions(app: Flask, client: FlaskClient, acct: AccountKeys,
                                                      clock: list[datetime]) -> None:
    """SHP-61 / ATT-38: the report uses revenue net of refunds and leaves cancelled conversions out."""
    touch(client, acct, "v-net", "https://acme.com/?utm_source=newsletter&utm_medium=email", AT - timedelta(days=2))
    convert(client, acct, "v-net", AT - timedelta(days=1), revenue=99.99, idempotency_key="order-net")
    touch(client, acct, "v-gone", "https://acme.com/?gclid=Cj0", AT - timedelta(days=2))
    gone = convert(client, acct, "v-gone", AT - timedelta(days=1), revenue=50, idempotency_key="order-gone")
    adjust(app, acct, "order-net", "refund", "40.00")
    adjust(app, acct, "order-gone", "cancel")
    body = get(client, acct, "/attribution", model="linear", **NOV).get_json()
    assert [(r["channel"], r["revenue"], r["revenue_share"]) for r in body["data"]] == [("email", "59.99", 1.0)]
    assert body["meta"]["total_conversions"] == 1
    assert body["meta"]["total_revenue"] == {"USD": "59.99"}
    # the cancelled conversion stays readable (API-124-D1) and says so
    listed = get(client, acct, "/conversions", **NOV).get_json()["data"]
    assert sorted(c["status"] for c in listed) == ["active", "cancelled"]
    assert [c["status"] for c in listed if c["id"] == gone["id"]] == ["cancelled"]
    only = get(client, acct, "/conversions", status="cancelled", **NOV).get_json()["data"]
    assert [c["id"] for c in only] == [gone["id"]]


def test_API128_unattributed_conversions_and_reconciliation(client: FlaskClient, acct: AccountKeys,
                                                            clock: list[datetime]) -> None:
    four_touch(client, acct)
    convert(client, acct, "v-no-journey", AT - timedelta(days=3), revenue=10)  # ATT-12: empty journey
    convert(client, acct, "v-no-revenue", AT - timedelta(days=3))
    convert(client, acct, "v-jpy", AT - timedelta(days=3), revenue=1500, currency="JPY")
    body = get(client, acct, "/attribution", model="linear", **NOV).get_json()
    meta = body["meta"]
    assert meta["total_conversions"] == 4
    assert meta["unattributed_conversions"] == 3
    assert meta["total_revenue"] == {"JPY": "1500", "USD": "110.00"}
    assert meta["unattributed_revenue"] == {"JPY": "1500", "USD": "10.00"}
    # ATT-56 reconciliation: Σ conversions over channels + unattributed = population
    assert sum(r["conversions"] for r in body["data"]) + meta["unattributed_conversions"] == 4


def test_API128_filters(client: FlaskClient, acct: AccountKeys, clock: list[datetime]) -> None:
    four_touch(client, acct)
    touch(client, acct, "v-direct", "https://acme.com/", AT - timedelta(days=2))
    convert(client, acct, "v-direct", AT - timedelta(days=1), conversion_type="signup", funnel="onboarding")
    by_type = get(client, acct, "/attribution", model="first_touch", conversion_type="signup", **NOV).get_json()
    assert [(r["channel"], r["revenue"]) for r in by_type["data"]] == [("direct", "0.00")]
    by_funnel = get(client, acct, "/attribution", model="first_touch", funnel="purchase", **NOV).get_json()
    assert [r["channel"] for r in by_funnel["data"]] == ["organic_search"]
    # channels selects the conversions whose journey touched them; their rows show every channel credited
    by_channel = get(client, acct, "/attribution", model="linear", channels="email", **NOV).get_json()
    assert by_channel["meta"]["total_conversions"] == 1
    assert [r["channel"] for r in by_channel["data"]] == ["paid_search", "organic_search", "paid_social", "email"]
    nothing = get(client, acct, "/attribution", model="linear", channels="ai", **NOV).get_json()
    assert nothing["data"] == [] and nothing["meta"]["total_conversions"] == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": "first_touch,bogus"}, "Unknown model 'bogus'. Allowed: first_touch, last_touch, linear, "
                                         "time_decay, u_shaped, participation, markov_chain, shapley_value"),
        ({"channels": "email,tv"}, "Unknown channel 'tv'. Allowed: paid_search, organic_search, paid_social, "
                                   "organic_social, email, display, affiliate, referral, video, ai, direct, other"),
        ({"format": "xml"}, "format must be json or csv, got 'xml'"),
    ],
)
def test_API128_bad_parameters_are_400(client: FlaskClient, acct: AccountKeys, params: dict[str, str],
                                       message: str) -> None:
    resp = get(client, acct, "/attribution", **params)
    assert (resp.status_code, resp.get_json()) == (400, {"error": message})


# ------------------------------------------------------------------------------------------ API-120 dates


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start_date": "2026/11/01", "end_date": "2026-11-30"}, "Invalid date format. Use YYYY-MM-DD."),
        ({"start_date": "2026-02-30", "end_date": "2026-03-01"}, "Invalid date format. Use YYYY-MM-DD."),
        ({"start_date": "20261101", "end_date": "2026-11-30"}, "Invalid date format. Use YYYY-MM-DD."),
        ({"start_date": "2026-11-30", "end_date": "2026-11-01"}, "start_date must be on or before end_date"),
        ({"start_date": "2026-11-01"}, "start_date and end_date must both be given (YYYY-MM-DD)"),
        ({"date_range": "14d"}, "Unknown date_range '14d'. Allowed: 7d, 30d, 90d, 365d"),
    ],
)
@pytest.mark.parametrize("path", ["/conversions", "/events", "/sessions", "/attribution"])
def test_API120_date_errors(client: FlaskClient, acct: AccountKeys, path: str, params: dict[str, str],
                            message: str) -> None:
    resp = get(client, acct, path, **params)
    assert (resp.status_code, resp.get_json()) == (400, {"error": message})


def test_API120_default_30d_and_presets_in_meta(client: FlaskClient, acct: AccountKeys,
                                                clock: list[datetime]) -> None:
    assert get(client, acct, "/events").get_json()["meta"] == {
        "start_date": "2026-10-22", "end_date": "2026-11-20", "limit": 100, "count": 0, "next_cursor": None}
    seven = get(client, acct, "/attribution", date_range="7d").get_json()["meta"]
    assert (seven["start_date"], seven["end_date"]) == ("2026-11-14", "2026-11-20")
    assert get(client, acct, "/sessions", date_range="365d").get_json()["meta"]["start_date"] == "2025-11-21"
    explicit = get(client, acct, "/conversions", date_range="7d", **NOV).get_json()["meta"]
    assert (explicit["start_date"], explicit["end_date"]) == ("2026-11-01", "2026-11-30")  # dates win


def test_API120_days_are_in_the_account_time_zone(app: Flask, client: FlaskClient, acct: AccountKeys,
                                                  clock: list[datetime]) -> None:
    late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # already 1 December in Auckland (UTC+13)
    clock[0] = late + timedelta(minutes=1)
    conv = convert(client, acct, "v-tz", late)
    nov = get(client, acct, "/conversions", **NOV).get_json()["data"]
    assert [c["id"] for c in nov] == [conv["id"]]
    with app.config["MBUZZ"].sessions.begin() as db:
        save_settings(db, acct.account_id, {"timezone": "Pacific/Auckland"})
    assert get(client, acct, "/conversions", **NOV).get_json()["data"] == []
    december = get(client, acct, "/conversions", start_date="2026-12-01", end_date="2026-12-01").get_json()
    assert [c["id"] for c in december["data"]] == [conv["id"]]
    # "today" is Auckland's too: the 7 days end on 1 December
    assert get(client, acct, "/conversions", date_range="7d").get_json()["meta"]["end_date"] == "2026-12-01"


# ------------------------------------------------------------------------------------------ API-121 pagination


def test_API121_cursor_pagination(client: FlaskClient, acct: AccountKeys, clock: list[datetime]) -> None:
    ids = [event(client, acct, "v-page", AT - timedelta(hours=5 - i)) for i in range(5)]
    seen: list[str] = []
    cursor = None
    counts = []
    for _ in range(5):
        params = {"limit": "2", **NOV, **({"cursor": cursor} if cursor else {})}
        body = get(client, acct, "/events", **params).get_json()
        seen += [e["id"] for e in body["data"]]
        counts.append(body["meta"]["count"])
        assert body["meta"]["limit"] == 2
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            break
    assert counts == [2, 2, 1]
    assert seen == list(reversed(ids))  # desc: newest first
    asc = get(client, acct, "/events", order="asc", limit="10", **NOV).get_json()
    assert [e["id"] for e in asc["data"]] == ids and asc["meta"]["next_cursor"] is None


def test_API121_cursor_errors(client: FlaskClient, acct: AccountKeys, clock: list[datetime]) -> None:
    for i in range(3):
        event(client, acct, "v-cur", AT - timedelta(hours=i + 1), event_type="signup")
    cursor = get(client, acct, "/events", limit="1", **NOV).get_json()["meta"]["next_cursor"]
    assert cursor
    ok = get(client, acct, "/events", limit="5", cursor=cursor, **NOV)  # a new page size is fine
    assert ok.status_code == 200 and ok.get_json()["meta"]["count"] == 2
    for changed in ({"event_type": "signup"}, {"order": "asc"}, {"start_date": "2026-11-02"}):
        resp = get(client, acct, "/events", cursor=cursor, **{**NOV, **changed})
        assert (resp.status_code, resp.get_json()) == (400, {"error": "cursor does not match the query parameters"})
    other_endpoint = get(client, acct, "/sessions", cursor=cursor, **NOV)
    assert other_endpoint.get_json() == {"error": "cursor does not match the query parameters"}
    for bad in ("garbage!", "e30", "bm90IGpzb24"):
        resp = get(client, acct, "/events", cursor=bad, **NOV)
        assert (resp.status_code, resp.get_json()) == (400, {"error": "Invalid cursor"})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit must be an integer from 1 to 1000, got '0'"),
        ({"limit": "1001"}, "limit must be an integer from 1 to 1000, got '1001'"),
        ({"limit": "ten"}, "limit must be an integer from 1 to 1000, got 'ten'"),
        ({"order": "newest"}, "order must be asc or desc, got 'newest'"),
    ],
)
def test_API121_limit_and_order_errors(client: FlaskClient, acct: AccountKeys, params: dict[str, str],
                                       message: str) -> None:
    resp = get(client, acct, "/conversions", **params)
    assert (resp.status_code, resp.get_json()) == (400, {"error": message})


@pytest.mark.parametrize("path", ["/conversions", "/events", "/sessions", "/attribution"])
def test_API23_calendar_extremes_are_not_a_server_error(client: FlaskClient, acct: AccountKeys, path: str) -> None:
    for fmt in ("json", "csv"):
        resp = get(client, acct, path, start_date="0001-01-01", end_date="9999-12-31", format=fmt)
        assert resp.status_code == 200, resp.get_data(as_text=True)


def test_API120_unknown_parameters_are_ignored(client: FlaskClient, acct: AccountKeys) -> None:
    assert get(client, acct, "/sessions", colour="blue").status_code == 200


def test_API120_D3_nul_in_a_parameter_is_removed_not_a_5xx(client: FlaskClient, acct: AccountKeys,
                                                           clock: list[datetime]) -> None:
    """PostgreSQL refuses a text holding U+0000 in a comparison; the value is read without it, like API-3."""
    first = event(client, acct, "v-nul", AT - timedelta(hours=1), funnel="checkout")
    assert [e["id"] for e in get(client, acct, "/events", visitor_id="v-\x00nul", funnel="check\x00out",
                                  **NOV).get_json()["data"]] == [first]
    for path in ("/conversions", "/sessions", "/attribution"):
        resp = get(client, acct, path, visitor_id="\x00", funnel="\x00", user_id="\x00", format="csv\x00")
        assert resp.status_code == 200 and resp.mimetype == "text/csv", path
        assert resp.get_data(as_text=True).count("\r\n") == 1, path  # the header row only (and the stream closed)
    assert get(client, acct, "/events", cursor="\x00x").get_json() == {"error": "Invalid cursor"}
    assert get(client, acct, "/conversions/conv_\x00").get_json() == {"error": "Conversion not found"}


# ------------------------------------------------------------------------------------------ API-124/125


def test_API124_rows_are_the_API94_object(client: FlaskClient, acct: AccountKeys, clock: list[datetime]) -> None:
    created = four_touch(client, acct)
    body = get(client, acct, "/conversions", **NOV).get_json()
    (row,) = body["data"]
    expected = {k: v for k, v in created.items() if k not in ("duplicate", "warnings")}
    assert row == {**expected, "status": "active"}
    limited = get(client, acct, "/conversions", model="linear,first_touch", **NOV).get_json()["data"][0]
    assert list(limited["attribution"]["models"]) == ["first_touch", "linear"]


def test_API124_filters(client: FlaskClient, acct: AccountKeys, clock: list[datetime]) -> None:
    purchase = four_touch(client, acct)["id"]  # converted at AT
    touch(client, acct, "v-f", "https://acme.com/?utm_source=chatgpt.com", AT - timedelta(days=1))
    signup = convert(client, acct, "v-f", AT - timedelta(hours=2), conversion_type="signup", user_id="u-42")["id"]
    keyed = fixture("conversion_keyed_request.json")

    def ids(**params: str) -> list[str]:
        return [c["id"] for c in get(client, acct, "/conversions", **NOV, **params).get_json()["data"]]

    assert ids() == [purchase, signup]  # newest first
    assert ids(order="asc") == [signup, purchase]
    assert ids(conversion_type="signup") == [signup]
    assert ids(funnel="purchase") == [purchase]
    assert ids(visitor_id=keyed["visitor_id"]) == [purchase]
    assert ids(visitor_id="never-seen") == []
    assert ids(user_id="u-42") == [signup]
    assert ids(channels="paid_social") == [purchase]
    assert ids(channels="ai") == [signup]
    assert ids(channels="ai,email") == [purchase, signup]


def test_Q45_filters_written_with_the_raw_values_find_the_scrubbed_rows(client: FlaskClient, acct: AccountKeys,
                                                                           clock: list[datetime]) -> None:
    """Ids and names holding an e-mail are stored scrubbed (Q-45); a filter written as the client sent them
    (user_id, visitor_id, conversion_type, funnel, event_type) still finds those rows."""
    mail, visitor = "jane.q45@example.com", "v-203.0.113.7"  # a visitor id holding an IP is hashed too
    made = convert(client, acct, visitor, AT - timedelta(hours=3), conversion_type=f"signup {mail}",
                   funnel=mail, user_id=mail)["id"]
    event(client, acct, visitor, AT - timedelta(hours=4), event_type=mail, user_id=mail)

    def conversions(**params: str) -> list[str]:
        return [c["id"] for c in get(client, acct, "/conversions", **NOV, **params).get_json()["data"]]

    def events(**params: str) -> int:
        return len(get(client, acct, "/events", **NOV, **params).get_json()["data"])

    for params in ({"user_id": mail}, {"visitor_id": visitor}, {"conversion_type": f"signup {mail}"},
                   {"funnel": mail}):
        assert conversions(**params) == [made], params
    assert events(event_type=mail) == 1 and events(visitor_id=visitor) == 1
    assert conversions(user_id="someone.else@example.com") == []


def test_API124_csv_has_one_line_per_credit(client: FlaskClient, acct: AccountKeys, clock: list[datetime]) -> None:
    created = four_touch(client, acct)
    bare = convert(client, acct, "v-bare", AT - timedelta(days=5), revenue="5.5")
    resp = get(client, acct, "/conversions", model="first_touch,linear", order="asc", **NOV,
               headers={"Accept": "text/csv"})
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="conversions_2026-11-01_2026-11-30.csv"'
    rows = csv_rows(resp)
    assert rows[0] == ["conversion_id", "converted_at", "conversion_type", "funnel", "revenue", "currency",
                       "is_acquisition", "user_id", "visitor_id", "attribution_status", "model", "channel", "credit",
                       "revenue_credit", "session_id", "session_started_at", "utm_source", "utm_medium",
                       "utm_campaign", "touchpoint_index", "journey_length"]
    assert rows[1][:10] == [bare["id"], bare["converted_at"], "purchase", "", "5.50", "USD", "false", "", "v-bare",
                            "complete"]
    assert rows[1][10:] == [""] * 11  # no credits: one line, empty model columns
    lines = rows[2:]
    assert [(r[10], r[11], r[12], r[13], r[19], r[20]) for r in lines] == [
        ("first_touch", "organic_search", "1.0000", "100.00", "0", "4"),
        ("linear", "organic_search", "0.2500", "25.00", "0", "4"),
        ("linear", "paid_social", "0.2500", "25.00", "1", "4"),
        ("linear", "email", "0.2500", "25.00", "2", "4"),
        ("linear", "paid_search", "0.2500", "25.00", "3", "4"),
    ]
    assert {r[0] for r in lines} == {created["id"]}
    assert lines[0][15] == "2026-10-23T15:30:00Z"  # the first session started 28 days before
    assert lines[2][16:19] == ["facebook", "paid_social", "bf_retarget"]
    linear = created["attribution"]["models"]["linear"]
    assert [r[14] for r in lines[1:]] == [c["session_id"] for c in linear]
    # format=json wins over Accept (API-122); CSV ignores limit and cursor
    assert get(client, acct, "/conversions", format="json", headers={"Accept": "text/csv"},
               **NOV).headers["Content-Type"] == "application/json; charset=utf-8"
    every_model = csv_rows(get(client, acct, "/conversions", format="csv", **NOV))
    assert len(every_model) == 1 + 1 + 26  # header, the bare conversion, 8 models' credits of the 4-touch one
    assert csv_rows(get(client, acct, "/conversions", format="csv", limit="1", cursor="x", **NOV)) == every_model


def test_API125_conversion_by_id(app: Flask, client: FlaskClient, acct: AccountKeys, other_acct: AccountKeys,
                                 clock: list[datetime]) -> None:
    created = four_touch(client, acct)
    resp = get(client, acct, f"/conversions/{created['id']}")
    assert resp.status_code == 200
    expected = {k: v for k, v in created.items() if k not in ("duplicate", "warnings")}
    assert resp.get_json() == {**expected, "status": "active"}
    assert get(client, acct, "/conversions/" + created["id"].lower()).get_json()["id"] == created["id"]  # API-5
    not_found = {"error": "Conversion not found"}
    for who, env in ((acct, "live"), (other_acct, "test")):  # API-14: elsewhere = does not exist
        other = get(client, who, f"/conversions/{created['id']}", env)
        assert (other.status_code, other.get_json()) == (404, not_found)
    assert get(client, acct, "/conversions/conv_01M7WS8B605V1Y8ZEF0PGKKP4X").get_json() == not_found
    assert get(client, acct, "/conversions/nonsense").status_code == 404


def test_API125_rejected_conversion_says_why(app: Flask, client: FlaskClient, acct: AccountKeys) -> None:
    """API-93: a conversion rejected after its answer (recorded under its id, API-24) answers with the reason."""
    conv_id = new_id("conv")
    with app.config["MBUZZ"].sessions.begin() as db:
        db.add(m.Rejection(account_id=acct.account_id, environment="test", id=new_id("rej"), endpoint="conversions",
                           item_index=None, name=conv_id, errors=["event_id evt_01M7WS897GFN75MXQAWVCC2SA1 not found"],
                           key_prefix=None, request_id=None, created_at=datetime.now(UTC)))
    resp = get(client, acct, f"/conversions/{conv_id}")
    assert (resp.status_code, resp.get_json()) == (
        404, {"error": f"Conversion {conv_id} was rejected: event_id evt_01M7WS897GFN75MXQAWVCC2SA1 not found"})
    assert get(client, acct, f"/conversions/{conv_id}", "live").get_json() == {"error": "Conversion not found"}


# ------------------------------------------------------------------------------------------ API-126/127/123


def test_API126_event_rows_and_filters(client: FlaskClient, acct: AccountKeys, clock: list[datetime]) -> None:
    touch(client, acct, "v-ev", "https://acme.com/?utm_source=newsletter&utm_medium=email", AT - timedelta(hours=3),
          session_id="cs-ev")
    post(client, acct, "/identify", {"user_id": "u-ev", "visitor_id": "v-ev",
                                     "timestamp": iso(AT - timedelta(hours=3))})
    first = event(client, acct, "v-ev", AT - timedelta(hours=2, minutes=50), event_type="add_to_cart",
                  session_id="cs-ev",
                  funnel="checkout", url="https://acme.com/cart", properties={"sku": "A-1", "qty": 2})
    second = event(client, acct, "v-other", AT - timedelta(hours=1))
    body = get(client, acct, "/events", **NOV).get_json()
    assert [e["id"] for e in body["data"]] == [second, first]
    row = body["data"][1]
    assert SERVER_ID.match(row["session_id"]) and row["session_id"].startswith("sess_")
    assert row == {
        "id": first, "occurred_at": "2026-11-20T12:40:00Z",
        "received_at": "2026-11-20T15:30:00Z", "event_type": "add_to_cart", "funnel": "checkout",
        "visitor_id": "v-ev", "user_id": "u-ev", "session_id": row["session_id"], "channel": "email",
        "url": "https://acme.com/cart", "properties": {"sku": "A-1", "qty": 2},
    }

    def ids(**params: str) -> list[str]:
        return [e["id"] for e in get(client, acct, "/events", **NOV, **params).get_json()["data"]]

    assert ids(event_type="add_to_cart") == [first]
    assert ids(funnel="checkout") == [first]
    assert ids(visitor_id="v-other") == [second]
    assert ids(user_id="u-ev") == [first]
    assert ids(session_id=row["session_id"].lower()) == [first]
    csv_lines = csv_rows(get(client, acct, "/events", format="csv", event_type="add_to_cart", **NOV))
    assert csv_lines[0] == ["id", "occurred_at", "received_at", "event_type", "funnel", "visitor_id", "user_id",
                            "session_id", "channel", "url", "properties"]
    assert json.loads(csv_lines[1][-1]) == {"sku": "A-1", "qty": 2}  # nested values as compact JSON
    assert " " not in csv_lines[1][-1]


def test_API122_csv_cells_that_look_like_formulas_are_prefixed(client: FlaskClient, acct: AccountKeys,
                                                              clock: list[datetime]) -> None:
    event(client, acct, "v-x", AT - timedelta(hours=1), event_type='=HYPERLINK("http://evil")',
          properties={"note": "x"})
    event(client, acct, "v-x", AT - timedelta(hours=2), event_type="@SUM(A1)", funnel="+1", url="-2+3")
    rows = csv_rows(get(client, acct, "/events", format="csv", **NOV))
    assert rows[1][3] == "'=HYPERLINK(\"http://evil\")"
    assert rows[2][3:5] == ["'@SUM(A1)", "'+1"] and rows[2][9] == "'-2+3"
    assert rows[2][6] == ""  # null (no user) → empty cell


def test_API127_session_rows_and_filters(client: FlaskClient, acct: AccountKeys, clock: list[datetime]) -> None:
    touch(client, acct, "v-s", "https://acme.com/landing?utm_source=google&utm_medium=cpc&utm_campaign=brand"
          "&utm_content=ad1&utm_term=shoes&gclid=Cj0KC", AT - timedelta(hours=3), referrer="https://www.google.com/",
          session_id="cs-1", user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", country="nz")
    touch(client, acct, "v-s", "https://acme.com/next", AT - timedelta(hours=3) + timedelta(minutes=5),
          referrer="https://acme.com/landing", session_id="cs-2")
    post(client, acct, "/identify", {"user_id": "u-s", "visitor_id": "v-s"})
    touch(client, acct, "v-t", "https://acme.com/?utm_source=newsletter&utm_medium=email", AT - timedelta(hours=1))
    body = get(client, acct, "/sessions", **NOV).get_json()
    assert [s["visitor_id"] for s in body["data"]] == ["v-t", "v-s"]
    row = body["data"][1]
    assert row["id"].startswith("sess_") and row["user_id"] == "u-s"
    assert {k: row[k] for k in ("started_at", "channel", "utm_source", "utm_medium", "utm_campaign", "utm_content",
                                "utm_term", "referrer_host", "landing_url", "touches", "country", "excluded",
                                "exclusion_reason")} == {
        "started_at": "2026-11-20T12:30:00Z", "channel": "paid_search", "utm_source": "google",
        "utm_medium": "cpc", "utm_campaign": "brand", "utm_content": "ad1", "utm_term": "shoes",
        "referrer_host": "google.com", "landing_url": row["landing_url"], "touches": 2, "country": "NZ",
        "excluded": False, "exclusion_reason": None}
    assert row["landing_url"].startswith("https://acme.com/landing")
    assert row["click_ids"] == {"gclid": "Cj0KC"}
    assert row["last_activity_at"] == "2026-11-20T12:35:00Z"
    assert set(row["client_session_ids"]) == {"cs-1", "cs-2"}
    assert set(row) >= {"events", "device_type"}

    def visitors(**params: str) -> list[str]:
        return [s["visitor_id"] for s in get(client, acct, "/sessions", **NOV, **params).get_json()["data"]]

    assert visitors(visitor_id="v-t") == ["v-t"]
    assert visitors(user_id="u-s") == ["v-s"]
    assert visitors(channels="email") == ["v-t"]
    assert visitors(channels="email,paid_search") == ["v-t", "v-s"]
    header = csv_rows(get(client, acct, "/sessions", format="csv", **NOV))[0]
    assert header[-1] == "client_session_ids" and len(header) == 21


def test_API123_excluded_sessions_and_their_events(client: FlaskClient, acct: AccountKeys,
                                                   clock: list[datetime]) -> None:
    touch(client, acct, "v-bot", "https://acme.com/", AT - timedelta(hours=2), session_id="cs-bot", user_agent=BOT_UA)
    bot_event = event(client, acct, "v-bot", AT - timedelta(hours=2) + timedelta(minutes=1), session_id="cs-bot",
                      user_agent=BOT_UA)
    touch(client, acct, "v-human", "https://acme.com/", AT - timedelta(hours=1), session_id="cs-h")
    human_event = event(client, acct, "v-human", AT - timedelta(hours=1) + timedelta(minutes=1), session_id="cs-h")
    sessions = get(client, acct, "/sessions", **NOV).get_json()["data"]
    assert [s["visitor_id"] for s in sessions] == ["v-human"]
    everything = get(client, acct, "/sessions", include_excluded="TRUE", **NOV).get_json()["data"]
    bot = [s for s in everything if s["visitor_id"] == "v-bot"]
    assert len(bot) == 1 and bot[0]["excluded"] is True and bot[0]["exclusion_reason"]
    assert [e["id"] for e in get(client, acct, "/events", **NOV).get_json()["data"]] == [human_event]
    assert [e["id"] for e in get(client, acct, "/events", include_excluded="1", **NOV).get_json()["data"]] == [
        human_event, bot_event]
    resp = get(client, acct, "/events", include_excluded="maybe")
    assert (resp.status_code, resp.get_json()) == (400, {"error": "include_excluded must be true or false, "
                                                                  "got 'maybe'"})


# ------------------------------------------------------------------------------------------ API-12, API-14, API-140


def test_API12_secret_key_required(app: Flask, client: FlaskClient, acct: AccountKeys) -> None:
    with app.config["MBUZZ"].sessions.begin() as db:
        sgtm = accounts.create_api_key(db, acct.account_id, "test", kind="sgtm").plaintext
    publishable = ("Publishable keys (pk_...) only work on the Shopify pixel and sGTM collect endpoints; "
                   "use a secret key (sk_test_... or sk_live_...)")
    cases = [
        ({}, "Missing Authorization header"),
        ({"Authorization": f"Bearer {sgtm}"}, publishable),
        ({"Authorization": "Token abc"}, "Authorization header must be in format: Bearer sk_{env}_{key}"),
        ({"Authorization": "Bearer sk_test_" + "0" * 32}, "Invalid or expired API key"),
    ]
    for path in ("/conversions", "/conversions/conv_01M7WS8B605V1Y8ZEF0PGKKP4N", "/events", "/sessions",
                 "/attribution"):
        for headers, message in cases:
            resp = client.get(f"/api/v1/data{path}", headers=headers)
            assert (resp.status_code, resp.get_json()) == (401, {"error": message}), path
            assert resp.headers["WWW-Authenticate"] == "Bearer"
        ok = get(client, acct, path, headers={"X-Request-Id": "req-123"})
        assert ok.headers["X-Request-Id"] == "req-123"  # API-4
        assert "Set-Cookie" not in ok.headers


def test_API14_environments_and_accounts_are_isolated(client: FlaskClient, acct: AccountKeys,
                                                      other_acct: AccountKeys, clock: list[datetime]) -> None:
    four_touch(client, acct)
    event(client, acct, "v-iso", AT - timedelta(hours=1))
    for who, env in ((acct, "live"), (other_acct, "test")):
        for path in ("/conversions", "/events", "/sessions", "/attribution"):
            assert get(client, who, path, env, **NOV).get_json()["data"] == [], (env, path)
    # the four touches, two of them in October (an event without a URL opens no session)
    assert len(get(client, acct, "/sessions", start_date="2026-10-01", end_date="2026-11-30").get_json()["data"]) == 4


def test_API140_data_endpoints_share_one_limit(database_url: str) -> None:
    app = create_app(make_settings(database_url, ratelimit_data="3 per minute"))
    keys = new_account(app)
    client = app.test_client()
    statuses = [get(client, keys, path).status_code for path in ("/events", "/sessions", "/attribution",
                                                                 "/conversions")]
    assert statuses == [200, 200, 200, 429]
    resp = get(client, keys, "/events")
    body = resp.get_json()
    assert body["error"] == "Rate limit exceeded" and body["retry_after"] >= 1
    assert int(resp.headers["Retry-After"]) >= 1 and "X-RateLimit-Limit" in resp.headers
    assert get(client, new_account(app), "/events").status_code == 200  # per key
    assert json.loads(client.get("/api/v1/health").get_data())["status"] == "ok"


def test_API122_csv_reads_every_chunk_in_order(client: FlaskClient, acct: AccountKeys, clock: list[datetime],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from core import reports

    monkeypatch.setattr(reports, "CHUNK", 2)  # five events: three reads of two, two and one
    ids = [event(client, acct, "v-chunk", AT - timedelta(minutes=i)) for i in range(5)]
    rows = csv_rows(get(client, acct, "/events", format="csv", **NOV))
    assert [r[0] for r in rows[1:]] == ids  # newest first, none lost or repeated at a chunk's edge
    oldest_first = csv_rows(get(client, acct, "/events", format="csv", order="asc", **NOV))
    assert [r[0] for r in oldest_first[1:]] == ids[::-1]
