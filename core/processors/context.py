"""What every processor needs for one batch: the transaction, the tenant, its settings, and small caches.

The caches live for one batch only (one transaction), so they can never serve stale rows across requests
(API-13 forbids per-process caches of anything revocable; the same discipline applies here).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.ids import new_id
from core.processors.rows import BindingRow, PendingRows, SessionRow, VisitorRow, visitor_rows, write_rows
from core.settings import AccountConfig
from core.storage.models import IdempotencyKey, User, Visitor, VisitorLink
from core.storage.tenancy import of_tenant
from core.tenant import Tenant

if TYPE_CHECKING:
    from core.processors.preload import ConversionSessions


@dataclass
class Ctx:
    db: Session
    tenant: Tenant
    config: AccountConfig
    visitors: dict[str, VisitorRow] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    reattribute: set[str] = field(default_factory=set)  # conversion ids, coalesced per batch (SES-13, ID-14)
    locked: set[str] = field(default_factory=set)  # visitor keys whose advisory lock this transaction holds
    links: dict[str, list[VisitorLink]] = field(default_factory=dict)  # visitor id -> its links, this batch
    new_visitors: set[str] = field(default_factory=set)  # visitor ids created in this batch: no history yet
    # Batch preloads (core.processors.preload): one query per kind instead of one per item.
    window: tuple[datetime, datetime] | None = None  # earliest and latest item time of the batch
    sessions_of: dict[str, list[SessionRow]] = field(default_factory=dict)  # visitor id -> sessions near window
    bindings: dict[tuple[str, str], BindingRow] = field(default_factory=dict)  # (visitor id, client id) -> row
    bindings_loaded: set[str] = field(default_factory=set)  # visitor ids whose bindings are all in ``bindings``
    converters: set[str] | None = None  # visitor and user ids with conversions; None = not preloaded
    # (scope, idempotency key) -> (original id, claimed by this batch): events' and touches' keys (API-51)
    batch_keys: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict)
    unknown_visitors: set[str] = field(default_factory=set)  # keys the preload found absent (locks are held)
    pending_events: list[tuple[Any, ...]] = field(default_factory=list)  # event rows (EVENT_COLUMNS) not yet written
    rows: PendingRows = field(default_factory=PendingRows)  # visitors, sessions, bindings not yet written
    can_defer: bool = False  # the drain can park a conversion until its event arrives (API-93)
    fits: dict[str, Any] | None = None  # model -> CurrentFit, read once per batch (core.fitting)
    # New conversions (column values) and their credit rows not yet written (write_pending_conversions)
    pending_conversions: list[dict[str, Any]] = field(default_factory=list)
    pending_credits: list[dict[str, Any]] = field(default_factory=list)
    conversion_sessions: ConversionSessions | None = None  # of the current run of conversions (preload)

    @property
    def account_id(self) -> str:
        return self.tenant.account_id

    @property
    def environment(self) -> str:
        return self.tenant.environment

    def scoped(self, model: Any) -> Any:
        """A WHERE clause scoping ``model`` to this tenant: every query starts here."""
        return of_tenant(model, self.tenant)

    def one_of(self, column: Any, values: Iterable[str]) -> Any:
        """``column IN values`` for the batch preloads: on PostgreSQL ``= ANY(array)``, one parameter for any
        number of values (an expanded IN list of a few thousand placeholders is parsed again by psycopg on
        every call; issue 16's profile)."""
        wanted = list(values)
        if self.db.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY

            return column == sa.any_(sa.bindparam(None, wanted, type_=ARRAY(sa.Text)))
        return column.in_(wanted)


def insert_ignore(db: Session, model: Any, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING on both dialects; True when the row was inserted."""
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(model).values(**values).on_conflict_do_nothing()
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(model).values(**values).on_conflict_do_nothing()
    # RETURNING tells inserted from skipped on both dialects (rowcount is not reliable here).
    return db.execute(stmt.returning(sa.literal(1))).first() is not None


def used_key(ctx: Ctx, scope: str, key: str) -> str | None:
    return ctx.db.scalar(
        sa.select(IdempotencyKey.result_id).where(
            IdempotencyKey.account_id == ctx.account_id,
            IdempotencyKey.environment == ctx.environment,
            IdempotencyKey.scope == scope,
            IdempotencyKey.key == key,
        )
    )


def claim_key(ctx: Ctx, scope: str, key: str | None, result_id: str, at: datetime) -> str | None:
    """API-50/55: reserve an idempotency key; returns the original id when it was already used."""
    if key is None:
        return None
    inserted = insert_ignore(
        ctx.db,
        IdempotencyKey,
        {
            "account_id": ctx.account_id,
            "environment": ctx.environment,
            "scope": scope,
            "key": key,
            "result_id": result_id,
            "created_at": at,
        },
    )
    if inserted:
        return None
    return used_key(ctx, scope, key) or result_id


def claim_batch_key(ctx: Ctx, scope: str, key: str | None, command_id: str, at: datetime) -> str | None:
    """``claim_key`` for an event or touch: read from the batch's claims (``core.processors.preload``) when the
    preload claimed it, else claimed now. Returns the original id when the key was used before."""
    if key is None:
        return None
    known = ctx.batch_keys.get((scope, key))
    if known is None:
        return claim_key(ctx, scope, key, command_id, at)
    first_id, claimed_here = known
    return None if claimed_here and first_id == command_id else first_id


def lock_visitors(ctx: Ctx, visitor_keys: Iterable[str]) -> None:
    """SES-12: one visitor's items are never resolved concurrently (advisory locks on PostgreSQL).

    A batch takes all its visitors' locks at once in sorted order, so two batches sharing visitors can never
    deadlock; a key already held by this transaction is skipped. SQLite serializes writers itself.
    """
    wanted = sorted(set(visitor_keys) - ctx.locked)
    if not wanted:
        return
    ctx.locked.update(wanted)
    if ctx.db.get_bind().dialect.name != "postgresql":
        return
    keys = [
        int.from_bytes(
            hashlib.sha256(f"{ctx.account_id}|{ctx.environment}|{k}".encode()).digest()[:8], "big", signed=True
        )
        for k in wanted
    ]
    ctx.db.execute(
        sa.text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k ORDER BY k"),
        {"keys": keys},
    )


def get_visitor(ctx: Ctx, visitor_key: str) -> VisitorRow | None:
    cached = ctx.visitors.get(visitor_key)
    if cached is not None:
        return cached
    if visitor_key in ctx.unknown_visitors:
        return None
    found = visitor_rows(ctx, Visitor.visitor_key == visitor_key)
    if found:
        ctx.visitors[visitor_key] = found[0]
        return found[0]
    return None


def ensure_visitor(ctx: Ctx, visitor_key: str, seen_at: datetime) -> VisitorRow:
    """VIS-3: a visitor is created the first time any item names it; seen times track item times.

    New visitors and the seen times of stored ones are written set-based (``core.processors.rows``)."""
    if visitor_key not in ctx.locked:  # a batch's visitors are locked at its start (process_batch)
        lock_visitors(ctx, (visitor_key,))
    row = get_visitor(ctx, visitor_key)
    if row is None:
        row = VisitorRow(ctx.account_id, ctx.environment, new_id("vis"), visitor_key, seen_at, seen_at, seen_at)
        # The visitor's advisory lock is held, so no concurrent transaction can insert the same key.
        ctx.rows.new_visitors[row.id] = row
        ctx.visitors[visitor_key] = row
        ctx.unknown_visitors.discard(visitor_key)
        ctx.new_visitors.add(row.id)
        ctx.links[row.id] = []
        ctx.sessions_of[row.id] = []
        ctx.bindings_loaded.add(row.id)
        return row
    if row.id in ctx.rows.new_visitors:  # not written yet
        row.first_seen_at = min(row.first_seen_at, seen_at)
        row.last_seen_at = max(row.last_seen_at, seen_at)
    elif seen_at < row.first_seen_at or seen_at > row.last_seen_at:  # VIS-3: only what moves is written
        row.first_seen_at = min(row.first_seen_at, seen_at)
        row.last_seen_at = max(row.last_seen_at, seen_at)
        ctx.rows.seen[row.id] = (row.first_seen_at, row.last_seen_at)
    return row


def get_user(ctx: Ctx, user_key: str) -> User | None:
    cached = ctx.users.get(user_key)
    if cached is not None:
        return cached
    row = ctx.db.scalars(sa.select(User).where(ctx.scoped(User), User.user_key == user_key)).first()
    if row is not None:
        ctx.users[user_key] = row
    return row


def ensure_user(ctx: Ctx, user_key: str, at: datetime, origin: str | None = None) -> User:
    """ID-1: a user is created the first time any item names it (``origin``: the connector of that item)."""
    row = get_user(ctx, user_key)
    if row is None:
        insert_ignore(
            ctx.db,
            User,
            {
                "account_id": ctx.account_id,
                "environment": ctx.environment,
                "id": new_id("idt"),
                "user_key": user_key,
                "traits": {},
                "origin": origin,
                "created_at": at,
            },
        )
        row = get_user(ctx, user_key)
        assert row is not None
    return row


def user_for_email(ctx: Ctx, email_sha256: str, at: datetime, origin: str | None = None) -> User:
    """ID-9: the most recently identified real user with that hash, else a provisional one."""
    real = ctx.db.scalars(
        sa.select(User)
        .where(ctx.scoped(User), User.email_sha256 == email_sha256, User.user_key.is_not(None))
        .order_by(User.last_identified_at.desc().nulls_last(), User.id.desc())
    ).first()
    if real is not None:
        return real
    provisional = ctx.db.scalars(
        sa.select(User).where(ctx.scoped(User), User.email_sha256 == email_sha256, User.user_key.is_(None))
    ).first()
    if provisional is not None:
        return provisional
    row = User(
        account_id=ctx.account_id,
        environment=ctx.environment,
        id=new_id("idt"),
        user_key=None,
        email_sha256=email_sha256,
        traits={},
        origin=origin,
        created_at=at,
    )
    ctx.db.add(row)
    ctx.db.flush()
    return row


def links_of_visitor(ctx: Ctx, visitor_id: str) -> list[VisitorLink]:
    """The visitor's links, read once per batch; ``add_link`` keeps the cached list current."""
    cached = ctx.links.get(visitor_id)
    if cached is not None:
        return cached
    rows = list(
        ctx.db.scalars(
            sa.select(VisitorLink)
            .where(ctx.scoped(VisitorLink), VisitorLink.visitor_id == visitor_id)
            .order_by(VisitorLink.linked_at)
        )
    )
    ctx.links[visitor_id] = rows
    return rows


def owner_at(links: list[VisitorLink], t: datetime) -> str | None:
    """ID-2: the user whose link interval contains ``t`` (null bounds are open)."""
    for link in links:
        if (link.valid_from is None or link.valid_from <= t) and (link.valid_to is None or t < link.valid_to):
            return link.user_id
    return None


def current_link(links: list[VisitorLink]) -> VisitorLink | None:
    for link in links:
        if link.valid_to is None:
            return link
    return None


def add_link(ctx: Ctx, visitor: VisitorRow, user: User, at: datetime, first: bool) -> None:
    link = VisitorLink(
        account_id=ctx.account_id,
        environment=ctx.environment,
        id=new_id("lnk"),
        visitor_id=visitor.id,
        user_id=user.id,
        linked_at=at,
        valid_from=None if first else at,
        valid_to=None,
    )
    ctx.db.add(link)
    links_of_visitor(ctx, visitor.id).append(link)
    write_rows(ctx)  # ID-14 reads the visitor's sessions, this batch's included
    ctx.db.flush()


def synthetic_visitor_key(user_key: str) -> str:
    """VIS-4: ``~`` is outside the client alphabet, so synthetic ids never collide with real ones."""
    return "~u." + hashlib.sha256(user_key.encode()).hexdigest()[:32]
