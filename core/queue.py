"""The queued backend of the command log: one Redis stream per (account, environment) (spec README D1, D3).

The edge appends commands with XADD inside MULTI/EXEC, so a request's commands are durable together or not at
all (API-66); drain jobs (``core.jobs``) read them through a consumer group, process them in order and
acknowledge only after the database commit. Idempotency keys are reserved with ``SET NX`` before the append
(API-55), so of concurrent duplicates exactly one is the original.

The log keeps only what is not yet processed (docs/pipeline.md Q-20-D4): an acknowledged entry is deleted in the
same MULTI as its XACK (Redis 7.0 has no XACKDEL), and ``trim_acknowledged`` trims what older versions left
below the oldest entry still pending or unread. An entry that is unread, or pending for any consumer, is never
removed; a dead letter carries its own copy of the command.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson
import redis

from core.commands import Command, CommandResult, ConversionCommand, EventCommand, command_to_dict
from core.tenant import Tenant

# redis-py types every reply as a union of all its shapes; replies are checked by use, not by mypy.
RedisClient: TypeAlias = Any

# Every key lives under one prefix, so several deployments (or test runs) can share a Redis server.
PREFIX = os.environ.get("MBUZZ_REDIS_PREFIX", "mbuzz")
STREAM = PREFIX + ":log:{account}:{environment}"
DEAD = PREFIX + ":dead:{account}:{environment}"
WAITING = PREFIX + ":waiting:{account}:{environment}"  # API-93: conversions waiting for their event (ZSET)
PARTITIONS = PREFIX + ":partitions"  # set of "account:environment" with a stream, for sweeps
GROUP = "drain"
CONSUMER = "drainer"  # one consumer per partition at a time (the drain lock), so one fixed name
RESULT = PREFIX + ":result:{command_id}"
PENDING_DRAIN = PREFIX + ":drain-pending:{account}:{environment}"
DRAIN_LOCK = PREFIX + ":drain-lock:{account}:{environment}"
DRAIN_BUSY = PREFIX + ":drain-busy:{account}:{environment}"  # a lock wait timed out moments ago (Q-20-D2)
IDEMPOTENCY = PREFIX + ":idem:{account}:{environment}:{scope}:{key}"
IDEMPOTENCY_TTL_S = 7 * 86400  # older replays are still deduplicated by the database (docs/api.md API-51-D1)
RESULT_TTL_S = 120
DEBOUNCE_MS = 50


def stream_key(tenant: Tenant) -> str:
    return STREAM.format(account=tenant.account_id, environment=tenant.environment)


def dead_key(tenant: Tenant) -> str:
    return DEAD.format(account=tenant.account_id, environment=tenant.environment)


def waiting_key(tenant: Tenant) -> str:
    return WAITING.format(account=tenant.account_id, environment=tenant.environment)


def partition_of(name: str) -> Tenant:
    account, _, environment = name.rpartition(":")
    return Tenant(account, environment)


def _scope_key(command: Command) -> tuple[str, str] | None:
    if isinstance(command, EventCommand) and command.idempotency_key is not None:
        return "event", command.idempotency_key
    if isinstance(command, ConversionCommand) and command.idempotency_key is not None:
        return "conversion", command.idempotency_key
    return None


@dataclass
class QueuedAppend:
    results: list[CommandResult]
    appended: list[Command]


class RedisStreamLog:
    """Appends to Redis; ``wait`` collects processed results for the read-your-writes answers (API-62)."""

    mode = "queued"

    def __init__(self, client: RedisClient, enqueue_drain: Any) -> None:
        self._redis = client
        self._enqueue_drain = enqueue_drain

    def append(self, tenant: Tenant, commands: Sequence[Command]) -> QueuedAppend:
        """Reserve keys, XADD atomically, schedule a drain. Raises ``redis.RedisError`` when Redis is down."""
        results: list[CommandResult] = []
        fresh: list[Command] = []
        reserved: list[str] = []
        for command in commands:
            scoped = _scope_key(command)
            if scoped is not None:
                key = IDEMPOTENCY.format(
                    account=tenant.account_id, environment=tenant.environment, scope=scoped[0], key=scoped[1]
                )
                if not self._redis.set(key, command.id, nx=True, ex=IDEMPOTENCY_TTL_S):
                    original = self._redis.get(key)
                    results.append(
                        CommandResult(
                            command_id=command.id,
                            status="duplicate",
                            result_id=original.decode() if original else command.id,
                        )
                    )
                    continue
                reserved.append(key)
            fresh.append(command)
            results.append(CommandResult(command_id=command.id, status="queued", result_id=command.id))
        if fresh:
            try:
                pipe = self._redis.pipeline(transaction=True)
                stream = stream_key(tenant)
                for command in fresh:
                    pipe.xadd(stream, {"c": orjson.dumps(command_to_dict(command))})
                pipe.sadd(PARTITIONS, f"{tenant.account_id}:{tenant.environment}")
                pipe.execute()
            except redis.RedisError:
                if reserved:  # nothing was appended: free the keys so the retry is not answered "duplicate"
                    self._safe_delete(reserved)
                raise
            try:
                self.schedule_drain(tenant)
            except redis.RedisError:
                pass  # the commands are durable in the stream; the workers' sweeper schedules the drain
        return QueuedAppend(results=results, appended=fresh)

    def _safe_delete(self, keys: list[str]) -> None:
        try:
            self._redis.delete(*keys)
        except redis.RedisError:
            pass

    def schedule_drain(self, tenant: Tenant) -> None:
        """Debounced trigger: at most one drain job enqueued per partition per ``DEBOUNCE_MS``."""
        flag = PENDING_DRAIN.format(account=tenant.account_id, environment=tenant.environment)
        if self._redis.set(flag, b"1", nx=True, px=DEBOUNCE_MS * 20):
            self._enqueue_drain(tenant)

    def wait(self, command_id: str, timeout_ms: int) -> dict[str, Any] | None:
        """The processed result body of a command, or None when it is not ready within ``timeout_ms``."""
        if timeout_ms <= 0:
            return None
        deadline = time.monotonic() + timeout_ms / 1000
        key = RESULT.format(command_id=command_id)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            item = self._redis.blpop([key], timeout=max(0.01, min(remaining, 1.0)))
            if item is not None:
                body: dict[str, Any] = orjson.loads(item[1])
                return body


def publish_results(client: RedisClient, results: Sequence[CommandResult]) -> None:
    """Hand processed bodies to the requests waiting for them; a waiter that gave up finds nothing to read."""
    pipe = client.pipeline(transaction=False)
    count = 0
    for result in results:
        if result.body or result.status in ("rejected", "waiting"):
            key = RESULT.format(command_id=result.command_id)
            payload = {"status": result.status, "body": result.body, "errors": result.errors,
                       "warnings": result.warnings, "result_id": result.result_id}
            pipe.rpush(key, orjson.dumps(payload))
            pipe.expire(key, RESULT_TTL_S)
            count += 1
    if count:
        pipe.execute()


def acknowledge(client: RedisClient, stream: str, ids: Sequence[bytes], also: Any = None) -> None:
    """XACK and XDEL in one MULTI: a processed entry leaves the log (raw URLs included) as it is acknowledged.

    ``also(pipe)`` queues more commands into the same MULTI (a dead letter written with its acknowledgement)."""
    if not ids:
        return
    pipe = client.pipeline(transaction=True)
    if also is not None:
        also(pipe)
    pipe.xack(stream, GROUP, *ids)
    pipe.xdel(stream, *ids)
    pipe.execute()


def _entry_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def trim_acknowledged(client: RedisClient, stream: str, last_delivered: bytes | str) -> int:
    """XTRIM MINID below every entry not yet acknowledged; returns how many entries went.

    ``last_delivered`` is the group's last-delivered-id read *before* this call: every entry after it is unread
    and kept, and an entry delivered by then but not yet acknowledged is in the pending list read here, after
    it, so it is kept too. Entries read or acknowledged in between only make the floor safer.
    """
    ms, seq = _entry_id(last_delivered)
    floor = (ms, seq + 1)  # the entry after the last one delivered
    summary = client.xpending(stream, GROUP)
    if summary.get("pending"):
        floor = min(floor, _entry_id(summary["min"]))
    if floor <= (0, 1):
        return 0
    return int(client.xtrim(stream, minid=f"{floor[0]}-{floor[1]}", approximate=False))
