"""Column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps are stored and returned as aware UTC instants.

    SQLite keeps no zone and hands back naive values; normalising here means no processor ever compares a
    naive with an aware datetime.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - raw SQL paths on SQLite
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


# 19 digits in a row: possibly an integer beyond 64 bits, which orjson reads as a float (the standard library
# keeps it an int). Also true for long strings of digits or long fractions; those just take the slower path.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def json_loads(text: str | bytes) -> Any:
    """JSON columns read on PostgreSQL (``make_engine``'s ``json_deserializer``): orjson, a fraction of the
    standard library's cost (a drain batch reads two documents per session; issue 16), except where it could
    differ (integers beyond 64 bits) or refuses, so every stored document reads back exactly as before."""
    data = text.encode() if isinstance(text, str) else text
    if _LONG_DIGITS.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)
