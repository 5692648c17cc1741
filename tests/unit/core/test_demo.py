"""core.demo (issue 7 "Demo data", docs/dashboard.md DSH-D-demo): the demo is real traffic through the real command
path, so every dashboard page has something true to show on first run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import Flask

from core import demo
from core.reports import attribution_report, resolve_range
from core.storage.models import Conversion, Session, VisitorLink
from core.tenant import Tenant
from tests.conftest import new_account

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _seed(app: Flask, tenant: Tenant, visitors: int = 160, days: int = 14) -> demo.DemoSummary:
    services = app.config["MBUZZ"]
    return demo.seed_demo(services.log, tenant, NOW, visitors, days, sessions=services.sessions)


def test_demo_is_stored_as_planned_with_channels_identities_and_models_that_disagree(app: Flask) -> None:
    tenant = Tenant(new_account(app, "Demo shop").account_id, "live")
    made = _seed(app, tenant)
    assert made.created and made.visitors == 160 and made.conversions > 20 and made.purchases > 10
    with app.config["MBUZZ"].sessions() as db:
        stored = demo.stored_summary(db, tenant, made.currency)
        # Everything planned arrived: nothing the seed appended was lost or counted twice.
        assert (stored.visitors, stored.events, stored.conversions, stored.purchases, stored.identities,
                stored.revenue_minor) == (made.visitors, made.events, made.conversions, made.purchases,
                                          made.identities, made.revenue_minor)
        assert stored.sessions >= made.sessions - 5  # a bot's visit may be left unsessioned (SES-20)
        scoped = (Session.account_id == tenant.account_id, Session.environment == tenant.environment)
        channels = set(db.scalars(sa.select(Session.channel).where(*scoped).distinct()))
        assert {"paid_search", "organic_search", "paid_social", "email", "direct"} <= channels
        first, last = db.execute(sa.select(sa.func.min(Session.started_at), sa.func.max(Session.started_at))
                                 .where(*scoped)).one()
        assert NOW - timedelta(days=14) <= first.replace(tzinfo=UTC) and last.replace(tzinfo=UTC) < NOW
        # Cross-device people: some user owns more than one visitor (ID-3).
        per_user = sa.select(VisitorLink.user_id, sa.func.count(sa.distinct(VisitorLink.visitor_id)).label("n")) \
            .where(VisitorLink.account_id == tenant.account_id).group_by(VisitorLink.user_id).subquery()
        assert db.scalar(sa.select(sa.func.max(per_user.c.n))) >= 2
        pending = db.scalar(sa.select(sa.func.count()).select_from(Conversion).where(
            Conversion.account_id == tenant.account_id, Conversion.attribution_status != "complete"))
        assert pending == 0
        report = attribution_report(db, tenant, resolve_range("30d", None, None, "UTC", NOW.date()),
                                    models=["first_touch", "last_touch"])
    by_model: dict[str, dict[str, object]] = {}
    for row in report["rows"]:
        by_model.setdefault(row["model"], {})[row["channel"]] = row["conversions"]
    assert by_model["first_touch"] != by_model["last_touch"]  # discovery and return channels differ on purpose
    assert by_model["last_touch"].get("email", 0) > by_model["first_touch"].get("email", 0)


def test_seeding_again_appends_nothing(app: Flask) -> None:
    tenant = Tenant(new_account(app, "Demo twice").account_id, "live")
    made = _seed(app, tenant, visitors=40, days=7)
    again = _seed(app, tenant, visitors=40, days=7)
    other_size = _seed(app, tenant, visitors=80, days=7)  # a tenant holding a demo keeps that one
    assert not again.created and not other_size.created
    assert (again.conversions, again.events, again.visitors) == (made.conversions, made.events, made.visitors)
    assert other_size.conversions == made.conversions


def test_seed_demo_command(app: Flask) -> None:
    account_id = new_account(app, "CLI demo").account_id
    runner = app.test_cli_runner()
    result = runner.invoke(args=["mbuzz", "seed-demo", "--account", account_id, "--environment", "test",
                                 "--visitors", "30", "--days", "7"])
    assert result.exit_code == 0, result.output
    assert "demo data seeded" in result.output and "30 visitors" in result.output
    unknown = runner.invoke(args=["mbuzz", "seed-demo", "--account", "acct_nope", "--visitors", "5"])
    assert unknown.exit_code != 0 and "no such account" in unknown.output
    short = runner.invoke(args=["mbuzz", "seed-demo", "--account", account_id, "--days", "3"])
    assert short.exit_code != 0 and "--days" in short.output


def test_seed_reports_progress_up_to_every_planned_command(app: Flask) -> None:
    """Issue 16 item 2: the seed tells its caller (the CLI's progress bar) how far it is, batch by batch."""
    services = app.config["MBUZZ"]
    tenant = Tenant(new_account(app).account_id, "test")
    seen: list[tuple[int, int]] = []
    summary = demo.seed_demo(services.log, tenant, NOW, 120, 14, sessions=services.sessions,
                             progress=lambda done, total: seen.append((done, total)))
    assert summary.created and len(seen) > 1
    totals = {total for _, total in seen}
    assert len(totals) == 1 and seen[-1][0] == totals.pop()
    assert [done for done, _ in seen] == sorted({done for done, _ in seen})  # strictly increasing
    assert summary.events + summary.conversions <= seen[-1][0]
