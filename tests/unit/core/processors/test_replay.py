"""A command processed twice (degraded inline, then drained from the stream) changes nothing the second time."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Flask

from core.commands import EventCommand, TouchCommand
from core.ids import new_id
from core.log import InlineLog
from core.storage.models import Event, Session
from core.tenant import Tenant
from tests.conftest import new_account


def test_Q20_replayed_commands_are_skipped_by_command_id(app: Flask) -> None:
    services = app.config["MBUZZ"]
    tenant = Tenant(new_account(app).account_id, "test")
    now = datetime.now(UTC)
    commands = [
        TouchCommand(id=new_id("cmd"), visitor_key="rv", client_session_id="c1", occurred_at=now, received_at=now,
                     url="https://shop.example/?utm_source=google&utm_medium=cpc"),
        EventCommand(id=new_id("evt"), event_type="view", occurred_at=now, received_at=now, visitor_key="rv"),
    ]
    degraded = InlineLog(services.sessions, replay_safe=True)
    first = degraded.process(tenant, commands)
    again = degraded.process(tenant, commands)  # what a drain does when it meets the same stream entries
    assert [r.status for r in first] == ["processed", "processed"]
    assert [r.status for r in again] == ["replayed", "replayed"]
    with services.sessions() as db:
        events = db.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.account_id == tenant.account_id))
        touches = db.scalar(sa.select(Session.touches).where(Session.account_id == tenant.account_id))
    assert events == 1 and touches == 1
