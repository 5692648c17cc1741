"""Preload reads (core.processors.rows; issue 16): plain rows read without SQLAlchemy's per-value processing still
read back every value as the ORM does, UTC-aware whatever the connection's zone, and JSON exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
import sqlalchemy as sa
from flask import Flask

from core.commands import TouchCommand
from core.ids import new_id
from core.log import InlineLog
from core.processors.context import Ctx
from core.processors.rows import binding_rows, session_rows, visitor_rows
from core.storage.db import make_engine, session_factory
from core.storage.models import Session, SessionBinding, Visitor
from core.storage.types import json_loads
from core.tenant import Tenant
from tests.conftest import new_account

T0 = datetime(2026, 12, 1, 23, 30, 0, 654_321, tzinfo=timezone(timedelta(hours=-5)))


def test_json_reads_as_the_standard_library_reads_it() -> None:
    documents = [
        b'{"n": 1180591620717411303424, "m": -9223372036854775809}',  # beyond 64 bits: ints, not floats
        b'{"u": 18446744073709551615, "i": 9223372036854775807, "f": 0.1, "e": 1e400, "z": -0.0}',
        b'{"s": "\\u00e9\\ud83d\\ude00 tab\\t", "l": [1, 2.5, null, true, {"k": []}], "d": "12345678901234567890"}',
        b'[1.7976931348623157e308, 5e-324, 123456789012345678]',
    ]
    for document in documents:
        assert repr(json_loads(document)) == repr(json.loads(document))
        assert repr(json_loads(document.decode())) == repr(json.loads(document))


def _stored_touch(app: Flask) -> Tenant:
    tenant = Tenant(new_account(app).account_id, "test")
    touch = TouchCommand(id=new_id("cmd", T0), visitor_key="v-read", client_session_id="c-read", occurred_at=T0,
                         received_at=T0, url="https://shop.example/?utm_source=google&utm_medium=cpc&gclid=x",
                         user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0")
    assert InlineLog(app.config["MBUZZ"].sessions).append(tenant, [touch]).results[0].status == "processed"
    return tenant


def _plain(row: Any, names: list[str]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in names}


def _read_all(db: Any, tenant: Tenant) -> tuple[Any, Any, Any]:
    ctx = Ctx(db=db, tenant=tenant, config=cast(Any, None))
    return (visitor_rows(ctx, Visitor.visitor_key == "v-read"), session_rows(ctx, Session.visitor_id.is_not(None)),
            binding_rows(ctx, SessionBinding.client_session_id == "c-read"))


def test_plain_rows_equal_the_orm_rows(app: Flask) -> None:
    tenant = _stored_touch(app)
    with app.config["MBUZZ"].sessions() as db:
        visitors, sessions, bindings = _read_all(db, tenant)
        pairs = [(visitors, Visitor), (sessions, Session), (bindings, SessionBinding)]
        for rows, model in pairs:
            assert len(rows) == 1
            names = [c.name for c in cast(sa.Table, model.__table__).columns]
            orm = db.scalars(sa.select(model).where(model.account_id == tenant.account_id)).one()
            assert _plain(rows[0], names) == _plain(orm, names)
            for name in names:
                value = getattr(rows[0], name)
                if isinstance(value, datetime):
                    assert value.tzinfo is UTC and value == getattr(orm, name)
    assert sessions[0].started_at == T0 and sessions[0].utm_raw == {"utm_source": "google", "utm_medium": "cpc"}


def test_rows_are_utc_whatever_the_connections_zone(app: Flask) -> None:
    services = app.config["MBUZZ"]
    if services.engine.dialect.name != "postgresql":
        pytest.skip("a connection zone is PostgreSQL's")
    tenant = _stored_touch(app)
    engine = make_engine(services.engine.url.render_as_string(hide_password=False),
                         connect_args={"options": "-c TimeZone=Asia/Kolkata", "prepare_threshold": None})
    try:
        with session_factory(engine)() as db:
            assert db.scalar(sa.text("SHOW TimeZone")) == "Asia/Kolkata"
            visitors, sessions, bindings = _read_all(db, tenant)
    finally:
        engine.dispose()
    for value in (visitors[0].first_seen_at, sessions[0].started_at, sessions[0].created_at, bindings[0].bound_at):
        assert value.tzinfo is UTC and value == T0
