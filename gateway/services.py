"""The objects one app instance shares between requests: engine, session factory, command log, limiters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from core import keycache
from core.jobs import enqueue_drain
from core.log import CommandLog, InlineLog, QueuedLog
from core.queue import RedisStreamLog
from core.storage.db import engine_for, session_factory
from edge.limits import address_key
from gateway.api.admission import AdmissionGate
from gateway.api.auth import FailureLimiter
from gateway.config import Settings
from gateway.ratelimit import KEY_PREFIX


@dataclass
class Services:
    settings: Settings
    engine: sa.Engine
    sessions: sessionmaker[Session]
    log: CommandLog
    auth_failures: FailureLimiter
    admission_gate: AdmissionGate
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    redis: redis.Redis | None = None  # the key cache (API-13) lives here when Redis is configured

    def now(self) -> datetime:
        """The receive time; tests and the fixture runner replace ``clock`` to replay recorded traffic."""
        return self.clock()

    @classmethod
    def build(cls, settings: Settings) -> Services:
        engine = engine_for(settings)
        sessions = session_factory(engine)
        log: CommandLog = InlineLog(sessions, refit_inline=True)
        client = None
        if settings.redis_url:
            client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=0.25, socket_timeout=5)
            stream = RedisStreamLog(client, lambda partition: enqueue_drain(client, partition),
                                    settings.log_partitions)
            log = QueuedLog(stream, InlineLog(sessions, replay_safe=True), sessions, settings.sync_wait_ms)
        failures = FailureLimiter(settings.ratelimit_auth_failures, client,
                                  lambda ip: f"{KEY_PREFIX}:authfail:{address_key(settings.secret_key, 'ip', ip)}")
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            log=log,
            redis=client,
            auth_failures=failures,
            admission_gate=AdmissionGate({"ingest": settings.ratelimit_ingest, "sync": settings.ratelimit_sync},
                                         failures, KEY_PREFIX, with_redis=client is not None,
                                         fresh_s=settings.key_cache_ttl_s),
        )

    def forget_keys(self, digests: list[str]) -> None:
        """Revocation clears the shared key cache synchronously (API-13); Redis down means nothing is cached."""
        if self.redis is not None:
            try:
                keycache.forget(self.redis, digests)
            except redis.RedisError as exc:
                # A cached entry may then survive up to its TTL; say so loudly rather than silently.
                raise RuntimeError("key revoked in the database, but Redis could not clear the key cache") from exc

    def deep_checks(self) -> dict[str, str]:
        checks = {"database": "ok", "redis": "absent"}
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception:
            checks["database"] = "down"
        if self.settings.redis_url:
            try:
                import redis

                redis.Redis.from_url(self.settings.redis_url, socket_timeout=1).ping()
                checks["redis"] = "ok"
            except Exception:
                checks["redis"] = "down"
        return checks


def services() -> Services:
    """The current app's services, typed (issue 18: instead of ``current_app.config["MBUZZ"]`` as ``Any``)."""
    found: Services = current_app.config["MBUZZ"]
    return found
