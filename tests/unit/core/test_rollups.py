"""core.rollups (dashboard.md DSH-22, quality.md Q-7; docs/dashboard.md DSH-22-D1): the daily rollups answer the
reports exactly as the source tables do, after every kind of change, on the run's real database."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from core import rollups
from core.attribution import MODELS
from core.commands import OrderAdjustmentCommand, RedactCommand
from core.ids import new_id
from core.reattribution.service import apply_settings_change
from core.reattribution.tasks import run_inline
from core.reports import Range, attribution_report, daily_totals
from core.settings import save_settings
from core.storage.models import Conversion, ReportCreditDay, ReportDirtyDay
from core.tenant import Tenant
from tests.conftest import AccountKeys, new_account
from tests.integration.helpers import touch
from tests.unit.core.test_reports import AT, clock, convert  # noqa: F401  (clock is a fixture)

NOV = date(2026, 11, 1), date(2026, 11, 30)


def traffic(client: FlaskClient, acct: AccountKeys) -> None:
    """Journeys of one to three channels, two currencies, two funnels and types, conversions either side of
    midnight in Paris and Auckland, one without any journey (ATT-12)."""
    sources = ["utm_source=google&utm_medium=cpc", "utm_source=newsletter&utm_medium=email", "gclid=Cj0",
               "utm_source=facebook&utm_medium=paid_social", "utm_source=partner&utm_medium=affiliate"]
    for i in range(12):
        visitor = f"v-roll-{i}"
        for j in range(1 + i % 3):
            touch(client, acct, visitor, f"https://acme.com/?{sources[(i + j) % len(sources)]}",
                  AT - timedelta(days=9 - j * 2, hours=i))
        extra: dict[str, Any] = {"revenue": f"{10 + i}.50", "idempotency_key": f"o-{i}"}
        if i % 4 == 1:
            extra.update(currency="EUR", funnel="shop")
        if i % 5 == 2:
            extra = {"conversion_type": "signup", "funnel": "signup"}
        convert(client, acct, visitor, AT - timedelta(days=2, hours=i * 2, minutes=7), **extra)
    convert(client, acct, "v-roll-none", AT - timedelta(days=1), revenue="5.00")  # no journey: unattributed


def assert_rollups_match_source(app: Flask, tenant: Tenant, tz: str = "UTC") -> dict[str, Any]:
    """Every model, filter and daily total read from the rollups equals the same read of the source tables."""
    rng = Range(*NOV, tz)
    with app.config["MBUZZ"].sessions() as db:
        reports = {}
        for filters in ({}, {"funnel": "shop"}, {"conversion_type": "signup"}, {"models": ["linear"]}):
            rolled = attribution_report(db, tenant, rng, **filters)  # type: ignore[arg-type]
            source = attribution_report(db, tenant, rng, **filters, use_rollups=False)  # type: ignore[arg-type]
            assert rolled == source, filters
            reports[str(filters)] = rolled
        one_day = Range(date(2026, 11, 18), date(2026, 11, 18), tz)
        assert attribution_report(db, tenant, one_day) == attribution_report(db, tenant, one_day, use_rollups=False)
        for funnel in (None, "shop"):
            assert daily_totals(db, tenant, rng, funnel) == daily_totals(db, tenant, rng, funnel, use_rollups=False)
        assert db.scalar(sa.select(sa.func.count()).select_from(ReportCreditDay).where(
            ReportCreditDay.account_id == tenant.account_id)) > 0  # the rollups were really read
    return reports["{}"]


@pytest.mark.usefixtures("clock")
def test_DSH22_rollups_equal_the_source_after_conversions_refunds_cancels_and_reattribution(
        app: Flask, client: FlaskClient) -> None:
    acct = new_account(app, "Rollups")
    tenant = Tenant(acct.account_id, "test")
    traffic(client, acct)
    first = assert_rollups_match_source(app, tenant)
    assert first["total_conversions"] == 13 and first["unattributed_conversions"] == 1
    assert set(first["models"]) == set(MODELS)

    log = app.config["MBUZZ"].log  # refunds and cancels re-split stored credits (ATT-38)
    for key, kind, amount in (("o-0", "refund", "4.00"), ("o-3", "cancel", None)):
        log.append(tenant, [OrderAdjustmentCommand(id=new_id("cmd"), idempotency_key=f"{key}:{kind}",
                                                   conversion_key=key, adjustment=kind, occurred_at=AT,
                                                   received_at=AT, amount=amount, currency="USD")])
    adjusted = assert_rollups_match_source(app, tenant)
    assert adjusted["total_conversions"] == 12 and adjusted["total_revenue_minor"] != first["total_revenue_minor"]

    sessions = app.config["MBUZZ"].sessions  # a settings change that moves credits (ATT-51)
    with sessions.begin() as db:
        batches = apply_settings_change(db, acct.account_id, {"lookback_days": 3})
        targets = [(Tenant(b.account_id, b.environment), b.id) for b in batches]
    for target, batch_id in targets:
        run_inline(sessions, target, batch_id)
    shorter = assert_rollups_match_source(app, tenant)
    assert shorter["unattributed_conversions"] > adjusted["unattributed_conversions"]

    convert(client, acct, "v-roll-1", AT - timedelta(hours=3), revenue="7.00")  # a later conversion, same day
    later = assert_rollups_match_source(app, tenant)
    assert later["total_conversions"] == shorter["total_conversions"] + 1


@pytest.mark.usefixtures("clock")
def test_DSH22_a_time_zone_change_rebuilds_the_daily_buckets(app: Flask, client: FlaskClient) -> None:
    acct = new_account(app, "Rollups tz")
    tenant = Tenant(acct.account_id, "test")
    traffic(client, acct)
    assert_rollups_match_source(app, tenant)
    for tz in ("Europe/Paris", "Pacific/Auckland", "Asia/Kolkata"):  # +1, +13 and a half-hour offset
        with app.config["MBUZZ"].sessions.begin() as db:
            save_settings(db, acct.account_id, {"timezone": tz})
        assert_rollups_match_source(app, tenant, tz)
        with app.config["MBUZZ"].sessions() as db:
            utc = daily_totals(db, tenant, Range(*NOV, "UTC"), use_rollups=False)
            local = daily_totals(db, tenant, Range(*NOV, tz))
        assert [d["conversions"] for d in local] != [d["conversions"] for d in utc]  # really re-bucketed


@pytest.mark.usefixtures("clock")
def test_DSH22_refresh_reads_marks_once_and_erasure_is_seen(app: Flask, client: FlaskClient) -> None:
    acct = new_account(app, "Rollups marks")
    tenant = Tenant(acct.account_id, "test")
    traffic(client, acct)
    sessions = app.config["MBUZZ"].sessions

    def marks() -> int:
        with sessions() as db:
            return int(db.scalar(sa.select(sa.func.count()).select_from(ReportDirtyDay).where(
                ReportDirtyDay.account_id == acct.account_id)) or 0)

    with sessions() as db:
        assert rollups.refresh(db, tenant, "UTC") > 0
        assert rollups.refresh(db, tenant, "UTC") == 0  # nothing changed: nothing recomputed
    assert marks() == 0
    convert(client, acct, "v-roll-2", AT - timedelta(hours=5))
    assert marks() >= 1
    with sessions() as db:
        assert rollups.refresh(db, tenant, "UTC") in (1, 2)  # the touched UTC day's local days only
    # An erasure deletes conversions with bulk statements (SHP-89): the rollups still see them go.
    with sessions.begin() as db:
        for conv in db.scalars(sa.select(Conversion).where(Conversion.account_id == acct.account_id,
                                                           Conversion.idempotency_key.in_(["o-0", "o-4"]))):
            conv.origin = "shop:rollups.myshopify.com"
    assert_rollups_match_source(app, tenant)
    app.config["MBUZZ"].log.append(tenant, [RedactCommand(
        id=new_id("cmd"), idempotency_key="redact:rollups", scope="origin", occurred_at=AT, received_at=AT,
        origin="shop:rollups.myshopify.com")])
    erased = assert_rollups_match_source(app, tenant)
    assert erased["total_conversions"] == 12


@pytest.mark.postgres
def test_DSH22_concurrent_writers_and_refreshes_leave_the_rollups_exact(app: Flask, is_postgres: bool) -> None:
    """Marks are committed with the change they describe and refreshes queue on the tenant's row lock, so
    conversions written while other requests refresh are never lost from the rollups (PostgreSQL, real locks)."""
    if not is_postgres:
        pytest.skip("concurrent transactions and row locks are tested on PostgreSQL")
    import threading

    acct = new_account(app, "Rollups race")
    tenant = Tenant(acct.account_id, "test")
    sessions = app.config["MBUZZ"].sessions
    failures: list[BaseException] = []
    writing = threading.Event()

    def write(worker: int) -> None:
        client = app.test_client()
        try:
            for i in range(12):
                touch(client, acct, f"v-race-{worker}-{i}", "https://acme.com/?gclid=Cj0", AT - timedelta(days=3))
                convert(client, acct, f"v-race-{worker}-{i}", AT - timedelta(days=1, minutes=worker * 13 + i),
                        revenue=f"{i + 1}.00")
        except BaseException as exc:  # reported below: a thread's assertion must fail the test
            failures.append(exc)

    def refresh_while_writing() -> None:
        try:
            while writing.is_set():
                with sessions() as db:
                    rollups.refresh(db, tenant, "UTC")
        except BaseException as exc:
            failures.append(exc)

    writing.set()
    writers = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    readers = [threading.Thread(target=refresh_while_writing) for _ in range(2)]
    for thread in (*writers, *readers):
        thread.start()
    for thread in writers:
        thread.join(120)
    writing.clear()
    for thread in readers:
        thread.join(60)
    assert failures == []
    report = assert_rollups_match_source(app, tenant)
    assert report["total_conversions"] == 36 and report["total_revenue_minor"] == {"USD": 3 * 7800}


@pytest.mark.usefixtures("clock")
def test_DSH22_a_large_tenants_first_build_runs_in_the_background_while_reads_use_the_sources(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.storage.models import ReportRollupState
    from tests.integration.processes import wait_until

    monkeypatch.setattr(rollups, "SYNC_BUILD_LIMIT", 5)  # "large": more conversions than a read should wait for
    acct = new_account(app, "Rollups large")
    tenant = Tenant(acct.account_id, "test")
    traffic(client, acct)
    sessions = app.config["MBUZZ"].sessions
    rng = Range(*NOV, "UTC")

    def built() -> bool:
        with sessions() as db:
            state = db.get(ReportRollupState, (acct.account_id, "test"))
            return state is not None and state.tz == "UTC"

    with sessions() as db:
        first = attribution_report(db, tenant, rng)  # answered at once from the source tables
        assert first == attribution_report(db, tenant, rng, use_rollups=False)
        assert first["total_conversions"] == 13
    assert wait_until(built, 30)
    assert_rollups_match_source(app, tenant)  # from now on the rollups answer, still exact
