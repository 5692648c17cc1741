"""Oracle for conversions held back and written per batch (issue 17 item 2): one batch stores and answers exactly
what the same commands store and answer one per batch.

The timeline mixes what a held conversion must not break: the same visitor converting twice, a keyed conversion
and its duplicate in the same batch (API-52), a conversion naming only a user (VIS-4), one that links its visitor
(ID-3, ATT-49), an identify after conversions of its visitor (ATT-49 re-attribution reads them), a late session
inside a conversion's window (SES-13), an acquisition and an inheritor (ATT-43, not held), a refund that arrives
before its conversion (ATT-38, not held) and one right after a held conversion, on both databases.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from core.commands import Command, CommandResult, ConversionCommand, IdentifyCommand, OrderAdjustmentCommand
from core.ids import new_id
from core.log import InlineLog
from core.processors import batch
from core.settings import save_settings
from core.storage.models import AttributionCredit, Conversion, ReportDirtyDay, Session, Visitor
from core.tenant import Tenant
from tests.conftest import new_account
from tests.unit.core.processors.test_resolve_oracle import event, touch
from tests.unit.core.processors.test_sessions import BOT, SITE, at

DAY = 24 * 60


def conversion(minute: float, visitor: str | None = None, user: str | None = None, key: str | None = None,
               **fields: Any) -> ConversionCommand:
    return ConversionCommand(id=new_id("conv", at(minute)), conversion_type="purchase", received_at=at(minute),
                             converted_at=at(minute), visitor_key=visitor, user_key=user, idempotency_key=key,
                             revenue_minor=12_345, currency="EUR", **fields)


def identify(minute: float, user: str, visitor: str) -> IdentifyCommand:
    return IdentifyCommand(id=new_id("cmd", at(minute)), user_key=user, visitor_key=visitor,
                           occurred_at=at(minute), received_at=at(minute))


HISTORY: list[Command] = [
    touch("A", -3 * DAY, url=SITE + "?utm_source=google&utm_medium=cpc"),
    touch("A", -2 * DAY, url=SITE + "?utm_source=newsletter&utm_medium=email"),
    touch("B", -DAY, referrer="https://www.bing.com/"),
    touch("C", -DAY, url=SITE + "?utm_source=facebook&utm_medium=paid_social"),
    touch("D1", -4 * DAY, url=SITE + "?gclid=abc"), touch("D2", -DAY, referrer="https://t.co/"),
    identify(-DAY + 5, "u-d", "D1"), identify(-DAY + 6, "u-d", "D2"),
    touch("E", -2 * DAY, url=SITE + "?utm_source=partner&utm_medium=affiliate"),
    touch("A", -30 * DAY, url=SITE + "?utm_source=old&utm_medium=email"),  # exactly at the lookback's start
    touch("A", -31 * DAY, referrer="https://www.google.com/"),  # before it
    touch("B", 500, referrer="https://www.bing.com/"),  # after B's conversions
    touch("A", -3, ua=BOT),  # excluded (BOT-1), yet the session A's first conversion happens in (SES-15)
]
TIMELINE: list[Command] = [
    touch("F", -60, url=SITE + "?utm_source=google&utm_medium=cpc"),  # a session of this batch, then its conversion
    conversion(-1, visitor="F"),
    conversion(0, visitor="A"),
    conversion(10, visitor="A"),  # the same visitor again, in the same batch
    conversion(20, visitor="B", key="order-1"),
    conversion(21, visitor="B", key="order-1"),  # API-52: a duplicate of a conversion of this batch
    conversion(30, user="u-d"),  # VIS-4: the user's visitor
    conversion(40, visitor="C", user="u-c"),  # ID-3: links C, re-attributing C's conversions
    conversion(50, visitor="C"),  # C's user now comes from its link
    identify(60, "u-a", "A"),  # ATT-49: A's two conversions above are re-attributed
    touch("A", -DAY, url=SITE + "?utm_source=spring&utm_medium=email"),  # SES-13: a late session in their window
    conversion(70, visitor="E", is_acquisition=True),  # ATT-43/52: written at once
    conversion(80, visitor="E", inherit_acquisition=True),
    OrderAdjustmentCommand(id=new_id("cmd", at(85)), idempotency_key="refund-1", conversion_key="order-2",
                           adjustment="refund", amount="23.45", occurred_at=at(85), received_at=at(85)),
    conversion(90, visitor="B", key="order-2"),  # ATT-38: its refund is waiting, so it is written at once
    conversion(95, visitor="B", key="order-3"),
    OrderAdjustmentCommand(id=new_id("cmd", at(96)), idempotency_key="refund-3", conversion_key="order-3",
                           adjustment="refund", amount="3.45", occurred_at=at(96), received_at=at(96)),  # finds it
    conversion(2 * DAY, visitor="A"),  # another day for the report rollups' marks
]


Stored = tuple[list[Any], list[Any], list[Any], set[date]]


def _stored(app: Flask, split: bool) -> Stored:
    services = app.config["MBUZZ"]
    tenant = Tenant(new_account(app).account_id, "test")
    log = InlineLog(services.sessions)
    log.append(tenant, [dataclasses.replace(c, id=new_id("cmd")) for c in HISTORY])
    results: list[CommandResult] = []
    for part in ([[c] for c in TIMELINE] if split else [TIMELINE]):  # the same ids in both tenants
        results += log.append(tenant, part).results
    with services.sessions() as db:
        scope = (Visitor.account_id == tenant.account_id, Visitor.environment == tenant.environment)
        keys = dict(db.execute(sa.select(Visitor.id, Visitor.visitor_key).where(*scope)).all())
        where = {s.id: (keys[s.visitor_id], s.started_at) for s in db.scalars(
            sa.select(Session).where(Session.account_id == tenant.account_id))}
        conversions = [
            (c.id, keys[c.visitor_id], c.user_id is not None, c.status, c.net_revenue_minor, c.attribution_status,
             c.fallbacks, c.warnings, c.inherited_from_conversion_id, c.sessions_analyzed, where.get(c.session_id),
             [where[s] for s in c.journey_session_ids or []], c.is_acquisition, c.idempotency_key)
            for c in db.scalars(sa.select(Conversion).where(Conversion.account_id == tenant.account_id)
                                .order_by(Conversion.id))]
        credits = sorted(
            (r.conversion_id, r.model, r.touchpoint_index, r.channel, r.credit, r.revenue_credit_minor,
             where[r.session_id], r.inherited_from_conversion_id)
            for r in db.scalars(sa.select(AttributionCredit)
                                .where(AttributionCredit.account_id == tenant.account_id)))
        marked = set(db.scalars(sa.select(ReportDirtyDay.day).where(ReportDirtyDay.account_id == tenant.account_id)))
    answers = [(r.command_id, r.status, _without_generated_ids(r.body)) for r in results]
    return conversions, credits, answers, marked


GENERATED = ("sess_", "idt_", "adj_")  # ids each tenant generates for itself


def _without_generated_ids(value: Any) -> Any:
    """An answer with the ids each tenant generates for itself reduced to their kind."""
    if isinstance(value, dict):
        return {k: _without_generated_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_generated_ids(v) for v in value]
    if isinstance(value, str) and value.startswith(GENERATED):
        return value.split("_", 1)[0]
    return value


def test_a_batch_of_conversions_stores_and_answers_exactly_as_one_per_batch(app: Flask) -> None:
    conversions, credits, answers, marked = _stored(app, split=False)
    assert (conversions, credits, answers, marked) == _stored(app, split=True)
    assert len(conversions) == 12 and {c[5] for c in conversions} == {"complete"}
    by_id = {c[0]: c for c in conversions}
    assert len({c[0] for c in credits}) == 12  # every conversion has credits
    assert by_id[TIMELINE[14].id][4] == 12_345 - 2_345  # the refund that waited was applied
    assert by_id[TIMELINE[15].id][4] == 12_345 - 345  # the refund that came after it found it
    assert by_id[TIMELINE[12].id][8] == TIMELINE[11].id  # the inheritor found the acquisition of this batch
    assert [a[1] for a in answers[4:6]] == ["processed", "duplicate"]
    first_a = by_id[TIMELINE[2].id]
    assert ("A", at(-DAY)) in first_a[11], "the late session is in the re-attributed journey"
    assert marked == {at(0).date(), at(2 * DAY).date()}


def test_a_run_of_conversions_reads_its_sessions_once_and_exactly(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's session preload gives what each conversion's own queries give: sessions at the lookback's start
    and just before it, after the conversion, excluded ones, a user's other devices (read by query)."""
    preloaded = _stored(app, split=False)
    monkeypatch.setattr(batch, "preload_conversion_sessions", lambda ctx, run: None)
    assert preloaded == _stored(app, split=False)
    by_id = {c[0]: c for c in preloaded[0]}
    first_a = by_id[TIMELINE[2].id]
    assert first_a[10] == ("A", at(-3)), "placed in the excluded session it happened in"
    assert ("A", at(-30 * DAY)) in first_a[11] and ("A", at(-31 * DAY)) not in first_a[11]


def test_a_session_older_than_the_lookback_but_still_active_holds_the_conversion(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SES-15 with a one-day lookback: the session started 24 h 16 min before the conversion and was active 16 min
    before it (SES-1 lets it last 24 h), so the conversion happens in it although it is no touchpoint (ATT-4);
    the run's preload finds it as the query does."""

    def session_of_conversion() -> tuple[Any, int | None]:
        services = app.config["MBUZZ"]
        keys = new_account(app)
        tenant = Tenant(keys.account_id, "test")
        with services.sessions.begin() as db:
            save_settings(db, keys.account_id, {"lookback_days": 1})
        log = InlineLog(services.sessions)
        long_visit = [touch("L", -DAY - 15, url=SITE + "?utm_source=google&utm_medium=cpc", sid="l1")]
        long_visit += [event("L", minute, sid="l1") for minute in range(-DAY + 5, -14, 20)]  # the last at -15
        log.append(tenant, long_visit)
        convert = conversion(1, visitor="L")
        body = log.append(tenant, [convert]).results[0].body
        with services.sessions() as db:
            stored = db.scalars(sa.select(Conversion).where(Conversion.account_id == tenant.account_id)).one()
            started = db.scalar(sa.select(Session.started_at).where(Session.account_id == tenant.account_id,
                                                                      Session.id == stored.session_id))
        return started, body["attribution"]["sessions_analyzed"]

    preloaded = session_of_conversion()
    monkeypatch.setattr(batch, "preload_conversion_sessions", lambda ctx, run: None)
    assert preloaded == session_of_conversion() == (at(-DAY - 15), 0)
