"""RQ jobs: draining the Redis command log into the processors (spec README D1/D3; quality.md Q-20..Q-27).

A drain job owns one partition (account, environment) at a time through a lock with a token. It first
re-reads the entries its consumer left pending (a crashed predecessor's batch), then new ones, processes each
batch in one transaction and acknowledges only after the commit. Replayed commands are recognised by their
command id (``process_batch(..., replay_safe=True)``), so a crash between commit and XACK doubles nothing.
A database outage is retried with exponential backoff without acknowledging; a command that fails for any
other reason is isolated and moved to the dead-letter stream with its error, never dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
import redis
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.commands import Command, CommandResult, ConversionCommand, command_from_dict
from core.fitting.tasks import MAINTENANCE_EVERY_S, enqueue_fit, refit_stale_tenants
from core.followups import run_followups
from core.ids import id_time, new_id
from core.processors.batch import process_batch
from core.processors.conversions import EVENT_WAIT
from core.queue import (
    CONSUMER,
    DRAIN_LOCK,
    GROUP,
    PARTITIONS,
    PENDING_DRAIN,
    PREFIX,
    RedisClient,
    dead_key,
    partition_of,
    publish_results,
    stream_key,
    waiting_key,
)
from core.reattribution.tasks import RECOVERY_S, enqueue_attribution_retries, recover_batches, start_batch
from core.storage.db import make_engine, session_factory
from core.storage.models import Rejection
from core.tenant import Tenant

log = logging.getLogger("mbuzz.drain")

BATCH = int(os.environ.get("MBUZZ_DRAIN_BATCH", "500"))
LOCK_MS = int(os.environ.get("MBUZZ_DRAIN_LOCK_MS", "30000"))  # a crashed drainer's partition waits this long
MAX_BACKOFF_S = 10.0
EVENT_RETRY_S = float(os.environ.get("MBUZZ_EVENT_WAIT_RETRY_S", "10"))  # API-93: how often a waiter retries
QUEUE = PREFIX  # the RQ queue of this deployment


@dataclass(frozen=True)
class Runtime:
    redis: RedisClient
    sessions: sessionmaker[Session]


@cache
def runtime() -> Runtime:
    """Settings read once from the environment of the worker process."""
    database_url = os.environ.get("DATABASE_URL") or "sqlite:///mbuzz.db"
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    return Runtime(
        redis=redis.Redis.from_url(redis_url, socket_timeout=10, health_check_interval=30),
        sessions=session_factory(make_engine(database_url)),
    )


def enqueue_drain(client: RedisClient, tenant: Tenant) -> None:
    from rq import Queue

    Queue(QUEUE, connection=client).enqueue(
        "core.jobs.drain", tenant.account_id, tenant.environment, job_timeout=3600, result_ttl=0, failure_ttl=86400
    )


def ensure_group(client: RedisClient, stream: str) -> None:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class _Lock:
    """The partition's drain lock: SET NX with a token, refreshed per batch, released only by its owner."""

    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
    _REFRESH = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
        "else return 0 end"
    )

    def __init__(self, client: RedisClient, tenant: Tenant) -> None:
        self.client = client
        self.key = DRAIN_LOCK.format(account=tenant.account_id, environment=tenant.environment)
        self.token = uuid.uuid4().hex

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, px=LOCK_MS))

    def refresh(self) -> bool:
        return bool(self.client.eval(self._REFRESH, 1, self.key, self.token, LOCK_MS))

    def release(self) -> None:
        self.client.eval(self._RELEASE, 1, self.key, self.token)


def drain(account_id: str, environment: str, max_batches: int | None = None, budget_s: float = 10.0) -> int:
    """Drain one partition until it is empty; returns how many commands were processed.

    After ``budget_s`` the job hands over to a fresh job, so other partitions get their turn and a worker
    asked to stop (SIGTERM) finishes within one batch.
    """
    rt = runtime()
    tenant = Tenant(account_id, environment)
    lock = _Lock(rt.redis, tenant)
    if not lock.acquire():
        return 0  # another drain owns the partition; it re-checks the stream before it stops
    stream = stream_key(tenant)
    flag = PENDING_DRAIN.format(account=account_id, environment=environment)
    processed = 0
    batches = 0
    started = time.monotonic()
    handed_over = False
    try:
        ensure_group(rt.redis, stream)
        own_pending = True
        while max_batches is None or batches < max_batches:
            if not lock.refresh():
                log.warning("lost the drain lock of %s:%s; stopping", account_id, environment)
                break
            entries = _read(rt.redis, stream, "0" if own_pending else ">")
            if not entries and own_pending:
                own_pending = False
                continue
            if not entries:
                rt.redis.delete(flag)  # appends after this point schedule a new drain; re-check once
                entries = _read(rt.redis, stream, ">")
                if not entries:
                    break
            processed += _process_entries(rt, tenant, stream, entries, lock)
            batches += 1
            if time.monotonic() - started > budget_s:
                handed_over = True
                break
    finally:
        lock.release()
    if handed_over:
        enqueue_drain(rt.redis, tenant)
    return processed


def _read(client: RedisClient, stream: str, start: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    reply = client.xreadgroup(GROUP, CONSUMER, {stream: start}, count=BATCH)
    if not reply:
        return []
    return [(entry_id, fields) for entry_id, fields in reply[0][1] if fields]


def _process_entries(
    rt: Runtime, tenant: Tenant, stream: str, entries: list[tuple[bytes, dict[bytes, bytes]]], lock: _Lock
) -> int:
    ids = [entry_id for entry_id, _ in entries]
    commands: list[Command] = []
    undecodable: list[tuple[bytes, dict[bytes, bytes], str]] = []
    for entry_id, fields in entries:
        try:
            commands.append(command_from_dict(orjson.loads(fields[b"c"])))
        except Exception:
            undecodable.append((entry_id, fields, traceback.format_exc(limit=3)))
    if undecodable:
        for _entry_id, fields, error in undecodable:
            _dead_letter(rt.redis, tenant, fields, error)
        rt.redis.xack(stream, GROUP, *[e for e, _, _ in undecodable])
        bad = {e for e, _, _ in undecodable}
        ids = [i for i in ids if i not in bad]
    if not commands:
        return 0
    try:
        results = _commit_with_backoff(rt, tenant, commands, lock)
    except _PoisonBatch:
        kept = set(ids)
        results = _one_by_one(rt, tenant, commands, [f for e, f in entries if e in kept], lock)
    _park_waiting(rt.redis, tenant, commands, entries, results)  # before the XACK: a crash re-reads them
    rt.redis.xack(stream, GROUP, *ids)  # only after the commit
    publish_results(rt.redis, results)
    return len(commands)


def _park_waiting(client: RedisClient, tenant: Tenant, commands: Sequence[Command],
                  entries: list[tuple[bytes, dict[bytes, bytes]]], results: Sequence[CommandResult]) -> None:
    """API-93: a conversion waiting for its event goes to the partition's waiting set, due again soon.

    The member is the command itself, so parking it twice (a crash before the XACK) keeps one copy. It is
    due every ``EVENT_RETRY_S`` and, at the latest, when its event id turns one hour old; then it is rejected.
    """
    waiting = {r.command_id for r in results if r.status == "waiting"}
    if not waiting:
        return
    raw = {}
    for _entry_id, fields in entries:
        payload = fields.get(b"c", b"")
        raw[orjson.loads(payload).get("id")] = payload
    now = time.time()
    due: dict[bytes, float] = {}
    for command in commands:
        if command.id in waiting and isinstance(command, ConversionCommand) and command.event_id:
            deadline = (id_time(command.event_id) + EVENT_WAIT).timestamp()
            due[raw[command.id]] = min(now + EVENT_RETRY_S, deadline)
    client.zadd(waiting_key(tenant), due)


def release_waiting(client: RedisClient, tenant: Tenant, now: float | None = None) -> int:
    """Move the due waiters back to the end of the partition's log, after anything appended meanwhile."""
    key = waiting_key(tenant)
    members = client.zrangebyscore(key, "-inf", time.time() if now is None else now)
    if not members:
        return 0
    pipe = client.pipeline(transaction=True)  # append and remove together
    for member in members:
        pipe.xadd(stream_key(tenant), {"c": member})
        pipe.zrem(key, member)
    pipe.execute()
    return len(members)


class _PoisonBatch(Exception):
    pass


def _commit(rt: Runtime, tenant: Tenant, commands: Sequence[Command]) -> list[CommandResult]:
    with rt.sessions.begin() as db:
        results = process_batch(db, tenant, commands, replay_safe=True, can_defer=True)
        _record_rejections(db, tenant, results)
    run_followups(db, tenant, refit=lambda t: enqueue_fit(rt.redis, t),  # after the commit
                  retry=lambda t, ids: enqueue_attribution_retries(rt.redis, t, ids),
                  start_batch=lambda t, batch_id: start_batch(rt.sessions, rt.redis, t, batch_id))
    return results


def _commit_with_backoff(
    rt: Runtime, tenant: Tenant, commands: Sequence[Command], lock: _Lock
) -> list[CommandResult]:
    """Q-22: the database being down is waited out; nothing is acknowledged before a commit."""
    delay = 0.25
    attempts_other = 0
    while True:
        try:
            return _commit(rt, tenant, commands)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) in ("40001", "40P01"):
                attempts_other += 1  # deadlock / serialization: just run it again
                if attempts_other < 5:
                    continue
            log.warning("database unavailable (%s); retrying in %.1fs", type(exc.orig).__name__, delay)
            time.sleep(delay)
            delay = min(MAX_BACKOFF_S, delay * 2)
            if not lock.refresh() and not lock.acquire():
                raise
        except Exception as exc:
            log.error("batch of %d commands failed: %r; isolating the failing command", len(commands), exc)
            raise _PoisonBatch() from exc


def _one_by_one(
    rt: Runtime, tenant: Tenant, commands: Sequence[Command], fields: Sequence[dict[bytes, bytes]], lock: _Lock
) -> list[CommandResult]:
    results: list[CommandResult] = []
    for command, raw in zip(commands, fields, strict=True):
        try:
            results.extend(_commit_with_backoff(rt, tenant, [command], lock))
        except _PoisonBatch as exc:
            error = "".join(traceback.format_exception(exc.__cause__ or exc, limit=5))
            _dead_letter(rt.redis, tenant, raw, error)
            results.append(CommandResult(command_id=command.id, status="failed", errors=["processing failed"]))
    return results


def _dead_letter(client: RedisClient, tenant: Tenant, fields: dict[bytes, bytes], error: str) -> None:
    """Failed work stays visible and replayable (``mbuzz dead-letters``), never silently dropped."""
    client.xadd(dead_key(tenant), {"c": fields.get(b"c", b""), "error": error[-4000:],
                                   "failed_at": datetime.now(UTC).isoformat()})
    log.error("command moved to %s: %s", dead_key(tenant), error.splitlines()[-1] if error else "")


def _record_rejections(db: Session, tenant: Tenant, results: Sequence[CommandResult]) -> None:
    """API-93/API-24: a conversion rejected after its answer is recorded, not lost."""
    now = datetime.now(UTC)
    for result in results:
        if result.status == "rejected":
            db.add(Rejection(account_id=tenant.account_id, environment=tenant.environment, id=new_id("rej"),
                             endpoint="conversions", item_index=None, name=result.command_id, errors=result.errors,
                             key_prefix=None, request_id=None, created_at=now))


def sweep(client: RedisClient | None = None) -> int:
    """Schedule a drain for every partition with unacknowledged or unread entries (crash recovery)."""
    client = client or runtime().redis
    scheduled = 0
    for raw in client.smembers(PARTITIONS):
        tenant = partition_of(raw.decode())
        stream = stream_key(tenant)
        if release_waiting(client, tenant):
            enqueue_drain(client, tenant)
            scheduled += 1
            continue
        try:
            groups = client.xinfo_groups(stream)
        except redis.ResponseError:
            continue
        ours = [g for g in groups if g["name"] in (GROUP, GROUP.encode())]
        # no group yet: the stream was never drained; otherwise unacknowledged or unread entries
        if not ours or ours[0].get("pending") or ours[0].get("lag"):
            enqueue_drain(client, tenant)
            scheduled += 1
    return scheduled


def start_sweeper(interval_s: float = float(os.environ.get("MBUZZ_SWEEP_INTERVAL_S", "5"))) -> threading.Thread:
    """A daemon thread in the worker process: picks up partitions a crashed worker left behind, restarts
    stranded reattribution batches (ATT-54), and once an hour enqueues the refits of stale tenants (ATT-31)."""

    def loop() -> None:
        next_maintenance = next_recovery = 0.0
        while True:
            try:
                sweep()
                if time.monotonic() >= next_recovery:  # ATT-54: no batch is left unstarted
                    next_recovery = time.monotonic() + RECOVERY_S
                    recover_batches(runtime().sessions, runtime().redis)
                if time.monotonic() >= next_maintenance:
                    next_maintenance = time.monotonic() + MAINTENANCE_EVERY_S
                    refit_stale_tenants(runtime().sessions, runtime().redis)
            except Exception:  # keep sweeping through Redis and database hiccups
                log.exception("sweep failed")
            time.sleep(interval_s)

    thread = threading.Thread(target=loop, name="mbuzz-sweeper", daemon=True)
    thread.start()
    return thread


def dead_letters(client: RedisClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for raw in client.smembers(PARTITIONS):
        tenant = partition_of(raw.decode())
        for entry_id, fields in client.xrange(dead_key(tenant)):
            out.append({"partition": raw.decode(), "id": entry_id.decode(),
                        "error": fields.get(b"error", b"").decode(errors="replace"),
                        "failed_at": fields.get(b"failed_at", b"").decode(), "command": fields.get(b"c", b"")})
    return out


def replay_dead_letter(client: RedisClient, partition: str, entry_id: str) -> bool:
    tenant = partition_of(partition)
    entries = client.xrange(dead_key(tenant), min=entry_id, max=entry_id)
    if not entries:
        return False
    _, fields = entries[0]
    pipe = client.pipeline(transaction=True)
    pipe.xadd(stream_key(tenant), {"c": fields[b"c"]})
    pipe.xdel(dead_key(tenant), entry_id)
    pipe.execute()
    enqueue_drain(client, tenant)
    return True
