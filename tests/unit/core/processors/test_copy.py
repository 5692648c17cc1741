"""Binary COPY (core.processors.rows.copy_rows; issue 16): the drain's rows store exactly what an INSERT stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, cast

import pytest
import sqlalchemy as sa
from flask import Flask

from core.commands import EventCommand, TouchCommand
from core.ids import new_id
from core.log import InlineLog
from core.processors.rows import SESSION_COLUMNS, SessionRow, copy_rows
from core.storage.models import Event, Session, Visitor
from core.tenant import Tenant
from tests.conftest import new_account

PARIS = timezone(timedelta(hours=2))
T0 = datetime(2026, 12, 1, 11, 0, 0, 123_456, tzinfo=PARIS)  # 09:00:00.123456 UTC
UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


def test_event_and_touch_rows_store_every_value_exactly(app: Flask) -> None:
    services = app.config["MBUZZ"]
    tenant = Tenant(new_account(app).account_id, "test")
    url = "https://shop.example/p/é?utm_source=news\\letter&utm_medium=e-mail&utm_campaign=été&gclid=Cj0\\N"
    properties = {"text": "tab\there, back\\slash, \\N, newline\n", "n": [1, 2.5, None, True], "é": {"k": "ü"}}
    touch = TouchCommand(id=new_id("cmd", T0), visitor_key="v-copy", client_session_id="c1", occurred_at=T0,
                         received_at=T0, url=url, referrer="https://www.google.com/search?q=a\tb", user_agent=UA,
                         fingerprint="f" * 32, country="FR", postal_code="75001", fbp="fb.1.2.3")
    event = EventCommand(id=new_id("evt", T0), event_type="add_to_cart", occurred_at=T0 + timedelta(seconds=1),
                         received_at=T0 + timedelta(seconds=2), visitor_key="v-copy", client_session_id="c1",
                         funnel="checkout", properties=properties, sdk_name="ruby", sdk_version="1.2.3")
    results = InlineLog(services.sessions).append(tenant, [touch, event]).results
    assert all(r.status == "processed" for r in results)
    with services.sessions() as db:
        stored = db.scalars(sa.select(Event).where(Event.account_id == tenant.account_id)).one()
        session = db.scalars(sa.select(Session).where(Session.account_id == tenant.account_id)).one()
        visitor = db.scalars(sa.select(Visitor).where(Visitor.account_id == tenant.account_id)).one()
    assert (stored.id, stored.event_type, stored.funnel, stored.client_session_id) == (
        event.id, "add_to_cart", "checkout", "c1")
    assert stored.occurred_at == T0 + timedelta(seconds=1) and stored.occurred_at.tzinfo is not None
    assert stored.received_at == T0 + timedelta(seconds=2)
    assert stored.properties == properties
    assert (stored.sdk_name, stored.sdk_version, stored.session_id, stored.visitor_id) == (
        "ruby", "1.2.3", session.id, visitor.id)
    assert session.started_at == T0 and session.last_activity_at == T0 + timedelta(seconds=1)
    assert session.utm_raw == {"utm_source": "news\\letter", "utm_medium": "e-mail", "utm_campaign": "été"}
    assert session.click_ids == {"gclid": "Cj0\\N"}
    assert (session.touches, session.events, session.excluded, session.exclusion_reason) == (1, 1, False, None)
    assert (session.user_agent, session.fingerprint, session.country, session.postal_code, session.fbp) == (
        UA, "f" * 32, "FR", "75001", "fb.1.2.3")
    assert session.landing_url is not None and "é" in session.landing_url
    assert visitor.first_seen_at == T0 and visitor.last_seen_at == T0 + timedelta(seconds=1)


def test_copied_session_row_reads_back_as_the_inserted_one(app: Flask) -> None:
    """The same row once through ``copy_rows`` and once through a SQLAlchemy INSERT: every column equal."""
    services = app.config["MBUZZ"]
    if services.engine.dialect.name != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    tenant = Tenant(new_account(app).account_id, "test")
    values: dict[str, Any] = dict(
        account_id=tenant.account_id, environment="test", visitor_id="vis_x", started_at=T0,
        last_activity_at=T0 + timedelta(minutes=3), channel="paid_search", created_at=T0.astimezone(UTC),
        source_key="google|cpc", utm_source="google", utm_medium="cpc", utm_campaign="a\tb\\c",
        utm_raw={"utm_source": "google", "big": 2**70, "nested": [None, 1.25]}, click_ids={"gclid": "x"},
        referrer_url="https://r.example/\\N", referrer_host="r.example", landing_url="https://l.example/ü",
        landing_host="l.example", fingerprint="0" * 32, user_agent=UA, device_type="mobile", country="DE",
        postal_code="10115", fbp=None, fbc="fb.1", excluded=True, exclusion_reason="known_bot", touches=2,
        events=2**31 - 1, origin="shopify:1",
    )
    copied, inserted = new_id("sess", T0), new_id("sess", T0)
    table = cast(sa.Table, Session.__table__)
    with services.sessions.begin() as db:
        row = SessionRow(id=copied, **values)
        copy_rows(cast(Any, SimpleNamespace(db=db)), table, SESSION_COLUMNS,
                  [tuple(getattr(row, c) for c in SESSION_COLUMNS)])
        db.execute(sa.insert(table), [{"id": inserted, **values}])
    with services.sessions() as db:
        rows = {r.id: r._mapping for r in db.execute(sa.select(table).where(table.c.id.in_([copied, inserted])))}
    assert {k: v for k, v in rows[copied].items() if k != "id"} == {k: v for k, v in rows[inserted].items()
                                                                    if k != "id"}
