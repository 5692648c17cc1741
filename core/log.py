"""The command log (spec README, D1): an ordered, append-only log per (account, environment).

``CommandLog`` is the one interface the edge talks to. The inline backend makes a command durable by
processing and committing it in the request; a queued backend (Redis Streams, the pipeline issue) only adds
another implementation of the same ``append``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import redis
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.commands import Command, CommandResult, ConversionCommand, IdentifyCommand, OrderLinkCommand
from core.fitting.tasks import run_fit_now
from core.followups import run_followups
from core.processors.batch import process_batch
from core.queue import RedisStreamLog
from core.reads import conversion_by_id
from core.reattribution.tasks import retry_attribution_inline, run_inline
from core.tenant import Tenant

log = logging.getLogger("mbuzz.log")


class LogUnavailable(Exception):
    """Neither the log nor the database could make the commands durable (API-66 → 503)."""


@dataclass
class Appended:
    """One result per appended command, in order, and how they were handled (API-4 X-Mbuzz-Processing)."""

    mode: str  # inline | queued | degraded
    results: list[CommandResult]


class CommandLog(Protocol):
    mode: str

    def append(self, tenant: Tenant, commands: Sequence[Command], wait: bool = True) -> Appended:
        """Make ``commands`` durable, all or none, and answer one result per command in order.

        ``wait=False`` is for background jobs that need no processed result: a queued log then answers as soon
        as the commands are durable (a job waiting for a drain that may run on its own worker only stalls it).
        """
        ...


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

    def append(self, tenant: Tenant, commands: Sequence[Command], wait: bool = True) -> Appended:
        return Appended(self.mode, self.process(tenant, commands))

    def process(self, tenant: Tenant, commands: Sequence[Command]) -> list[CommandResult]:
        if not commands:
            return []
        for attempt in range(3):
            try:
                if self._serialize:
                    with self._lock:
                        return self._process(tenant, commands)
                return self._process(tenant, commands)
            except IntegrityError:
                # API-55: a concurrent request won the race for a key or a visitor; the retry sees its row.
                if attempt == 2:
                    raise
            except OperationalError as exc:
                # A deadlock or serialization failure rolled the whole batch back: it is safe to run again.
                if not _retryable(exc) or attempt == 2:
                    raise LogUnavailable(str(exc.orig)) from exc
        raise AssertionError("unreachable")

    def _process(self, tenant: Tenant, commands: Sequence[Command]) -> list[CommandResult]:
        with self._sessions.begin() as db:
            results = process_batch(db, tenant, commands, replay_safe=self._replay_safe)
        run_followups(
            db, tenant,
            refit=(lambda t: run_fit_now(self._sessions, t)) if self._refit_inline else None,
            retry=lambda t, ids: retry_attribution_inline(self._sessions, t, ids),
            start_batch=lambda t, batch_id: run_inline(self._sessions, t, batch_id),
        )
        return results


class QueuedLog:
    """The Redis log with read-your-writes waits (API-62) and the degraded fallback (API-65).

    Events and touches are answered once appended. Conversions, identify and order links wait, bounded, for
    their result; on timeout they are answered pending. When Redis cannot be reached the same commands are
    processed inline (``degraded``): nothing is lost and nothing answers 5xx. After a failure Redis is left
    alone for a second, so an outage costs one connect timeout per second, not one per request.
    """

    mode = "queued"
    RETRY_AFTER_S = 1.0
    WARN_EVERY_S = 60.0

    def __init__(
        self, stream: RedisStreamLog, inline: InlineLog, sessions: sessionmaker[Session], wait_ms: int
    ) -> None:
        self._stream = stream
        self._inline = inline
        self._sessions = sessions
        self._wait_ms = wait_ms
        self._down_until = 0.0
        self._warned_at = 0.0

    def append(self, tenant: Tenant, commands: Sequence[Command], wait: bool = True) -> Appended:
        if time.monotonic() >= self._down_until:
            try:
                queued = self._stream.append(tenant, commands)
            except redis.RedisError as exc:
                self._went_down(exc)
            else:
                if not wait:
                    return Appended("queued", queued.results)
                return Appended("queued", [self._settle(tenant, c, r) for c, r in zip(commands, queued.results,
                                                                                      strict=True)])
        return Appended("degraded", self._inline.process(tenant, commands))

    def _went_down(self, exc: Exception) -> None:
        now = time.monotonic()
        self._down_until = now + self.RETRY_AFTER_S
        if now - self._warned_at >= self.WARN_EVERY_S:
            self._warned_at = now
            log.warning("Redis unreachable (%s); processing inline until it answers again", exc)

    def _settle(self, tenant: Tenant, command: Command, result: CommandResult) -> CommandResult:
        """Fill in the answer of a conversion or identify from its processed result, if it comes in time."""
        if not isinstance(command, ConversionCommand | IdentifyCommand | OrderLinkCommand):
            return result
        wanted = result.result_id if result.status == "duplicate" else command.id
        if result.status == "duplicate" and wanted is not None and isinstance(command, ConversionCommand):
            with self._sessions() as db:
                body = conversion_by_id(db, tenant, wanted)
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
