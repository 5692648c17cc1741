"""RQ jobs: draining the Redis command log into the processors (spec README D1/D3; quality.md Q-20..Q-27).

A drain job owns one partition of a tenant's log (docs/pipeline.md Q-3-D1) at a time through a lock with a
token. It first re-reads the entries its consumer left pending (a crashed predecessor's batch), then new
ones, processes each batch in one transaction and acknowledges only after the commit. Replayed commands are
recognised by their command id (``process_batch(..., replay_safe=True)``), so a crash between commit and XACK
doubles nothing.
A database outage is retried with exponential backoff without acknowledging; a command that fails for any
other reason is isolated and moved to the dead-letter stream with its error, never dropped.

Lock waits are bounded (Q-20; docs/pipeline.md Q-20-D2): the batch's transaction waits at most
``CoreSettings.drain_lock_wait`` for any lock (a visitor's advisory lock held by an orphaned session, a row
lock); then the batch goes back to the log untouched and a later drain retries it; nothing is dead-lettered for
it. Acknowledged
entries are deleted from the stream in the same MULTI as the XACK (docs/pipeline.md Q-20-D4), so the log only
keeps what is not yet processed. The worker's background loops survive Redis and database outages with backoff
(``keep_running``; docs/pipeline.md Q-21-D1).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
import redis
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core import rediskeys
from core.channels import device_type, traffic_for
from core.commands import Command, CommandResult, ConversionCommand, EventCommand, TouchCommand, command_from_dict
from core.config import CoreSettings
from core.fitting.tasks import MAINTENANCE_EVERY_S, enqueue_fit, refit_stale_tenants
from core.followups import run_followups
from core.ids import id_time, new_id
from core.processors.batch import process_batch
from core.processors.collector import collector_paused
from core.processors.conversions import EVENT_WAIT
from core.queue import (
    CONSUMER,
    DEAD,
    DRAIN_BUSY,
    DRAIN_LOCK,
    GROUP,
    PARTITIONS,
    PENDING_DRAIN,
    PREFIX,
    WAITING,
    Partition,
    RedisClient,
    acknowledge,
    partition_of,
    publish_results,
    reads_one_visitor_if_unlinked,
    trim_acknowledged,
    unmet_waits,
)
from core.reattribution.tasks import enqueue_attribution_retries, recover_batches, start_batch
from core.storage.db import engine_for, session_factory
from core.storage.models import Rejection, Visitor, VisitorLink
from core.tenant import Tenant

log = logging.getLogger("mbuzz.drain")

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired
MAX_BACKOFF_S = 10.0
LOOP_MAX_BACKOFF_S = 60.0  # background loops retry a failing round at most this far apart
QUEUE = PREFIX  # the RQ queue of this deployment


@dataclass(frozen=True)
class Runtime:
    redis: RedisClient
    sessions: sessionmaker[Session]
    settings: CoreSettings


_SETTINGS: list[CoreSettings] = []  # the worker's settings, handed over by its entry point (use_settings)


def use_settings(settings: CoreSettings | None) -> None:
    """The entry point that read the process's settings (``flask mbuzz worker``) hands them over before any job;
    None forgets them (the next ``runtime()`` reads the environment)."""
    _SETTINGS[:] = [] if settings is None else [settings]
    runtime.cache_clear()


@cache
def runtime() -> Runtime:
    """The worker process's connections, from the settings its entry point handed over (or, in an RQ work horse
    started another way, read from the environment now, once); the classifiers' tables are built now."""
    settings = _SETTINGS[0] if _SETTINGS else CoreSettings.from_env()
    _warm_up()
    return Runtime(
        redis=redis.Redis.from_url(settings.redis_url or "redis://127.0.0.1:6379/0", socket_timeout=10,
                                   health_check_interval=30),
        sessions=session_factory(engine_for(settings)),
        settings=settings,
    )


def _warm_up() -> None:
    """The user-agent parser and the public-suffix list load lazily, on first use (~0.2 s together); a worker
    pays that once at start rather than inside its first batch."""
    device_type("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36")
    traffic_for("https://www.example.com/?utm_source=a&utm_medium=b", "https://www.google.com/")


def enqueue_drain(client: RedisClient, target: Tenant | Partition) -> None:
    from rq import Queue

    partition = target if isinstance(target, Partition) else Partition(target)
    extra: dict[str, Any] = {"partition": partition.index} if partition.index else {}
    if partition.legacy:
        extra["legacy"] = True
    Queue(QUEUE, connection=client).enqueue(
        "core.jobs.drain", args=(partition.tenant.account_id, partition.tenant.environment), kwargs=extra,
        job_timeout=3600, result_ttl=0, failure_ttl=86400,
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

    def __init__(self, client: RedisClient, partition: Partition, ttl_ms: int) -> None:
        self.client = client
        self.key = partition.key(DRAIN_LOCK)
        self.token = uuid.uuid4().hex
        self.ttl_ms = ttl_ms  # MBUZZ_DRAIN_LOCK_MS: a crashed drainer's partition waits this long

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def refresh(self) -> bool:
        return bool(self.client.eval(self._REFRESH, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> None:
        self.client.eval(self._RELEASE, 1, self.key, self.token)


def drain(account_id: str, environment: str, max_batches: int | None = None, budget_s: float = 10.0,
          partition: int = 0, legacy: bool = False) -> int:
    """Drain one partition until it is empty; returns how many commands were processed.

    After ``budget_s`` the job hands over to a fresh job, so other partitions get their turn and a worker
    asked to stop (SIGTERM) finishes within one batch. A command that waits for other partitions (Q-3-D1)
    stops the batch before it until they have processed what it waits for; meanwhile this drain helps drain
    them when no other worker does. ``legacy``: the partition's keys under their names from before the hash tags
    (a backlog left by an older version; docs/scale-out.md, "Upgrading"), drained exactly as that version did.
    """
    rt = runtime()
    part = Partition(Tenant(account_id, environment), partition, legacy)
    if rt.redis.exists(part.key(DRAIN_BUSY)):
        return 0  # a lock wait timed out moments ago: the sweeper schedules the partition again after a pause
    lock = _Lock(rt.redis, part, rt.settings.drain_lock_ms)
    if not lock.acquire():
        return 0  # another drain owns the partition; it re-checks the stream before it stops
    try:
        processed, handed_over, _ = _drain_owned(rt, part, lock, max_batches, time.monotonic() + budget_s)
    finally:
        lock.release()
    if handed_over:
        enqueue_drain(rt.redis, part)
    return processed


def _drain_owned(rt: Runtime, part: Partition, lock: _Lock, max_batches: int | None, deadline: float,
                 helping: bool = False) -> tuple[int, bool, dict[int, str]]:
    """The drain loop of a partition whose lock is held; returns (commands processed, handed over, what its
    first waiting entry waits for when ``helping`` stopped there)."""
    stream = part.stream
    processed = batches = 0
    ensure_group(rt.redis, stream)
    own_pending = True
    while max_batches is None or batches < max_batches:
        if not lock.refresh():
            log.warning("lost the drain lock of %s; stopping", part.name)
            break
        entries = _read(rt.redis, stream, "0" if own_pending else ">", rt.settings.drain_batch)
        if not entries and own_pending:
            own_pending = False
            continue
        if not entries:
            rt.redis.delete(part.key(PENDING_DRAIN))  # appends after this point schedule a new drain; re-check
            entries = _read(rt.redis, stream, ">", rt.settings.drain_batch)
            if not entries:
                break
        try:
            done, blocked = _process_entries(rt, part, entries, lock)
            processed += done
        except _LockBusy as given_back:  # the batch stays pending; the sweeper schedules the retry
            processed += given_back.done
            # other partitions get the workers meanwhile
            rt.redis.set(part.key(DRAIN_BUSY), b"1", px=2 * rt.settings.drain_lock_wait)
            log.warning("a lock of %s stayed busy for %d ms; the batch goes back to the log for a later drain",
                        part.name, rt.settings.drain_lock_wait)
            break
        batches += 1
        if blocked:  # the blocked entry and what follows stay pending: read them again once it may run
            if helping:
                return processed, False, blocked
            own_pending = True
            if not _await_partitions(rt, part, blocked, lock, deadline):
                return processed, True, {}
        elif time.monotonic() > deadline:
            return processed, True, {}
    return processed, False, {}


def _await_partitions(rt: Runtime, part: Partition, blocked: dict[int, str], lock: _Lock, deadline: float) -> bool:
    """Q-3-D1: wait until the other partitions have processed the entries ``blocked`` names; False (after
    scheduling their drains) when the budget ran out first.

    Each round helps: it drains, up to their first waiting entry, the partitions named and those their waiting
    entries name in turn, skipping any another drain owns. Waits only point to entries appended earlier, so the
    earliest waiting entry of the tenant can always run after one such round: rounds always make progress."""
    wanted = [{str(i): e for i, e in blocked.items()}]
    while True:
        missing = unmet_waits(rt.redis, part, wanted)[0]
        if not missing:
            return True
        todo, helped = set(missing), {part.index}
        while todo:
            index = todo.pop()
            helped.add(index)
            todo |= set(_help(rt, part.sibling(index), deadline)) - helped
        missing = unmet_waits(rt.redis, part, wanted)[0]
        if not missing:
            return True
        if time.monotonic() > deadline or not lock.refresh():
            for index in missing:
                enqueue_drain(rt.redis, part.sibling(index))
            return False
        time.sleep(0.05)


def _help(rt: Runtime, part: Partition, deadline: float) -> dict[int, str]:
    """Drain a partition no other drain owns up to its first waiting entry; returns what that entry waits for."""
    if rt.redis.exists(part.key(DRAIN_BUSY)):
        return {}
    lock = _Lock(rt.redis, part, rt.settings.drain_lock_ms)
    if not lock.acquire():
        return {}
    try:
        return _drain_owned(rt, part, lock, None, deadline, helping=True)[2]
    finally:
        lock.release()


def _read(client: RedisClient, stream: str, start: str, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
    while True:
        reply = client.xreadgroup(GROUP, CONSUMER, {stream: start}, count=count)
        if not reply or not reply[0][1]:
            return []
        live = [(entry_id, fields) for entry_id, fields in reply[0][1] if fields]
        gone = [entry_id for entry_id, fields in reply[0][1] if not fields]
        if gone:  # pending, but deleted from the stream by hand: nothing is left to process; clear them
            log.warning("%d pending entries of %s were deleted from the stream; acknowledging them", len(gone), stream)
            client.xack(stream, GROUP, *gone)
        if live or not gone:
            return live


Entries = list[tuple[bytes, dict[bytes, bytes]]]
Decoded = list[tuple[bytes, dict[bytes, bytes], Command]]  # (entry id, fields, command), in log order


def _runnable(rt: Runtime, part: Partition, entries: Entries) -> tuple[Entries, dict[int, str] | None]:
    """The entries before the first one whose wait map (Q-3-D1) is not met yet, and what that one waits for.

    Q-3-D2: an unmet map does not hold back a conversion that reads only its visitor while that visitor has no
    link (``reads_one_visitor_if_unlinked``): nothing this batch has not reached yet could link it either."""
    waits = [(n, _wait_map(fields)) for n, (_, fields) in enumerate(entries) if b"w" in fields]
    if not waits:
        return entries, None
    unmet = [(n, missing) for (n, _), missing in zip(waits, unmet_waits(rt.redis, part, [w for _, w in waits]),
                                                      strict=True) if missing]
    if not unmet:
        return entries, None
    own_visitor = _own_visitor_conversions(entries, [n for n, _ in unmet])
    linked = _linked(rt, part.tenant, set(own_visitor.values())) if own_visitor else set()
    for n, missing in unmet:
        if n not in own_visitor or own_visitor[n] in linked:
            return entries[:n], missing
    return entries, None


def _own_visitor_conversions(entries: Entries, unmet: Sequence[int]) -> dict[int, str]:
    """Entry index → visitor key of the waiting entries (up to the first other one) that are conversions reading
    only their visitor, with no command before them in this batch that could link that visitor (Q-3-D2)."""
    linking: set[str] = set()  # visitor keys that an earlier entry of the batch may link to a user
    found: dict[int, str] = {}
    waiting = set(unmet)
    for n, (_, fields) in enumerate(entries[: max(unmet) + 1]):
        command = _command_or_none(fields)
        key = command.visitor_key if command is not None else None
        if n in waiting:
            if command is None or key is None or key in linking or not reads_one_visitor_if_unlinked(command):
                return found
            found[n] = key
        elif key is not None and not _cannot_link(command):
            linking.add(key)
    return found


def _cannot_link(command: Command | None) -> bool:
    """Events and touches naming no user, and conversions naming only their visitor, never create a link."""
    if isinstance(command, EventCommand | TouchCommand):
        return command.user_key is None and getattr(command, "email_sha256", None) is None
    return command is not None and reads_one_visitor_if_unlinked(command)


def _command_or_none(fields: dict[bytes, bytes]) -> Command | None:
    try:
        return command_from_dict(orjson.loads(fields[b"c"])) if b"c" in fields else None
    except Exception:  # _decode sends it to the dead letters
        return None


def _linked(rt: Runtime, tenant: Tenant, visitor_keys: set[str]) -> set[str]:
    """The visitor keys among ``visitor_keys`` that have a link (any interval); all of them if the database is
    unreachable, so that the entries wait as before."""
    try:
        with rt.sessions() as db:
            return set(db.scalars(
                sa.select(Visitor.visitor_key).join(VisitorLink, sa.and_(
                    VisitorLink.account_id == Visitor.account_id, VisitorLink.environment == Visitor.environment,
                    VisitorLink.visitor_id == Visitor.id,
                )).where(Visitor.account_id == tenant.account_id, Visitor.environment == tenant.environment,
                         Visitor.visitor_key.in_(sorted(visitor_keys)))
            ))
    except OperationalError:
        return visitor_keys


def _wait_map(fields: dict[bytes, bytes]) -> dict[str, str]:
    try:
        wait = orjson.loads(fields[b"w"])
        return {str(k): str(v) for k, v in wait.items()}
    except (orjson.JSONDecodeError, AttributeError):  # only the append script writes it; never block on junk
        log.error("ignoring a malformed wait map %r", fields[b"w"][:200])
        return {}


def _process_entries(rt: Runtime, part: Partition, entries: Entries, lock: _Lock) -> tuple[int, dict[int, str] | None]:
    """Process the batch up to its first entry that must wait for other partitions, then park, acknowledge (and
    delete) and publish; returns (commands processed, what the first waiting entry waits for).

    Raises ``_LockBusy`` when a lock stayed busy: what was finished before is acknowledged, the rest stays
    pending, in order."""
    runnable, blocked = _runnable(rt, part, entries)
    fences = [entry_id for entry_id, fields in runnable if b"c" not in fields and b"w" in fields]
    decoded = _decode(rt.redis, part, [(i, f) for i, f in runnable if b"c" in f or b"w" not in f])
    if not decoded:
        acknowledge(rt.redis, part.stream, fences)
        return 0, blocked
    try:
        try:
            results = _commit_with_backoff(rt, part.tenant, [c for _, _, c in decoded], lock)
        except _PoisonBatch:
            results = _one_by_one(rt, part, decoded, lock)
    except _LockBusy as busy:
        if busy.done:
            _finish(rt, part, decoded[: busy.done], busy.results)
        raise
    _finish(rt, part, decoded, results, fences)
    return len(decoded), blocked


def _decode(client: RedisClient, part: Partition, entries: Entries) -> Decoded:
    """The batch's commands; an entry that is not a command goes to the dead letters at once."""
    decoded: Decoded = []
    for entry_id, fields in entries:
        try:
            decoded.append((entry_id, fields, command_from_dict(orjson.loads(fields[b"c"]))))
        except Exception:
            _dead_letter(client, part, entry_id, fields, traceback.format_exc(limit=3))
    return decoded


def _finish(rt: Runtime, part: Partition, decoded: Decoded, results: Sequence[CommandResult],
            fences: Sequence[bytes] = ()) -> None:
    # before the XACK: a crash re-reads them
    _park_waiting(rt.redis, part, decoded, results, rt.settings.event_wait_retry_s)
    acknowledge(rt.redis, part.stream, [entry_id for entry_id, _, _ in decoded] + list(fences))  # after the commit
    publish_results(rt.redis, results)


def _park_waiting(client: RedisClient, part: Partition, decoded: Decoded, results: Sequence[CommandResult],
                  retry_s: float) -> None:
    """API-93: a conversion waiting for its event goes to the partition's waiting set, due again soon.

    The member is the command itself, so parking it twice (a crash before the XACK) keeps one copy. It is
    due every ``retry_s`` (``MBUZZ_EVENT_WAIT_RETRY_S``) and, at the latest, when its event id turns one hour
    old; then it is rejected.
    """
    waiting = {r.command_id for r in results if r.status == "waiting"}
    if not waiting:
        return
    now = time.time()
    due: dict[bytes, float] = {}
    for _entry_id, fields, command in decoded:
        if command.id in waiting and isinstance(command, ConversionCommand) and command.event_id:
            deadline = (id_time(command.event_id) + EVENT_WAIT).timestamp()
            due[fields[b"c"]] = min(now + retry_s, deadline)
    client.zadd(part.key(WAITING), due)


def release_waiting(client: RedisClient, target: Tenant | Partition, now: float | None = None) -> int:
    """Move the due waiters back to the end of the partition's log, after anything appended meanwhile."""
    part = target if isinstance(target, Partition) else Partition(target)
    key = part.key(WAITING)
    members = client.zrangebyscore(key, "-inf", time.time() if now is None else now)
    if not members:
        return 0
    pipe = client.pipeline(transaction=True)  # append and remove together
    for member in members:
        pipe.xadd(part.stream, {"c": member})
        pipe.zrem(key, member)
    pipe.execute()
    return len(members)


class _PoisonBatch(Exception):
    pass


class _LockBusy(Exception):
    """A lock stayed busy for ``CoreSettings.drain_lock_wait``; ``done`` commands of the batch (with ``results``)
    were finished."""

    def __init__(self, done: int = 0, results: Sequence[CommandResult] = ()) -> None:
        super().__init__(f"lock busy after {done} command(s)")
        self.done = done
        self.results = list(results)


def _bound_lock_waits(db: Session, wait_ms: int) -> None:
    """Q-20: no statement of the batch's transaction waits longer than ``wait_ms`` for a lock."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(sa.text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": f"{wait_ms}ms"})


def _commit(rt: Runtime, tenant: Tenant, commands: Sequence[Command]) -> list[CommandResult]:
    with collector_paused(), rt.sessions.begin() as db:
        _bound_lock_waits(db, rt.settings.drain_lock_wait)
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
            sqlstate = getattr(exc.orig, "sqlstate", None)
            if sqlstate == LOCK_NOT_AVAILABLE:  # rolled back: give the batch back rather than wait here
                raise _LockBusy() from exc
            if sqlstate in ("40001", "40P01"):
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


def _one_by_one(rt: Runtime, part: Partition, decoded: Decoded, lock: _Lock) -> list[CommandResult]:
    results: list[CommandResult] = []
    for done, (entry_id, fields, command) in enumerate(decoded):
        try:
            results.extend(_commit_with_backoff(rt, part.tenant, [command], lock))
        except _PoisonBatch as exc:
            error = "".join(traceback.format_exception(exc.__cause__ or exc, limit=5))
            _dead_letter(rt.redis, part, entry_id, fields, error)
            results.append(CommandResult(command_id=command.id, status="failed", errors=["processing failed"]))
        except _LockBusy as busy:
            raise _LockBusy(done, results) from busy
    return results


def _dead_letter(client: RedisClient, part: Partition, entry_id: bytes, fields: dict[bytes, bytes],
                 error: str) -> None:
    """Failed work stays visible and replayable (``mbuzz dead-letters``), never silently dropped.

    The dead letter keeps the command itself (its log entry is deleted) and where it came from; it is written,
    and the entry acknowledged and deleted, in one MULTI, so a crash can neither lose it nor write it twice.
    """
    letter = {"c": fields.get(b"c", b""), "error": error[-4000:], "failed_at": datetime.now(UTC).isoformat(),
              "log_id": entry_id}
    dead = part.key(DEAD)
    acknowledge(client, part.stream, [entry_id], also=lambda pipe: pipe.xadd(dead, letter))
    log.error("command moved to %s: %s", dead, error.splitlines()[-1] if error else "")


def _record_rejections(db: Session, tenant: Tenant, results: Sequence[CommandResult]) -> None:
    """API-93/API-24: a conversion rejected after its answer is recorded, not lost."""
    now = datetime.now(UTC)
    for result in results:
        if result.status == "rejected":
            db.add(Rejection(account_id=tenant.account_id, environment=tenant.environment, id=new_id("rej"),
                             endpoint="conversions", item_index=None, name=result.command_id, errors=result.errors,
                             key_prefix=None, request_id=None, created_at=now))


def sweep(client: RedisClient | None = None) -> int:
    """Schedule a drain for every partition with unacknowledged or unread entries (crash recovery), and trim
    what an older version left acknowledged in the log. Streams an older version named without the hash tag are
    drained alike and deleted once drained (core.rediskeys; docs/scale-out.md, "Upgrading")."""
    client = client or runtime().redis
    scheduled = 0
    parts = [partition_of(raw.decode()) for raw in client.smembers(PARTITIONS)]
    for part in parts + rediskeys.legacy_partitions(client, parts):
        if _sweep_partition(client, part):
            enqueue_drain(client, part)
            scheduled += 1
        elif part.legacy:
            rediskeys.drop_if_drained(client, part)
    return scheduled


def _sweep_partition(client: RedisClient, part: Partition) -> bool:
    """True when the partition needs a drain."""
    if release_waiting(client, part):
        return True
    stream = part.stream
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:  # no stream
        return False
    ours = next((g for g in groups if g["name"] in (GROUP, GROUP.encode())), None)
    if ours is None:  # the stream was never drained
        return True
    lag = ours.get("lag")
    if lag is None or client.xlen(stream) > ours.get("pending", 0) + lag:  # acknowledged entries left behind
        trim_acknowledged(client, stream, ours["last-delivered-id"])
    return bool(ours.get("pending")) or _has_unread(client, stream, ours)


def _has_unread(client: RedisClient, stream: str, group: dict[str, Any]) -> bool:
    lag = group.get("lag")
    if lag is not None:
        return bool(lag)
    # Redis < 7, or a lag Redis cannot tell: anything appended after the last entry delivered to the group?
    return bool(client.xinfo_stream(stream)["last-generated-id"] != group["last-delivered-id"])


Step = tuple[str, Callable[[], object]]  # (what it does, for the log; the work)


def keep_running(steps: Sequence[Step], interval_s: float, *, sleep: Callable[[float], object] = time.sleep,
                 rounds: int | None = None) -> None:
    """Q-21: run every step each ``interval_s``, for ever. A failing step (Redis or the database away) is logged
    and does not stop the others; after a round with a failure the next round comes after a doubling pause,
    at most ``LOOP_MAX_BACKOFF_S`` (or ``interval_s`` when longer); a good round restores the interval.
    ``rounds`` bounds the loop for tests."""
    pause = interval_s
    done = 0
    while rounds is None or done < rounds:
        done += 1
        failed = False
        for label, step in steps:
            try:
                step()
            except Exception:  # keep going through Redis and database outages
                log.exception("%s failed; the next attempt in %.1f s", label, pause)
                failed = True
        sleep(pause if failed else interval_s)
        pause = min(max(LOOP_MAX_BACKOFF_S, interval_s), pause * 2) if failed else interval_s


def start_sweeper() -> threading.Thread:
    """A daemon thread in the worker process: picks up partitions a crashed worker left behind, restarts
    stranded reattribution batches (ATT-54), and once an hour enqueues the refits of stale tenants (ATT-31)."""
    next_run = {"recovery": 0.0, "maintenance": 0.0}

    def recover() -> None:
        if time.monotonic() >= next_run["recovery"]:  # ATT-54: no batch is left unstarted
            recover_batches(runtime().sessions, runtime().redis, runtime().settings.batch_recovery_s)
            next_run["recovery"] = time.monotonic() + runtime().settings.batch_recovery_s

    def refit() -> None:
        if time.monotonic() >= next_run["maintenance"]:
            refit_stale_tenants(runtime().sessions, runtime().redis)
            next_run["maintenance"] = time.monotonic() + MAINTENANCE_EVERY_S

    steps = [("sweep", sweep), ("batch recovery", recover), ("refit of stale tenants", refit)]
    thread = threading.Thread(target=keep_running, args=(steps, runtime().settings.sweep_interval_s),
                              name="mbuzz-sweeper", daemon=True)
    thread.start()
    return thread


def dead_letters(client: RedisClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for raw in client.smembers(PARTITIONS):
        for entry_id, fields in client.xrange(partition_of(raw.decode()).key(DEAD)):
            out.append({"partition": raw.decode(), "id": entry_id.decode(),
                        "error": fields.get(b"error", b"").decode(errors="replace"),
                        "failed_at": fields.get(b"failed_at", b"").decode(), "command": fields.get(b"c", b"")})
    return out


def replay_dead_letter(client: RedisClient, partition: str, entry_id: str) -> bool:
    part = partition_of(partition)
    entries = client.xrange(part.key(DEAD), min=entry_id, max=entry_id)
    if not entries:
        return False
    _, fields = entries[0]
    pipe = client.pipeline(transaction=True)
    pipe.xadd(part.stream, {"c": fields[b"c"]})
    pipe.xdel(part.key(DEAD), entry_id)
    pipe.execute()
    enqueue_drain(client, part)
    return True
