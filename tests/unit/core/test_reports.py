"""core.reports (api.md API-120, API-121, API-128; attribution.md ATT-55, ATT-56): the queries behind the data API
and the dashboard, on the run's real database. Data is recorded through the public API, then read with core."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from core.commands import OrderAdjustmentCommand
from core.ids import new_id
from core.reports import (
    Range,
    ReportError,
    attribution_report,
    daily_totals,
    list_conversions,
    list_events,
    list_sessions,
    resolve_range,
)
from core.settings import save_settings
from core.tenant import Tenant
from tests.conftest import AccountKeys
from tests.integration.helpers import iso, post, touch

AT = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
NOV = Range(date(2026, 11, 1), date(2026, 11, 30), "UTC")
TODAY = date(2026, 11, 20)


@pytest.fixture()
def clock(app: Flask) -> Iterator[None]:
    services = app.config["MBUZZ"]
    services.clock = lambda: AT
    yield
    services.clock = lambda: datetime.now(UTC)


def tenant_of(acct: AccountKeys, env: str = "test") -> Tenant:
    return Tenant(acct.account_id, env)


def convert(client: FlaskClient, acct: AccountKeys, visitor: str, at: datetime, **extra: Any) -> str:
    resp = post(client, acct, "/conversions", {"conversion_type": "purchase", "visitor_id": visitor,
                                               "timestamp": iso(at), **extra})
    assert resp.status_code == 201, resp.get_json()
    return str(resp.get_json()["id"])


def journey(client: FlaskClient, acct: AccountKeys, visitor: str, *sources: str) -> None:
    for i, source in enumerate(sources):
        touch(client, acct, visitor, f"https://acme.com/?{source}", AT - timedelta(days=10 - i))


# ------------------------------------------------------------------------------------------ API-120 ranges


def test_API120_presets_and_default() -> None:
    assert resolve_range(None, None, None, "UTC", TODAY) == Range(date(2026, 10, 22), TODAY, "UTC")
    assert resolve_range("", "", "", "UTC", TODAY) == Range(date(2026, 10, 22), TODAY, "UTC")  # "" = absent
    assert resolve_range("7d", None, None, "UTC", TODAY) == Range(date(2026, 11, 14), TODAY, "UTC")
    assert resolve_range("90d", None, None, "UTC", TODAY).start == date(2026, 8, 23)
    assert resolve_range("365d", None, None, "Europe/Paris", TODAY) == Range(date(2025, 11, 21), TODAY,
                                                                            "Europe/Paris")
    # explicit dates win over a preset; one day is a valid range
    assert resolve_range("7d", "2026-11-03", "2026-11-03", "UTC", TODAY) == Range(date(2026, 11, 3),
                                                                                  date(2026, 11, 3), "UTC")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None, "2026-11-1", "2026-11-30"), "Invalid date format. Use YYYY-MM-DD."),
        ((None, "2026-11-01", "2026-13-01"), "Invalid date format. Use YYYY-MM-DD."),
        ((None, "2026-11-01T00:00", "2026-11-30"), "Invalid date format. Use YYYY-MM-DD."),
        ((None, "2026-11-02", "2026-11-01"), "start_date must be on or before end_date"),
        ((None, None, "2026-11-01"), "start_date and end_date must both be given (YYYY-MM-DD)"),
        (("30D", None, None), "Unknown date_range '30D'. Allowed: 7d, 30d, 90d, 365d"),
        (("x" * 50, None, None), f"Unknown date_range '{'x' * 40}…'. Allowed: 7d, 30d, 90d, 365d"),
    ],
)
def test_API120_errors_are_report_errors_with_the_spec_messages(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ReportError) as caught:
        resolve_range(*args, "UTC", TODAY)
    assert caught.value.message == str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_API120_bounds_are_local_midnights_in_utc() -> None:
    auckland = Range(date(2026, 11, 1), date(2026, 11, 30), "Pacific/Auckland")  # UTC+13 in summer
    assert auckland.bounds() == (datetime(2026, 10, 31, 11, tzinfo=UTC), datetime(2026, 11, 30, 11, tzinfo=UTC))
    # New York leaves daylight saving on 1 November 2026: that day is 25 hours long
    day = Range(date(2026, 11, 1), date(2026, 11, 1), "America/New_York")
    low, high = day.bounds()
    assert high is not None and (low, high - low) == (datetime(2026, 11, 1, 4, tzinfo=UTC), timedelta(hours=25))
    assert Range(date(1, 1, 1), date.max, "Asia/Tokyo").bounds() == (datetime.min.replace(tzinfo=UTC), None)
    assert len(NOV.days()) == 30 and NOV.days()[0] == date(2026, 11, 1)


# ------------------------------------------------------------------------------------------ API-121 keyset


def test_API121_keyset_pages_through_ties_without_gaps(app: Flask, client: FlaskClient, acct: AccountKeys,
                                                       clock: None) -> None:
    same = AT - timedelta(hours=1)
    ids = {convert(client, acct, f"v-tie-{i}", same) for i in range(3)} | {convert(client, acct, "v-x", AT)}
    for order in ("desc", "asc"):
        seen: list[tuple[datetime, str]] = []
        after = None
        with app.config["MBUZZ"].sessions() as db:
            while True:
                page, after = list_conversions(db, tenant_of(acct), NOV, {}, 1, after, order)
                seen += [(c.converted_at, c.id) for c in page]
                if after is None:
                    break
                assert after == seen[-1] and after[0].tzinfo is not None  # the keyset of the last row
        assert {i for _, i in seen} == ids and len(seen) == 4
        assert seen == sorted(seen, reverse=order == "desc")  # (time, id), ties broken by id
    with app.config["MBUZZ"].sessions() as db:
        everything, last = list_conversions(db, tenant_of(acct), NOV, {}, 4, None, "desc")
        assert last is None and len(everything) == 4  # exactly `limit` rows left: no further page


def test_API121_lists_are_scoped_by_account_and_environment(app: Flask, client: FlaskClient, acct: AccountKeys,
                                                            other_acct: AccountKeys, clock: None) -> None:
    touch(client, acct, "v-scope", "https://acme.com/?utm_source=newsletter&utm_medium=email",
          AT - timedelta(hours=2), session_id="cs-scope")
    post(client, acct, "/events", {"event_type": "view", "visitor_id": "v-scope", "session_id": "cs-scope",
                                   "timestamp": iso(AT - timedelta(hours=1, minutes=50)), "url": "https://acme.com/"})
    convert(client, acct, "v-scope", AT - timedelta(hours=1))
    with app.config["MBUZZ"].sessions() as db:
        for lister in (list_conversions, list_events, list_sessions):
            assert len(lister(db, tenant_of(acct), NOV, {}, 10, None, "desc")[0]) == 1, lister
            assert lister(db, tenant_of(acct, "live"), NOV, {}, 10, None, "desc")[0] == []
            assert lister(db, tenant_of(other_acct), NOV, {}, 10, None, "desc")[0] == []


# ------------------------------------------------------------------------------------------ API-128 report


def test_API128_report_numbers_are_exact_decimals_and_minor_units(app: Flask, client: FlaskClient,
                                                                  acct: AccountKeys, clock: None) -> None:
    sources = ("utm_source=newsletter&utm_medium=email", "utm_source=facebook&utm_medium=paid_social", "gclid=Cj0")
    for i in range(3):
        journey(client, acct, f"v-r{i}", *sources)
        convert(client, acct, f"v-r{i}", AT - timedelta(days=1), revenue="100.00")
    with app.config["MBUZZ"].sessions() as db:
        report = attribution_report(db, tenant_of(acct), NOV, models=["linear", "first_touch"])
    assert report["models"] == ["first_touch", "linear"]  # API-94 order whatever the caller's order
    linear = [r for r in report["rows"] if r["model"] == "linear"]
    assert [r["channel"] for r in linear] == ["paid_search", "paid_social", "email"]  # CH-1 order
    # ATT-34/37: one touch of each journey carries 0.3334 and 33.34, the others 0.3333 and 33.33
    conversions = sorted(r["conversions"] for r in linear)
    assert conversions == [Decimal("0.9999"), Decimal("0.9999"), Decimal("1.0002")]
    assert all(isinstance(r["conversions"], Decimal) and isinstance(r["revenue_minor"], int) for r in linear)
    assert sorted(r["conversion_share"] for r in linear) == [Decimal("0.3333"), Decimal("0.3333"),
                                                             Decimal("0.3334")]
    assert sorted(r["revenue_minor"] for r in linear) == [9999, 9999, 10002]
    assert {r["touchpoints"] for r in linear} == {3}
    assert sum(r["revenue_minor"] for r in linear) == report["total_revenue_minor"]["USD"] == 30000
    assert report["total_conversions"] == 3 and report["unattributed_conversions"] == 0
    assert report["unattributed_revenue_minor"] == {}


def test_ATT56_reconciliation_for_every_model_but_participation(app: Flask, client: FlaskClient,
                                                                acct: AccountKeys, clock: None) -> None:
    journey(client, acct, "v-a", "utm_source=newsletter&utm_medium=email", "gclid=Cj0")
    convert(client, acct, "v-a", AT - timedelta(days=1), revenue="99.99")
    journey(client, acct, "v-b", "utm_source=chatgpt.com", "utm_source=newsletter&utm_medium=email",
            "utm_source=facebook&utm_medium=paid_social")
    convert(client, acct, "v-b", AT - timedelta(days=1), revenue="10.01")
    convert(client, acct, "v-empty", AT - timedelta(days=1), revenue="5.00")
    convert(client, acct, "v-eur", AT - timedelta(days=1), revenue="7.00", currency="EUR")
    with app.config["MBUZZ"].sessions() as db:
        report = attribution_report(db, tenant_of(acct), NOV)
    assert report["total_conversions"] == 4 and report["unattributed_conversions"] == 2
    assert report["total_revenue_minor"] == {"EUR": 700, "USD": 11500}
    assert report["unattributed_revenue_minor"] == {"EUR": 700, "USD": 500}
    for model in report["models"]:
        if model == "participation":
            continue
        rows = [r for r in report["rows"] if r["model"] == model]
        assert sum(r["conversions"] for r in rows) + report["unattributed_conversions"] == 4, model
        assert sum(r["revenue_minor"] for r in rows) + 500 == 11500, model
        assert sum(r["conversion_share"] for r in rows) == pytest.approx(Decimal(1), abs=Decimal("0.0003"))


def test_API128_refunds_cancels_funnel_and_pending(app: Flask, client: FlaskClient, acct: AccountKeys,
                                                   clock: None) -> None:
    journey(client, acct, "v-ref", "utm_source=newsletter&utm_medium=email")
    convert(client, acct, "v-ref", AT - timedelta(days=1), revenue="99.99", idempotency_key="o-1", funnel="shop")
    journey(client, acct, "v-can", "gclid=Cj0")
    convert(client, acct, "v-can", AT - timedelta(days=1), revenue="50.00", idempotency_key="o-2", funnel="shop")
    log, tenant = app.config["MBUZZ"].log, tenant_of(acct)
    for key, kind, amount in (("o-1", "refund", "40.00"), ("o-2", "cancel", None)):
        log.append(tenant, [OrderAdjustmentCommand(id=new_id("cmd"), idempotency_key=f"{key}:{kind}",
                                                   conversion_key=key, adjustment=kind, occurred_at=AT,
                                                   received_at=AT, amount=amount, currency="USD")])
    with app.config["MBUZZ"].sessions() as db:
        report = attribution_report(db, tenant, NOV, models=["first_touch"], funnel="shop")
        other_funnel = attribution_report(db, tenant, NOV, models=["first_touch"], funnel="signup")
        listed, _ = list_conversions(db, tenant, NOV, {"funnel": "shop"}, 10, None, "desc")
    assert [(r["channel"], r["revenue_minor"]) for r in report["rows"]] == [("email", 5999)]
    assert report["total_revenue_minor"] == {"USD": 5999} and report["total_conversions"] == 1
    assert other_funnel["rows"] == [] and other_funnel["total_conversions"] == 0
    assert sorted(c.status for c in listed) == ["active", "cancelled"]  # lists keep cancelled conversions


# ------------------------------------------------------------------------------------------ daily totals


def test_daily_totals_per_local_day_with_zero_days(app: Flask, client: FlaskClient, acct: AccountKeys,
                                                   clock: None) -> None:
    convert(client, acct, "v-d1", datetime(2026, 11, 3, 10, tzinfo=UTC), revenue="10.00")
    convert(client, acct, "v-d2", datetime(2026, 11, 3, 12, tzinfo=UTC), revenue="5.00", currency="EUR")
    convert(client, acct, "v-d3", datetime(2026, 11, 3, 23, 30, tzinfo=UTC), funnel="other")  # no revenue
    rng = Range(date(2026, 11, 2), date(2026, 11, 4), "UTC")
    with app.config["MBUZZ"].sessions() as db:
        days = daily_totals(db, tenant_of(acct), rng)
        only_other = daily_totals(db, tenant_of(acct), rng, funnel="other")
    assert days == [
        {"day": date(2026, 11, 2), "conversions": 0, "revenue_minor": {}},
        {"day": date(2026, 11, 3), "conversions": 3, "revenue_minor": {"USD": 1000, "EUR": 500}},
        {"day": date(2026, 11, 4), "conversions": 0, "revenue_minor": {}},
    ]
    assert [d["conversions"] for d in only_other] == [0, 1, 0]
    with app.config["MBUZZ"].sessions.begin() as db:
        save_settings(db, acct.account_id, {"timezone": "Pacific/Auckland"})
    with app.config["MBUZZ"].sessions() as db:
        local = daily_totals(db, tenant_of(acct), Range(date(2026, 11, 3), date(2026, 11, 4), "Pacific/Auckland"))
    # 10:00Z and 12:00Z on 3 Nov are 23:00 / 01:00 in Auckland; 23:30Z is 4 Nov 12:30 there
    assert [(d["day"], d["conversions"]) for d in local] == [(date(2026, 11, 3), 1), (date(2026, 11, 4), 2)]
