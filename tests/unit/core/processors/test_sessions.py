"""Session resolution, table-driven through the real processors and database (sessions.md SES-1..SES-15)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from core.commands import Command, EventCommand, TouchCommand
from core.ids import new_id
from core.log import InlineLog
from core.storage.models import Event, Session
from core.tenant import Tenant
from tests.conftest import new_account

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
SITE = "https://www.acme.com/"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def touch(minute: float, url: str = SITE, referrer: str | None = None, sid: str | None = None,
          ua: str | None = CHROME) -> TouchCommand:
    return TouchCommand(id=new_id("cmd"), visitor_key="V", client_session_id=sid or new_id("cs"),
                        occurred_at=at(minute), received_at=at(minute), url=url, referrer=referrer,
                        user_agent=ua)


def event(minute: float, url: str | None = None, referrer: str | None = None, ua: str | None = CHROME,
          sid: str | None = None) -> EventCommand:
    return EventCommand(id=new_id("evt"), event_type="e", occurred_at=at(minute), received_at=at(minute),
                        visitor_key="V", url=url, referrer=referrer, user_agent=ua, client_session_id=sid)


@pytest.fixture()
def run(app: Flask) -> Callable[[list[Command]], list[dict[str, Any]]]:
    """Process commands one append at a time; answer the visitor's sessions in start order."""
    services = app.config["MBUZZ"]
    tenant = Tenant(new_account(app).account_id, "test")
    log = InlineLog(services.sessions)

    def go(commands: list[Command]) -> list[dict[str, Any]]:
        for command in commands:
            log.append(tenant, [command])
        with services.sessions() as db:
            rows = db.scalars(sa.select(Session).where(Session.account_id == tenant.account_id)
                              .order_by(Session.started_at)).all()
            events = db.scalars(sa.select(Event).where(Event.account_id == tenant.account_id)).all()
            by_session: dict[str | None, int] = {}
            for e in events:
                by_session[e.session_id] = by_session.get(e.session_id, 0) + 1
            out = [{"channel": s.channel, "start": (s.started_at - T0) / timedelta(minutes=1),
                    "end": (s.last_activity_at - T0) / timedelta(minutes=1), "touches": s.touches,
                    "events": s.events, "excluded": s.exclusion_reason, "id": s.id} for s in rows]
            if None in by_session:
                out.append({"sessionless_events": by_session[None]})
            return out

    return go


def test_SES7_timeline_example(run: Callable[[list[Command]], list[dict[str, Any]]]) -> None:
    """The timeline table of sessions.md §4, row by row."""
    gclid = SITE + "?gclid=Cj0KC"
    sessions = run([
        touch(0, referrer="https://www.google.com/"),                 # R4: S1 organic_search
        touch(5, referrer="https://www.acme.com/"),                   # internal: R3 S1
        touch(20, url=gclid, referrer="https://www.google.com/"),     # new key: R4 S2 paid_search
        event(21, url=gclid, referrer="https://www.google.com/"),     # same key: R3 S2
        touch(70, referrer="https://www.acme.com/pricing"),           # idle 49 min: R4 S3 direct
        event(25),                                                    # late bare event: R3 S2 (after)
        event(60 * 24 + 70),                                          # next day, bare: R5 none
    ])
    assert [(s["channel"], s["start"], s["end"], s["touches"], s["events"]) for s in sessions[:3]] == [
        ("organic_search", 0, 5, 2, 0),
        ("paid_search", 20, 25, 1, 2),
        ("direct", 70, 70, 1, 0),
    ]
    assert sessions[3] == {"sessionless_events": 1}


@pytest.mark.parametrize(
    ("rule", "commands", "expected"),
    [
        ("SES-1 30-minute gap opens a new session", [touch(0), touch(31)], ["direct", "direct"]),
        ("SES-1 activity slides the window", [touch(0), touch(25), touch(50)], ["direct"]),
        ("SES-1 never longer than 24 hours",
         [touch(m) for m in range(0, 60 * 24 + 30, 25)], ["direct", "direct"]),
        ("SES-6 same source key continues (reload)",
         [touch(0, SITE + "?utm_source=google&utm_medium=cpc"), touch(2, SITE + "?utm_source=google&utm_medium=cpc")],
         ["paid_search"]),
        ("SES-6 direct then signals splits",
         [touch(0), touch(3, SITE + "?utm_source=newsletter&utm_medium=email")], ["direct", "email"]),
        ("SES-4 internal referrer carries no signals",
         [touch(0, referrer="https://www.google.com/"),
          touch(3, SITE + "?utm_source=promo&utm_medium=banner", referrer=SITE)], ["organic_search"]),
        ("SES-10 late touch joins the session before it",
         [event(0.05, url=SITE + "?utm_source=google&utm_medium=cpc"),
          touch(0.0333, SITE + "?utm_source=google&utm_medium=cpc")], ["paid_search"]),
        ("SES-3 bare event alone opens nothing", [event(0)], []),
        ("SES-11 bot touches never join human sessions", [touch(0), touch(1, ua=BOT)], ["direct", "direct"]),
    ],
)
def test_session_rules(
    run: Callable[[list[Command]], list[dict[str, Any]]], rule: str, commands: list[Command], expected: list[str]
) -> None:
    sessions = [s for s in run(commands) if "channel" in s]
    assert [s["channel"] for s in sessions] == expected, rule


def test_SES9_binding_resolves_repeat_pair_even_with_new_signals(
    run: Callable[[list[Command]], list[dict[str, Any]]],
) -> None:
    sessions = run([touch(0, sid="bucket-1"), touch(10, SITE + "?utm_source=google&utm_medium=cpc", sid="bucket-1")])
    assert [(s["channel"], s["touches"]) for s in sessions] == [("direct", 2)]


def test_SES9_stale_binding_is_rebound(run: Callable[[list[Command]], list[dict[str, Any]]]) -> None:
    sessions = run([touch(0, sid="reused"), touch(120, sid="reused"), touch(125, sid="reused")])
    assert [(s["start"], s["touches"]) for s in sessions] == [(0, 1), (120, 2)]


def test_BOT3_bot_sessions_are_stored_excluded(run: Callable[[list[Command]], list[dict[str, Any]]]) -> None:
    sessions = run([touch(0, ua=BOT)])
    assert sessions[0]["excluded"] == "known_bot"


def test_BOT5_first_user_agent_decides(run: Callable[[list[Command]], list[dict[str, Any]]]) -> None:
    sessions = run([touch(0, ua=None), event(1, url=SITE, ua=BOT)])
    assert [(s["excluded"], s["events"]) for s in sessions] == [("known_bot", 1)]


def test_SES7_one_batch_resolves_exactly_as_one_command_per_batch(app: Flask) -> None:
    """Issue 16: within a batch, sessions, bindings and visitors are rows in memory written set-based at the end;
    across batches they are read back from the database. Both must give the same sessions (SES-7, SES-8, SES-9,
    BOT-5): a mixed timeline with late items, a moved-back start, a filled user agent and re-bound client ids."""
    services = app.config["MBUZZ"]
    gclid = SITE + "?gclid=Cj0KC"
    timeline: list[Command] = [
        touch(0, referrer="https://www.google.com/", sid="a"), touch(5, referrer=SITE, sid="a", ua=None),
        event(6, sid="a", ua=BOT), touch(20, url=gclid, referrer="https://www.google.com/", sid="b"),
        event(21, url=gclid, sid="b"), event(19, sid="b"), touch(70, referrer=SITE + "pricing", sid="a"),
        event(25), event(-10, url=SITE, sid="c"), touch(200, referrer=SITE, sid="d", ua=None),
        event(201, sid="d"), touch(300, sid="e", ua=None), event(301, url=SITE, sid="e", ua=BOT),
        event(60 * 24 + 70),
    ]

    def stored(split: bool) -> list[tuple[Any, ...]]:
        tenant = Tenant(new_account(app).account_id, "test")
        log = InlineLog(services.sessions)
        for part in ([[c] for c in timeline] if split else [timeline]):
            log.append(tenant, [dataclasses.replace(c, id=new_id("evt")) for c in part])
        with services.sessions() as db:
            sessions = db.scalars(sa.select(Session).where(Session.account_id == tenant.account_id)
                                  .order_by(Session.started_at)).all()
            index = {s.id: i for i, s in enumerate(sessions)}
            events = db.execute(sa.select(Event.occurred_at, Event.session_id)
                                .where(Event.account_id == tenant.account_id).order_by(Event.occurred_at)).all()
        return [(s.channel, s.started_at, s.last_activity_at, s.touches, s.events, s.user_agent, s.device_type,
                 s.exclusion_reason) for s in sessions] + [(t, index.get(sid)) for t, sid in events]

    assert stored(split=False) == stored(split=True)
