"""Keys named before the hash tags: drained, moved and removed after an upgrade (docs/scale-out.md, "Upgrading").

Every key of a tenant's log now carries the tenant's hash tag (``<prefix>:log:{acct:env}``, core.queue), so that
one append script, one ``MULTI`` or one drain touches a single Redis Cluster slot. Before, the same keys were named
without the braces (``<prefix>:log:acct:env``): a deployment upgraded with a backlog holds entries, dead letters,
waiting conversions and idempotency reservations under those *legacy* names, and nothing of it may be lost (D1/D3:
a command acknowledged to a client is processed; API-55: a reservation deduplicates for its lifetime).

- Streams and waiting sets: the workers' sweeper (``core.jobs.sweep``) looks for the legacy stream and waiting set
  of every registered partition and drains them exactly as the older version did (same lock name, same consumer
  group, wait maps naming legacy streams), then deletes a legacy stream once it is empty with nothing pending.
  Old and new workers can run side by side: both take the legacy lock for a legacy stream.
- Dead letters, waiting sets and idempotency reservations: ``migrate_legacy`` (``mbuzz migrate-redis-keys``)
  moves them under the new names (a dead letter keeps its fields, a reservation its value and lifetime).

Moving keys between names is for the single Redis server the older version ran on: do it before moving to a
Cluster, where the legacy names (no tag) would sit in other slots. Nothing here runs on the request path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from core.queue import DEAD, GROUP, PARTITIONS, PREFIX, WAITING, Partition, RedisClient, idempotency_key, partition_of
from core.tenant import ENVIRONMENTS, Tenant

_CHUNK = 500
# Deletes a stream only when it holds no entry and its group has nothing pending (single key: any slot).
_DROP_IF_DRAINED = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('XLEN', KEYS[1]) > 0 then return 0 end
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1])
if ok and tonumber(pending[1]) > 0 then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""


def legacy_partitions(client: RedisClient, parts: Sequence[Partition]) -> list[Partition]:
    """The legacy-named partitions among ``parts`` that still hold a stream or a waiting set (one round trip)."""
    if not parts:
        return []
    pipe = client.pipeline(transaction=False)
    legacy = [Partition(p.tenant, p.index, legacy=True) for p in parts if not p.legacy]
    for part in legacy:  # one key per command: legacy names have no tag (any slot)
        pipe.exists(part.stream)
        pipe.exists(part.key(WAITING))
    found = pipe.execute()
    return [part for n, part in enumerate(legacy) if found[2 * n] or found[2 * n + 1]]


def drop_if_drained(client: RedisClient, part: Partition) -> bool:
    """Delete a legacy stream that is empty with nothing pending; an older web process appending afterwards
    creates it again, and the sweeper finds it again."""
    return bool(client.eval(_DROP_IF_DRAINED, 1, part.stream, GROUP))


@dataclass
class Report:
    dead_letters: int = 0  # moved to the new dead-letter streams
    waiting: int = 0  # waiting conversions moved to the new waiting sets
    idempotency: int = 0  # reservations renamed (a reservation made since under the new name wins)
    streams_dropped: int = 0  # legacy streams deleted, drained
    entries_left: int = 0  # entries still in legacy streams: the workers drain them (run again to follow up)


def migrate_legacy(client: RedisClient) -> Report:
    """Move every legacy key of the log under its new name, except stream entries (the workers drain those in
    order); idempotent, safe while web processes and workers of either version run."""
    report = Report()
    parts = [partition_of(raw.decode()) for raw in client.smembers(PARTITIONS)]
    for part in [Partition(p.tenant, p.index, legacy=True) for p in parts]:
        report.dead_letters += _move_dead_letters(client, part)
        report.waiting += _move_waiting(client, part)
        if drop_if_drained(client, part):
            report.streams_dropped += 1
        else:
            report.entries_left += int(client.xlen(part.stream)) if client.exists(part.stream) else 0
    report.idempotency = _move_reservations(client)
    return report


def _move_dead_letters(client: RedisClient, legacy: Partition) -> int:
    """Each dead letter is re-added (fields intact, ``log_id`` included) and deleted from the old stream in one
    MULTI, so it is never lost nor listed twice."""
    source, target = legacy.key(DEAD), Partition(legacy.tenant, legacy.index).key(DEAD)
    moved = 0
    while entries := client.xrange(source, count=_CHUNK):
        pipe = client.pipeline(transaction=True)
        for _entry_id, fields in entries:
            pipe.xadd(target, fields)
        pipe.xdel(source, *[entry_id for entry_id, _ in entries])
        pipe.execute()
        moved += len(entries)
    client.eval(_DROP_IF_DRAINED, 1, source, GROUP)  # an emptied stream stays until deleted
    return moved


def _move_waiting(client: RedisClient, legacy: Partition) -> int:
    """A waiting conversion keeps its due time; ZADD and ZREM of the same members in one MULTI."""
    source, target = legacy.key(WAITING), Partition(legacy.tenant, legacy.index).key(WAITING)
    moved = 0
    while members := client.zrange(source, 0, _CHUNK - 1, withscores=True):
        pipe = client.pipeline(transaction=True)
        pipe.zadd(target, dict(members))
        pipe.zrem(source, *[member for member, _ in members])
        pipe.execute()
        moved += len(members)
    return moved


def _new_reservation_name(key: bytes) -> str | None:
    """``<prefix>:idem:acct:env:scope:key`` → ``<prefix>:idem:{acct:env}:scope:key``; None for a new name."""
    rest = key.decode(errors="replace")[len(PREFIX) + len(":idem:"):]
    if rest.startswith("{"):
        return None
    account, _, rest = rest.partition(":")
    environment, _, rest = rest.partition(":")
    scope, _, value = rest.partition(":")
    if not account or environment not in ENVIRONMENTS or not scope:
        return None
    return idempotency_key(Tenant(account, environment), scope, value)


def _escape_glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _move_reservations(client: RedisClient) -> int:
    """RENAMENX keeps the reservation's value (the original command id) and its lifetime; when the new name was
    reserved since, that one is what the edge answered with, so the legacy one goes."""
    moved = 0
    for key in client.scan_iter(match=_escape_glob(PREFIX) + ":idem:*", count=1000):
        target = _new_reservation_name(key)
        if target is None:
            continue
        try:
            renamed = client.renamenx(key, target)
        except redis.ResponseError:  # expired since the scan
            continue
        if renamed:
            moved += 1
        else:
            client.delete(key)
    return moved
