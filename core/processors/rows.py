"""The rows a batch of touches and events writes: visitors, sessions and bindings as plain slotted records.

Issue 16 (Q-3): session resolution runs over thousands of items a batch. ORM objects and their unit-of-work
flush were 44 % of a drain's time, so the hot path keeps these three kinds of rows as plain records: stored
ones are read with one Core query per table (``core.processors.preload``), new ones are written with one
``COPY`` per table on PostgreSQL (one executemany elsewhere), and stored ones that changed with one set-based
``UPDATE`` per table (``write_rows``). Nothing on the path marks an ORM object dirty.

``write_rows`` runs whenever something else in the batch must see these rows in the database: before any
command other than a touch or an event, before a link is written (ID-14 reads the visitor's sessions), before
a user's visitors are searched (VIS-4), and at the end of the batch. Rows stay in the batch's caches after
they are written, marked stored, so later items of the batch keep resolving against them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import cache
from operator import attrgetter
from typing import TYPE_CHECKING, Any, cast

import orjson
import sqlalchemy as sa

from core.storage.models import Session, SessionBinding, Visitor
from core.storage.types import UTCDateTime

if TYPE_CHECKING:
    from core.processors.context import Ctx


@dataclass(slots=True, eq=False)
class VisitorRow:
    """A ``visitors`` row (VIS-3)."""

    account_id: str
    environment: str
    id: str
    visitor_key: str
    first_seen_at: datetime
    last_seen_at: datetime
    created_at: datetime


@dataclass(slots=True, eq=False)
class SessionRow:
    """A ``sessions`` row, with the same column names (sessions.md SES-7, SES-8)."""

    account_id: str
    environment: str
    id: str
    visitor_id: str
    started_at: datetime
    last_activity_at: datetime
    channel: str
    created_at: datetime
    source_key: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_content: str | None = None
    utm_term: str | None = None
    utm_raw: dict[str, Any] = field(default_factory=dict)
    click_ids: dict[str, Any] = field(default_factory=dict)
    referrer_url: str | None = None
    referrer_host: str | None = None
    landing_url: str | None = None
    landing_host: str | None = None
    fingerprint: str | None = None
    user_agent: str | None = None
    device_type: str | None = None
    country: str | None = None
    postal_code: str | None = None
    fbp: str | None = None
    fbc: str | None = None
    excluded: bool = False
    exclusion_reason: str | None = None
    touches: int = 0
    events: int = 0
    origin: str | None = None


@dataclass(slots=True, eq=False)
class BindingRow:
    """A ``session_bindings`` row (SES-9)."""

    account_id: str
    environment: str
    visitor_id: str
    client_session_id: str
    session_id: str
    bound_at: datetime


VISITOR_COLUMNS = tuple(f.name for f in fields(VisitorRow))
SESSION_COLUMNS = tuple(f.name for f in fields(SessionRow))
BINDING_COLUMNS = tuple(f.name for f in fields(BindingRow))
# What resolution may change on a stored session: activity (SES-7) and the fields filled later (SES-8, BOT-5).
SESSION_CHANGES = ("started_at", "last_activity_at", "touches", "events", "user_agent", "device_type",
                   "fingerprint", "country", "excluded", "exclusion_reason")
_CHANGE_TYPES = ("timestamptz", "timestamptz", "int", "int", "text", "text", "text", "text", "bool", "text")


def visitor_rows(ctx: Ctx, where: Any) -> list[VisitorRow]:
    return [VisitorRow(*row) for row in _read(ctx, Visitor, VISITOR_COLUMNS, (where,))]


def session_rows(ctx: Ctx, *where: Any) -> list[SessionRow]:
    return [SessionRow(*row) for row in _read(ctx, Session, SESSION_COLUMNS, where)]


def binding_rows(ctx: Ctx, *where: Any) -> list[BindingRow]:
    return [BindingRow(*row) for row in _read(ctx, SessionBinding, BINDING_COLUMNS, where)]


def _read(ctx: Ctx, model: Any, names: tuple[str, ...], where: Sequence[Any]) -> Sequence[Sequence[Any]]:
    """The tenant's rows of ``model`` matching ``where``, values in ``names`` order.

    On PostgreSQL through the Core connection with the timestamps' ``UTCDateTime`` processing left out (issue 16:
    SQLAlchemy's per-value result processing and ORM row handling were two thirds of the preload): psycopg gives
    aware timestamps already, in the connection's zone, so only a zone other than ``datetime.UTC`` is converted
    here, as ``UTCDateTime`` would. The session's autoflush is honoured as ``Session.execute`` would."""
    table = cast(sa.Table, model.__table__)
    if not _is_postgres(ctx):
        return ctx.db.execute(sa.select(*_columns(table, names)).where(ctx.scoped(model), *where)).all()
    columns, stamps = _pg_columns(table, names)
    if ctx.db.autoflush:
        ctx.db.flush()
    rows = ctx.db.connection().execute(sa.select(*columns).where(ctx.scoped(model), *where)).all()
    if not any(v is not None and v.tzinfo is not UTC for row in rows[:1] for v in (row[i] for i in stamps)):
        return rows  # the connection's zone is UTC itself: nothing to convert (one zone for every row)
    return [_to_utc(row, stamps) for row in rows]


_AWARE = sa.DateTime(timezone=True)


@cache
def _pg_columns(table: sa.Table, names: tuple[str, ...]) -> tuple[list[Any], tuple[int, ...]]:
    """The columns to select, timestamps as plain ``timestamptz`` (no result processing), and their positions."""
    columns: list[Any] = []
    stamps: list[int] = []
    for i, name in enumerate(names):
        column = table.c[name]
        if isinstance(column.type, UTCDateTime):
            columns.append(sa.type_coerce(column, _AWARE).label(name))
            stamps.append(i)
        else:
            columns.append(column)
    return columns, tuple(stamps)


def _to_utc(row: Sequence[Any], stamps: tuple[int, ...]) -> list[Any]:
    values = list(row)
    for i in stamps:
        if values[i] is not None:
            values[i] = values[i].astimezone(UTC)
    return values


def _columns(table: Any, names: Sequence[str]) -> list[Any]:
    return [table.c[name] for name in names]


def write_rows(ctx: Ctx) -> None:
    """Write what the batch's touches and events created or changed so far; idempotent, cheap when idle."""
    rows = ctx.rows
    for pending, table, columns in ((rows.new_visitors, Visitor.__table__, VISITOR_COLUMNS),
                                    (rows.new_sessions, Session.__table__, SESSION_COLUMNS),
                                    (rows.new_bindings, SessionBinding.__table__, BINDING_COLUMNS)):
        if pending:  # visitors, sessions, bindings: in that order, so nothing refers to a row not yet written
            _insert(ctx, table, columns, pending.values())
            pending.clear()
    _write_visitor_times(ctx)
    if rows.changed_sessions:
        _update_sessions(ctx, list(rows.changed_sessions.values()))
        rows.changed_sessions.clear()
    if rows.changed_bindings:
        _update_bindings(ctx, list(rows.changed_bindings.values()))
        rows.changed_bindings.clear()


def json_bytes(value: Any) -> bytes:
    """JSON for a ``COPY``: orjson (a tenth of the standard library's cost); the standard library for what orjson
    refuses (non-string keys, integers beyond 64 bits), so nothing that stored before fails now."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


def _insert(ctx: Ctx, table: Any, columns: Sequence[str], rows: Iterable[Any]) -> None:
    """COPY on PostgreSQL, one executemany elsewhere. The visitors' advisory locks are held and new ids are
    fresh, so no row can conflict."""
    if _is_postgres(ctx):
        copy_rows(ctx, table, columns, map(attrgetter(*columns), rows))
        return
    ctx.db.execute(sa.insert(table), [{c: getattr(row, c) for c in columns} for row in rows])


# The COPY wire type of each column type the copied tables use (binary COPY applies no casts).
_COPY_TYPES = {"VARCHAR": "text", "TEXT": "text", "TIMESTAMP WITH TIME ZONE": "timestamptz", "JSONB": "jsonb",
               "BOOLEAN": "bool", "SMALLINT": "int2", "INTEGER": "int4", "BIGINT": "int8", "NUMERIC": "numeric"}


@cache
def copy_types(dialect: Any, table: Any, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The PostgreSQL types of ``columns`` for a binary COPY, read from the table's metadata (KeyError for a
    column type not in ``_COPY_TYPES``)."""
    return tuple(_COPY_TYPES[table.c[c].type.compile(dialect=dialect).split("(")[0]] for c in columns)


@cache
def _jsonb_dumper() -> type[Any]:
    """jsonb values in a binary COPY: ``json_bytes`` behind jsonb's version byte, as psycopg's own dumper does."""
    from psycopg.types.json import JsonbBinaryDumper

    return type("OrjsonJsonbBinaryDumper", (JsonbBinaryDumper,), {"_dumps": json_bytes})


def copy_rows(ctx: Ctx, table: Any, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """One binary ``COPY`` of ``rows`` (values in ``columns`` order, JSON columns as plain dicts).

    Binary, not text (issue 16): psycopg's text formatting of every value (escaping, timestamps as text) cost
    twice the client time of the binary encoding. Every column's wire type is fixed by ``copy_types``; the
    server checks lengths and NOT NULL exactly as for text, and a naive datetime fails as it does on the ORM
    path (``UTCDateTime``)."""
    raw: Any = ctx.db.connection().connection.dbapi_connection
    with raw.cursor() as cursor:
        cursor.adapters.register_dumper(None, _jsonb_dumper())  # by oid, this cursor only
        with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(copy_types(ctx.db.get_bind().dialect, table, tuple(columns)))
            for row in rows:
                copy.write_row(row)


def _update_sessions(ctx: Ctx, rows: list[SessionRow]) -> None:
    """One UPDATE for every stored session the batch changed; ORM copies read earlier in the batch (attribution
    loads ``Session`` objects) are expired so they are read again."""
    ids = {r.id for r in rows}
    if _is_postgres(ctx):
        arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(SESSION_CHANGES, _CHANGE_TYPES, strict=True))
        sets = ", ".join(f"{c} = u.{c}" for c in SESSION_CHANGES)
        ctx.db.execute(
            sa.text(f"UPDATE sessions AS s SET {sets} FROM unnest(CAST(:ids AS text[]), {arrays}) "
                    f"AS u(id, {', '.join(SESSION_CHANGES)}) "
                    "WHERE s.account_id = :account AND s.environment = :environment AND s.id = u.id"),
            {"ids": [r.id for r in rows], "account": ctx.account_id, "environment": ctx.environment}
            | {c: [getattr(r, c) for r in rows] for c in SESSION_CHANGES},
        )
    else:
        table = cast(sa.Table, Session.__table__)
        ctx.db.execute(
            sa.update(table)
            .where(table.c.account_id == sa.bindparam("a"), table.c.environment == sa.bindparam("e"),
                   table.c.id == sa.bindparam("i"))
            .values({c: sa.bindparam(f"v_{c}") for c in SESSION_CHANGES}),
            [{"a": r.account_id, "e": r.environment, "i": r.id} | {f"v_{c}": getattr(r, c) for c in SESSION_CHANGES}
             for r in rows],
        )
    for obj in list(ctx.db.identity_map.values()):
        if isinstance(obj, Session) and obj.id in ids:
            ctx.db.expire(obj)


def _update_bindings(ctx: Ctx, rows: list[BindingRow]) -> None:
    table = cast(sa.Table, SessionBinding.__table__)
    ctx.db.execute(
        sa.update(table)
        .where(table.c.account_id == sa.bindparam("a"), table.c.environment == sa.bindparam("e"),
               table.c.visitor_id == sa.bindparam("v"), table.c.client_session_id == sa.bindparam("c"))
        .values(session_id=sa.bindparam("s"), bound_at=sa.bindparam("b")),
        [{"a": r.account_id, "e": r.environment, "v": r.visitor_id, "c": r.client_session_id, "s": r.session_id,
          "b": r.bound_at} for r in rows],
    )


def _write_visitor_times(ctx: Ctx) -> None:
    """VIS-3: one UPDATE for the first/last seen times of every stored visitor the batch saw."""
    seen = ctx.rows.seen
    if not seen:
        return
    ids = list(seen)
    firsts = [seen[i][0] for i in ids]
    lasts = [seen[i][1] for i in ids]
    seen.clear()
    if _is_postgres(ctx):
        ctx.db.execute(
            sa.text(
                "UPDATE visitors AS v SET first_seen_at = LEAST(v.first_seen_at, u.f), "
                "last_seen_at = GREATEST(v.last_seen_at, u.l) "
                "FROM unnest(CAST(:ids AS text[]), CAST(:fs AS timestamptz[]), CAST(:ls AS timestamptz[])) "
                "AS u(id, f, l) WHERE v.account_id = :account AND v.id = u.id "
                "AND (u.f < v.first_seen_at OR u.l > v.last_seen_at)"
            ),
            {"ids": ids, "fs": firsts, "ls": lasts, "account": ctx.account_id},
        )
        return
    table = cast(sa.Table, Visitor.__table__)
    ctx.db.execute(
        sa.update(table)
        .where(table.c.account_id == sa.bindparam("a"), table.c.id == sa.bindparam("i"))
        .values(first_seen_at=sa.func.min(table.c.first_seen_at, sa.bindparam("f", type_=UTCDateTime())),
                last_seen_at=sa.func.max(table.c.last_seen_at, sa.bindparam("l", type_=UTCDateTime()))),
        [{"a": ctx.account_id, "i": i, "f": f, "l": la} for i, f, la in zip(ids, firsts, lasts, strict=True)],
    )


def _is_postgres(ctx: Ctx) -> bool:
    return bool(ctx.db.get_bind().dialect.name == "postgresql")


@dataclass
class PendingRows:
    """What the batch created or changed and has not written yet (``write_rows``)."""

    new_visitors: dict[str, VisitorRow] = field(default_factory=dict)
    seen: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)  # stored visitor -> item times
    new_sessions: dict[str, SessionRow] = field(default_factory=dict)
    changed_sessions: dict[str, SessionRow] = field(default_factory=dict)
    new_bindings: dict[tuple[str, str], BindingRow] = field(default_factory=dict)
    changed_bindings: dict[tuple[str, str], BindingRow] = field(default_factory=dict)
