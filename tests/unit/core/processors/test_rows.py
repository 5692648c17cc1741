"""The rows a batch writes set-based (core.processors.rows; issue 16): what orjson refuses still stores."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Flask

from core.commands import EventCommand
from core.ids import new_id
from core.log import InlineLog
from core.processors.rows import json_bytes
from core.storage.models import Event
from core.tenant import Tenant
from tests.conftest import new_account

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_json_for_copy_matches_the_standard_library_where_orjson_refuses() -> None:
    assert json_bytes({"a": [1, "é", None]}) == b'{"a":[1,"\xc3\xa9",null]}'
    assert json_bytes({"n": 2**70}) == b'{"n": 1180591620717411303424}'  # beyond 64 bits: the standard library


def test_event_properties_beyond_orjson_are_stored_exactly(app: Flask) -> None:
    services = app.config["MBUZZ"]
    tenant = Tenant(new_account(app).account_id, "test")
    properties = {"big": 2**70, "text": "a\tb\\c\n", "nested": {"x": [1.5, None, True]}}
    command = EventCommand(id=new_id("evt", T0), event_type="page_view", occurred_at=T0, received_at=T0,
                           visitor_key="v1", url="https://shop.example/", properties=properties)
    InlineLog(services.sessions).append(tenant, [command])
    with services.sessions() as db:
        stored = db.scalar(sa.select(Event.properties).where(Event.account_id == tenant.account_id))
    assert stored == properties
