"""The command log (spec README, D1): an ordered, append-only log per (account, environment).

``CommandLog`` is the one interface the edge talks to. The inline backend makes a command durable by
processing and committing it in the request; a queued backend (Redis Streams, the pipeline issue) only adds
another implementation of the same ``append``.

What the log keeps true through an outage (quality.md Q-21, Q-22; docs/api.md API-24-D1, API-51-D2):

- A request's rejections (API-24) travel with its append, so its answer depends on the log alone (API-66: 2xx
  exactly when something was appended). Inline they are written in the transaction of the request's commands;
  queued they are buffered in Redis (``<prefix>:rejections``) and moved to the database by the maintenance
  thread of the process that buffered them, each row once (fixed ids, ``ON CONFLICT DO NOTHING``).
- An idempotency key claimed inline while Redis was unreachable (degraded, API-65) is written back to Redis as
  the reservation the queued path would have made (API-51, API-55) as soon as Redis answers again: before this
  process appends anything, and within a second by its maintenance thread.

The maintenance thread runs only while a process has such work (a second a tick) and ends when it is done.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
import redis
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.admission import Admission, AdmissionUnavailable
from core.commands import Command, CommandResult, ConversionCommand, IdentifyCommand, OrderLinkCommand
from core.fitting.tasks import run_fit_now
from core.followups import run_followups
from core.processors.batch import process_batch
from core.queue import IDEMPOTENCY_TTL_S, PREFIX, RedisClient, RedisStreamLog, _scope_key, idempotency_key
from core.ratewindow import Verdict
from core.reads import conversion_by_id
from core.reattribution.tasks import retry_attribution_inline, run_inline
from core.storage.models import Rejection
from core.tenant import Tenant

log = logging.getLogger("mbuzz.log")

REJECTIONS = PREFIX + ":rejections"  # API-24 records waiting for the database (JSON rows, oldest first)


class LogUnavailable(Exception):
    """Neither the log nor the database could make the commands durable (API-66 → 503)."""


@dataclass
class Appended:
    """One result per appended command, in order, and how they were handled (API-4 X-Mbuzz-Processing)."""

    mode: str  # inline | queued | degraded
    results: list[CommandResult]
    verdict: Verdict | None = None  # an admitted append's rate-limit figures (API-140; core.admission)


@dataclass(frozen=True)
class Rejected:
    """One API-24 record: what was rejected and why, never the body. ``id`` is fixed by the edge (API-24-D1)."""

    id: str
    endpoint: str
    index: int | None
    name: str | None
    errors: list[str]
    key_prefix: str | None
    request_id: str | None
    created_at: datetime


class CommandLog(Protocol):
    mode: str

    def append(
        self, tenant: Tenant, commands: Sequence[Command], wait: bool = True, rejections: Sequence[Rejected] = (),
        admission: Admission | None = None,
    ) -> Appended:
        """Make ``commands`` durable, all or none, and answer one result per command in order.

        ``wait=False`` is for background jobs that need no processed result: a queued log then answers as soon
        as the commands are durable (a job waiting for a drain that may run on its own worker only stalls it).
        ``rejections`` are recorded with the commands (API-24), never at the cost of the commands' answer.
        ``admission`` asks the log to admit the request in the same step (core.admission): it raises
        ``NotAdmitted`` (nothing recorded), or ``AdmissionUnavailable`` when it cannot admit (then the caller
        admits the request itself and appends without one).
        """
        ...


def rejection_rows(tenant: Tenant, rejections: Sequence[Rejected]) -> list[dict[str, Any]]:
    return [
        {"account_id": tenant.account_id, "environment": tenant.environment, "id": r.id, "endpoint": r.endpoint,
         "item_index": r.index, "name": r.name, "errors": list(r.errors), "key_prefix": r.key_prefix,
         "request_id": r.request_id, "created_at": r.created_at}
        for r in rejections
    ]


def write_rejections(db: Session, rows: Sequence[dict[str, Any]]) -> None:
    """One INSERT … ON CONFLICT DO NOTHING: a retried keyed rejection, or a buffered row flushed twice, stays one."""
    if not rows:
        return
    if db.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        db.execute(pg_insert(Rejection).values(list(rows)).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        db.execute(sqlite_insert(Rejection).values(list(rows)).on_conflict_do_nothing())


def _retryable(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in ("40001", "40P01")


class InlineLog:
    """Processes each append in its own transaction, inside the request (API-64)."""

    mode = "inline"

    def __init__(
        self, sessions: sessionmaker[Session], replay_safe: bool = False, refit_inline: bool = False
    ) -> None:
        """``replay_safe`` claims command ids (degraded mode): a command whose append to Redis may have gone
        through although the client saw an error is then skipped when a drain meets it in the stream.
        ``refit_inline`` runs a stale tenant's fit right after the commit (ATT-31, inline mode)."""
        self._sessions = sessions
        self._replay_safe = replay_safe
        self._refit_inline = refit_inline
        bind = sessions.kw.get("bind")
        self._serialize = bind is not None and bind.dialect.name == "sqlite"
        self._lock = threading.Lock()

    def append(
        self, tenant: Tenant, commands: Sequence[Command], wait: bool = True, rejections: Sequence[Rejected] = (),
        admission: Admission | None = None,
    ) -> Appended:
        if admission is not None:
            raise AdmissionUnavailable("the inline log admits nothing")
        return Appended(self.mode, self.process(tenant, commands, rejections))

    def process(
        self, tenant: Tenant, commands: Sequence[Command], rejections: Sequence[Rejected] = ()
    ) -> list[CommandResult]:
        """The commands and the request's rejections in one transaction: both are recorded, or neither."""
        if not commands and not rejections:
            return []
        for attempt in range(3):
            try:
                if self._serialize:
                    with self._lock:
                        return self._process(tenant, commands, rejections)
                return self._process(tenant, commands, rejections)
            except IntegrityError:
                # API-55: a concurrent request won the race for a key or a visitor; the retry sees its row.
                if attempt == 2:
                    raise
            except OperationalError as exc:
                # A deadlock or serialization failure rolled the whole batch back: it is safe to run again.
                if not _retryable(exc) or attempt == 2:
                    raise LogUnavailable(str(exc.orig)) from exc
        raise AssertionError("unreachable")

    def _process(
        self, tenant: Tenant, commands: Sequence[Command], rejections: Sequence[Rejected]
    ) -> list[CommandResult]:
        with self._sessions.begin() as db:
            results = process_batch(db, tenant, commands, replay_safe=self._replay_safe) if commands else []
            write_rejections(db, rejection_rows(tenant, rejections))
        if not commands:
            return results
        run_followups(
            db, tenant,
            refit=(lambda t: run_fit_now(self._sessions, t)) if self._refit_inline else None,
            retry=lambda t, ids: retry_attribution_inline(self._sessions, t, ids),
            start_batch=lambda t, batch_id: run_inline(self._sessions, t, batch_id),
        )
        return results


class RejectionBuffer:
    """API-24 records of queued requests, kept in Redis until the database takes them (quality.md Q-22).

    ``flush`` reads the oldest rows, inserts them (``ON CONFLICT DO NOTHING`` on their fixed ids), commits, and
    only then removes exactly those values (``LREM``): several gateway processes may flush at once, and a crash
    between the commit and the removal only makes the next flush insert nothing.
    """

    CHUNK = 500

    def __init__(self, client: RedisClient) -> None:
        self._redis = client

    def push(self, tenant: Tenant, rejections: Sequence[Rejected]) -> None:
        rows = rejection_rows(tenant, rejections)
        self._redis.rpush(REJECTIONS, *[orjson.dumps({**r, "created_at": r["created_at"].isoformat()}) for r in rows])

    def flush(self, sessions: sessionmaker[Session]) -> int:
        raw: list[bytes] = self._redis.lrange(REJECTIONS, 0, self.CHUNK - 1)
        if not raw:
            return 0
        rows: list[dict[str, Any]] = []
        for item in raw:
            try:
                row = orjson.loads(item)
                rows.append({**row, "created_at": datetime.fromisoformat(row["created_at"])})
            except (ValueError, KeyError, TypeError):
                log.error("dropping an unreadable buffered rejection: %r", item[:200])
        try:
            with sessions.begin() as db:
                write_rejections(db, rows)
        except OperationalError:
            raise  # the database is away: everything stays buffered
        except SQLAlchemyError:
            self._one_by_one(sessions, rows)  # one row the database refuses must not hold up the others
        pipe = self._redis.pipeline(transaction=False)
        for item in raw:
            pipe.lrem(REJECTIONS, 1, item)
        pipe.execute()
        return len(raw)

    @staticmethod
    def _one_by_one(sessions: sessionmaker[Session], rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            try:
                with sessions.begin() as db:
                    write_rejections(db, [row])
            except OperationalError:
                raise
            except SQLAlchemyError as exc:
                log.error("dropping a buffered rejection the database refuses (%s): %r", type(exc).__name__,
                          {k: row.get(k) for k in ("account_id", "id", "endpoint", "item_index")})


class QueuedLog:
    """The Redis log with read-your-writes waits (API-62) and the degraded fallback (API-65).

    Events and touches are answered once appended. Conversions, identify and order links wait, bounded, for
    their result; on timeout they are answered pending. When Redis cannot be reached the same commands are
    processed inline (``degraded``): nothing is lost and nothing answers 5xx. After a failure Redis is left
    alone for a second, so an outage costs one connect timeout per second, not one per request.

    A maintenance thread, started when a process buffers rejections or claims keys in degraded mode, flushes the
    buffer and writes the reservations back once Redis answers again (see the module docstring).
    """

    mode = "queued"
    RETRY_AFTER_S = 1.0
    WARN_EVERY_S = 60.0
    MAINTAIN_EVERY_S = 1.0
    MAX_CLAIMS = 200_000  # reservations waiting for Redis; beyond that a replay falls back to API-51-D1
    WRITE_BACK_CHUNK = 1000

    def __init__(
        self, stream: RedisStreamLog, inline: InlineLog, sessions: sessionmaker[Session], wait_ms: int,
        client: RedisClient | None = None,
    ) -> None:
        self._stream = stream
        self._inline = inline
        self._sessions = sessions
        self._wait_ms = wait_ms
        self._redis: RedisClient = client if client is not None else stream._redis
        self._rejections = RejectionBuffer(self._redis)
        self._down_until = 0.0
        self._warned_at = 0.0
        self._db_warned_at = 0.0
        self._claims: dict[str, str] = {}  # Redis reservation key -> the id the database stored (API-51-D2)
        self._claims_lock = threading.Lock()
        self._maintenance_lock = threading.Lock()
        self._maintainer: int | None = None  # the pid whose maintenance thread runs (a fork starts its own)
        self._maintenance_wanted = False

    def append(
        self, tenant: Tenant, commands: Sequence[Command], wait: bool = True, rejections: Sequence[Rejected] = (),
        admission: Admission | None = None,
    ) -> Appended:
        if time.monotonic() >= self._down_until:
            try:
                self.write_back_claims(self._reservation_keys(tenant, commands))
                queued = self._stream.append(tenant, commands, admission)
            except redis.RedisError as exc:
                self._went_down(exc)
            else:
                self._keep_rejections(tenant, rejections, appended=bool(queued.appended))
                if not wait:
                    return Appended("queued", queued.results, queued.verdict)
                return Appended("queued", [self._settle(tenant, c, r) for c, r in zip(commands, queued.results,
                                                                                      strict=True)], queued.verdict)
        if admission is not None:
            raise AdmissionUnavailable("Redis is unreachable")
        results = self._inline.process(tenant, commands, rejections)
        self._remember_claims(tenant, commands, results)
        return Appended("degraded", results)

    def _went_down(self, exc: Exception) -> None:
        now = time.monotonic()
        self._down_until = now + self.RETRY_AFTER_S
        if now - self._warned_at >= self.WARN_EVERY_S:
            self._warned_at = now
            log.warning("Redis unreachable (%s); processing inline until it answers again", exc)

    def _keep_rejections(self, tenant: Tenant, rejections: Sequence[Rejected], appended: bool) -> None:
        """Buffer them for the maintenance thread; if Redis fails just now, the database takes them directly.

        When the request's commands are in the log already its answer is 2xx whatever happens here (API-66): a
        rejection that neither store can take is then logged, not turned into a 503 that invites a doubling retry.
        """
        if not rejections:
            return
        try:
            self._rejections.push(tenant, rejections)
            self._want_maintenance()
            return
        except redis.RedisError as exc:
            self._went_down(exc)
        try:
            self._inline.process(tenant, [], rejections)
        except (LogUnavailable, OperationalError):
            if not appended:
                raise LogUnavailable("neither Redis nor the database could record the rejections") from None
            log.error("%d rejection(s) of %s could not be recorded: Redis and the database are unreachable",
                      len(rejections), tenant)

    # --------------------------------------------------------------------------------- degraded-mode claims

    def _remember_claims(self, tenant: Tenant, commands: Sequence[Command], results: Sequence[CommandResult]) -> None:
        """API-51-D2: the key an inline command claimed, and the id the database holds for it."""
        claims: dict[str, str] = {}
        for command, result in zip(commands, results, strict=True):
            key = self._reservation_key(tenant, command)
            if key is None or result.result_id is None or result.status not in ("processed", "duplicate",
                                                                                 "replayed"):
                continue
            claims[key] = result.result_id
        if not claims:
            return
        with self._claims_lock:
            room = self.MAX_CLAIMS - len(self._claims)
            if room < len(claims):
                log.warning("%d idempotency reservations not kept for Redis (limit %d)", len(claims) - room,
                            self.MAX_CLAIMS)
            for key, original in list(claims.items())[:max(0, room)]:
                self._claims[key] = original
        self._want_maintenance()

    @staticmethod
    def _reservation_key(tenant: Tenant, command: Command) -> str | None:
        scoped = _scope_key(command)
        if scoped is None:
            return None
        return idempotency_key(tenant, *scoped)

    def _reservation_keys(self, tenant: Tenant, commands: Sequence[Command]) -> set[str]:
        """The keys of a request's commands, when claims wait: the request writes back only its own (the thread
        does the rest), so the first request after a long outage is not held up by all of them."""
        if not self._claims:  # read without the lock: a claim added just now is another request's
            return set()
        return {key for c in commands if (key := self._reservation_key(tenant, c)) is not None}

    def write_back_claims(self, only: set[str] | None = None) -> int:
        """Write the degraded-mode claims (``only`` those keys, if given) to Redis; raises ``redis.RedisError``
        while Redis is still away.

        The database's claim decides what is stored (API-50; a drain meeting another command with the key drops
        it as a duplicate), so the reservation is set to its id even over one made meanwhile.
        """
        if only is not None and not only:
            return 0
        with self._claims_lock:
            if not self._claims:
                return 0
            if only is None:
                pending = list(self._claims.items())
            else:
                pending = [(key, self._claims[key]) for key in only if key in self._claims]
        for start in range(0, len(pending), self.WRITE_BACK_CHUNK):
            chunk = pending[start:start + self.WRITE_BACK_CHUNK]
            pipe = self._redis.pipeline(transaction=False)
            for key, original in chunk:
                pipe.set(key, original, ex=IDEMPOTENCY_TTL_S)
            pipe.execute()
            with self._claims_lock:
                for key, original in chunk:
                    if self._claims.get(key) == original:
                        del self._claims[key]
        return len(pending)

    # ---------------------------------------------------------------------------------------- maintenance

    def _want_maintenance(self) -> None:
        with self._maintenance_lock:
            self._maintenance_wanted = True
            if self._maintainer == os.getpid():
                return
            self._maintainer = os.getpid()
        threading.Thread(target=self._maintain, name="mbuzz-log-maintenance", daemon=True).start()

    def _maintain(self) -> None:
        while True:
            time.sleep(self.MAINTAIN_EVERY_S)
            with self._maintenance_lock:
                self._maintenance_wanted = False
            try:
                busy = self.maintain_once()
            except Exception:  # the thread must outlive any surprise; the next tick tries again
                log.exception("log maintenance failed")
                busy = True
            with self._maintenance_lock:
                if not busy and not self._maintenance_wanted:
                    self._maintainer = None
                    return

    def maintain_once(self) -> bool:
        """Write back degraded-mode claims, then move buffered rejections to the database (a few chunks a tick).

        True while work remains: claims not written back, rows still buffered, or Redis or the database away.
        """
        if time.monotonic() < self._down_until:
            return True
        try:
            self.write_back_claims()
            flushed = 0
            for _ in range(20):
                count = self._rejections.flush(self._sessions)
                flushed += count
                if count < RejectionBuffer.CHUNK:
                    return flushed > 0
            return True
        except redis.RedisError as exc:
            self._went_down(exc)
        except OperationalError as exc:
            now = time.monotonic()
            if now - self._db_warned_at >= self.WARN_EVERY_S:
                self._db_warned_at = now
                log.warning("database unavailable (%s); buffered rejections wait in Redis", type(exc.orig).__name__)
        return True

    def _settle(self, tenant: Tenant, command: Command, result: CommandResult) -> CommandResult:
        """Fill in the answer of a conversion or identify from its processed result, if it comes in time."""
        if not isinstance(command, ConversionCommand | IdentifyCommand | OrderLinkCommand):
            return result
        wanted = result.result_id if result.status == "duplicate" else command.id
        if result.status == "duplicate" and wanted is not None and isinstance(command, ConversionCommand):
            try:
                with self._sessions() as db:
                    body = conversion_by_id(db, tenant, wanted)
            except OperationalError:  # the pending duplicate answer needs no database
                body = None
            if body is not None:
                body["duplicate"] = True
                return CommandResult(command_id=command.id, status="duplicate", result_id=wanted, body=body)
        try:
            done = self._stream.wait(command.id, self._wait_ms) if result.status != "duplicate" else None
        except redis.RedisError:
            done = None
        if done is None:
            return CommandResult(command_id=command.id, status="pending" if result.status != "duplicate" else
                                 "duplicate", result_id=wanted)
        return CommandResult(command_id=command.id, status=done["status"], result_id=done.get("result_id"),
                             body=done.get("body") or {}, errors=done.get("errors") or [],
                             warnings=done.get("warnings") or [])
