"""Oracle for session resolution's fast paths (issue 16): a batch resolves exactly as one command per batch.

Extends ``test_SES7_one_batch_resolves_exactly_as_one_command_per_batch`` to several interleaved visitors with
stored history (sessions, bindings, a conversion) read by the batch preload, client ids bound to sessions out of
range (R1 with no session near), bare events (R5) with and without a client id, and late and moved-back items.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa
from flask import Flask

from core.commands import Command, ConversionCommand, EventCommand, TouchCommand
from core.ids import new_id
from core.log import InlineLog
from core.storage.models import Event, Session, SessionBinding, Visitor
from core.tenant import Tenant
from tests.conftest import new_account
from tests.unit.core.processors.test_sessions import BOT, CHROME, SITE, at


def touch(v: str, minute: float, url: str = SITE, referrer: str | None = None, sid: str | None = None,
          ua: str | None = CHROME) -> TouchCommand:
    return TouchCommand(id=new_id("cmd"), visitor_key=v, client_session_id=sid, occurred_at=at(minute),
                        received_at=at(minute), url=url, referrer=referrer, user_agent=ua)


def event(v: str, minute: float, url: str | None = None, sid: str | None = None, ua: str | None = CHROME,
          referrer: str | None = None) -> EventCommand:
    return EventCommand(id=new_id("evt"), event_type="e", occurred_at=at(minute), received_at=at(minute),
                        visitor_key=v, url=url, referrer=referrer, user_agent=ua, client_session_id=sid)


HISTORY: list[Command] = [
    touch("A", -120, referrer="https://www.google.com/", sid="a1"), event("A", -110, sid="a1"),
    touch("B", -5, url=SITE + "?utm_source=newsletter&utm_medium=email", sid="b1"),
    ConversionCommand(id=new_id("conv"), conversion_type="purchase", received_at=at(-4), converted_at=at(-4),
                      visitor_key="B", revenue_minor=1000, currency="EUR"),
    touch("C", 0, sid="c1", ua=BOT),
]
TIMELINE: list[Command] = [
    event("A", 0, sid="a1"),  # bound session two hours back: R1 finds none near, R5 (no URL)
    event("A", 1, url=SITE, sid="a1"),  # R1 finds none near, R4 creates and re-binds a1
    event("B", -30, url=SITE + "?gclid=Cj0KC", sid="b2"),  # before B's stored session: R3 by source key or new
    event("B", 10, sid="b1"),  # inside/after the stored session through its binding (R1)
    touch("B", -20, referrer="https://www.bing.com/"),  # moved-back start, late session (SES-13, B converted)
    event("C", 3, ua=CHROME, url=SITE),  # human next to a bot session (SES-11)
    event("C", 4, sid="c1"), event("D", 0), event("D", 2, url=SITE, sid="d1"), event("D", 1, sid="d1"),
    touch("E", 0, url=SITE + "?utm_source=google&utm_medium=cpc", ua=None), event("E", 1, ua=CHROME),
    event("E", 26 * 60, url=SITE), event("A", 40, referrer="https://t.co/", url=SITE),
]


def test_one_batch_resolves_exactly_as_one_command_per_batch_with_history(app: Flask) -> None:
    services = app.config["MBUZZ"]

    def stored(split: bool) -> list[Any]:
        tenant = Tenant(new_account(app).account_id, "test")
        log = InlineLog(services.sessions)
        log.append(tenant, [dataclasses.replace(c, id=new_id("cmd")) for c in HISTORY])
        for part in ([[c] for c in TIMELINE] if split else [TIMELINE]):
            results = log.append(tenant, [dataclasses.replace(c, id=new_id("evt")) for c in part]).results
            assert all(r.status == "processed" for r in results)
        with services.sessions() as db:
            keys = dict(db.execute(sa.select(Visitor.id, Visitor.visitor_key)
                                   .where(Visitor.account_id == tenant.account_id)).all())
            visitors = sorted(db.execute(sa.select(Visitor.visitor_key, Visitor.first_seen_at, Visitor.last_seen_at)
                                         .where(Visitor.account_id == tenant.account_id)).all())
            sessions = db.scalars(sa.select(Session).where(Session.account_id == tenant.account_id)
                                  .order_by(Session.visitor_id, Session.started_at)).all()
            index = {s.id: (keys[s.visitor_id], s.started_at) for s in sessions}
            events = sorted((keys[e.visitor_id], e.occurred_at, index.get(e.session_id)) for e in db.scalars(
                sa.select(Event).where(Event.account_id == tenant.account_id)))
            bindings = sorted((keys[b.visitor_id], b.client_session_id, index[b.session_id], b.bound_at)
                              for b in db.scalars(sa.select(SessionBinding)
                                                  .where(SessionBinding.account_id == tenant.account_id)))
        rows = sorted((keys[s.visitor_id], s.started_at, s.last_activity_at, s.channel, s.touches, s.events,
                       s.user_agent, s.device_type, s.excluded, s.exclusion_reason, s.utm_raw, s.click_ids)
                      for s in sessions)
        return [visitors, rows, events, bindings]

    assert stored(split=False) == stored(split=True)
