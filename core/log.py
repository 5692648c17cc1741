"""The command log (spec README, D1): an ordered, append-only log per (account, environment).

``CommandLog`` is the one interface the edge talks to. The inline backend makes a command durable by
processing and committing it in the request; a queued backend (Redis Streams, the pipeline issue) only adds
another implementation of the same ``append``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.commands import Command, CommandResult
from core.processors.batch import process_batch
from core.tenant import Tenant


class LogUnavailable(Exception):
    """Neither the log nor the database could make the commands durable (API-66 → 503)."""


class CommandLog(Protocol):
    mode: str

    def append(self, tenant: Tenant, commands: Sequence[Command]) -> list[CommandResult]:
        """Make ``commands`` durable, all or none, and answer one result per command in order."""
        ...


def _retryable(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in ("40001", "40P01")


class InlineLog:
    """Processes each append in its own transaction, inside the request (API-64)."""

    mode = "inline"

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        bind = sessions.kw.get("bind")
        self._serialize = bind is not None and bind.dialect.name == "sqlite"
        self._lock = threading.Lock()

    def append(self, tenant: Tenant, commands: Sequence[Command]) -> list[CommandResult]:
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
            return process_batch(db, tenant, commands)
