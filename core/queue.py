"""The queued backend of the command log: one Redis stream per (account, environment) (spec README D1, D3).

The edge appends a request's commands with one Lua script, so they are durable together or not at all (API-66);
drain jobs (``core.jobs``) read them through a consumer group, process them in order and acknowledge only after
the database commit. The same script reserves the idempotency keys with ``SET NX`` before the XADDs (API-55), so
of concurrent duplicates exactly one is the original, and can admit the request first (core.admission): one
round trip per request (issue 17).

The log keeps only what is not yet processed (docs/pipeline.md Q-20-D4): an acknowledged entry is deleted in the
same MULTI as its XACK (Redis 7.0 has no XACKDEL), and ``trim_acknowledged`` trims what older versions left
below the oldest entry still pending or unread. An entry that is unread, or pending for any consumer, is never
removed; a dead letter carries its own copy of the command.

A tenant's log can have several partitions (docs/pipeline.md Q-3-D1, ``MBUZZ_LOG_PARTITIONS``), so that several
workers drain one big tenant at once. Partition 0's keys have no suffix; partition ``i > 0`` adds
``#i`` to each key. A command goes to the partition of its visitor (a hash of the visitor key, or of the
synthetic visitor of its user, VIS-4), so one visitor's commands stay in log order in one partition. A command
that reads across visitors (identify, conversions, adjustments, links, redactions, events named only by a user)
carries a *wait map* (field ``w``): for every other partition, the last entry that partition held when it was
appended. The drain runs it only once those entries are gone, that is processed, so it sees everything appended
before it, as with one partition. A redaction also leaves a *fence* (an entry with only ``w``) in every other
partition, so nothing appended after it is processed before it. Waits point only to entries appended earlier,
so they can never form a cycle.

Every key of one tenant's log carries the tenant's hash tag ``{account:environment}`` (docs/scale-out.md), so all
the keys one append script, one ``MULTI`` or one drain touches — streams of every partition, drain triggers,
idempotency reservations, dead letters, waiting set — hash to one Redis Cluster slot. The registry of partitions
(``PARTITIONS``, one global set read by the sweeps) is written in its own round trip before the append, at most
once a minute per process and tenant. Keys named before the tags (*legacy* names: the same names without the
braces) are drained and moved by ``core.jobs`` and ``core.rediskeys`` (docs/scale-out.md, "Upgrading").
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson
import redis

from core.admission import LUA_ADMIT, Admission, outcome
from core.commands import (
    Command,
    CommandResult,
    ConversionCommand,
    EventCommand,
    RedactCommand,
    TouchCommand,
    command_to_dict,
)
from core.processors.context import synthetic_visitor_key
from core.ratewindow import LUA_WINDOW, Verdict
from core.tenant import Tenant

# redis-py types every reply as a union of all its shapes; replies are checked by use, not by mypy.
RedisClient: TypeAlias = Any

# Every key lives under one prefix, so several deployments (or test runs) can share a Redis server.
PREFIX = os.environ.get("MBUZZ_REDIS_PREFIX", "mbuzz")
if "{" in PREFIX or "}" in PREFIX:  # the first {...} of a key is its Redis Cluster hash tag: the tenant's
    raise ValueError("MBUZZ_REDIS_PREFIX must not contain '{' or '}'")
# The tenant's hash tag: every key below that names a tenant holds it, so they share one Cluster slot.
_TAG = "{{{account}:{environment}}}"
STREAM = PREFIX + ":log:" + _TAG
DEAD = PREFIX + ":dead:" + _TAG
WAITING = PREFIX + ":waiting:" + _TAG  # API-93: conversions waiting for their event (ZSET)
PARTITIONS = PREFIX + ":partitions"  # set of "account:environment" with a stream, for sweeps (global: own round trip)
GROUP = "drain"
CONSUMER = "drainer"  # one consumer per partition at a time (the drain lock), so one fixed name
RESULT = PREFIX + ":result:{command_id}"
PENDING_DRAIN = PREFIX + ":drain-pending:" + _TAG
DRAIN_LOCK = PREFIX + ":drain-lock:" + _TAG
DRAIN_BUSY = PREFIX + ":drain-busy:" + _TAG  # a lock wait timed out moments ago (Q-20-D2)
IDEMPOTENCY = PREFIX + ":idem:" + _TAG + ":{scope}:{key}"
REGISTER_EVERY_S = 60.0  # how often a process re-adds a tenant's partitions to PARTITIONS (a flushed set heals)
IDEMPOTENCY_TTL_S = 7 * 86400  # older replays are still deduplicated by the database (docs/api.md API-51-D1)
RESULT_TTL_S = 120
DEBOUNCE_MS = 50


def hash_tag(tenant: Tenant) -> str:
    """``{account:environment}``: the part of every key of the tenant's log that Redis Cluster hashes."""
    return _TAG.format(account=tenant.account_id, environment=tenant.environment)


def idempotency_key(tenant: Tenant, scope: str, key: str) -> str:
    """API-55: the reservation of an idempotency key, in the tenant's slot."""
    return IDEMPOTENCY.format(account=tenant.account_id, environment=tenant.environment, scope=scope, key=key)


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of a tenant's log: its stream, dead letters, waiting set, drain lock and flags.

    ``legacy``: the same keys under the names used before the hash tags (the braces removed), which a deployment
    upgraded with a backlog still holds; the workers drain them as before (docs/scale-out.md, "Upgrading")."""

    tenant: Tenant
    index: int = 0
    legacy: bool = False

    @property
    def name(self) -> str:
        """``account:environment`` (partition 0) or ``account:environment#i``: a member of ``PARTITIONS``."""
        base = f"{self.tenant.account_id}:{self.tenant.environment}"
        return base if self.index == 0 else f"{base}#{self.index}"

    def key(self, template: str) -> str:
        base = template.format(account=self.tenant.account_id, environment=self.tenant.environment)
        if self.legacy:
            tag = hash_tag(self.tenant)
            base = base.replace(tag, tag[1:-1], 1)
        return base if self.index == 0 else f"{base}#{self.index}"

    def sibling(self, index: int) -> Partition:
        """Another partition of the same tenant, named alike (legacy or not)."""
        return Partition(self.tenant, index, self.legacy)

    @property
    def stream(self) -> str:
        return self.key(STREAM)


def stream_key(tenant: Tenant, index: int = 0) -> str:
    return Partition(tenant, index).key(STREAM)


def dead_key(tenant: Tenant, index: int = 0) -> str:
    return Partition(tenant, index).key(DEAD)


def waiting_key(tenant: Tenant, index: int = 0) -> str:
    return Partition(tenant, index).key(WAITING)


def partition_of(name: str) -> Partition:
    base, _, index = name.partition("#")
    account, _, environment = base.rpartition(":")
    return Partition(Tenant(account, environment), int(index or 0))


# How a command is ordered against the other partitions of its tenant (module docstring).
LOCAL, AFTER_EARLIER, FENCE = 0, 1, 2


def ordering_of(command: Command) -> int:
    """Events and touches of a named visitor need only their visitor's order; what reads across visitors waits
    for everything appended before it; a redaction also holds back everything appended after it."""
    if isinstance(command, EventCommand | TouchCommand) and command.visitor_key is not None:
        return LOCAL
    return FENCE if isinstance(command, RedactCommand) else AFTER_EARLIER


def reads_one_visitor_if_unlinked(command: Command) -> bool:
    """A conversion naming only its visitor (no user, identifier, event or idempotency key) reads only that
    visitor's rows while the visitor has no link (attribution.md ATT-5, ATT-7, ATT-43): its sessions, its
    conversions and its links all come from commands naming its key, which its own partition holds in order.
    The drain lets such a conversion skip its wait map when it finds no link (``core.jobs``, Q-3-D2)."""
    return (isinstance(command, ConversionCommand) and command.visitor_key is not None and command.user_key is None
            and command.email_sha256 is None and command.event_id is None and command.idempotency_key is None)


def partition_index(command: Command, count: int) -> int:
    """The visitor's partition (a stable hash: every process routes a visitor alike); partition 0 for commands
    that name neither a visitor nor a user."""
    if count <= 1:
        return 0
    key = command.visitor_key
    if key is None:
        user_key = getattr(command, "user_key", None)
        if user_key is None:
            return 0
        key = synthetic_visitor_key(user_key)
    return zlib.crc32(key.encode()) % count


def _scope_key(command: Command) -> tuple[str, str] | None:
    if isinstance(command, EventCommand) and command.idempotency_key is not None:
        return "event", command.idempotency_key
    if isinstance(command, ConversionCommand) and command.idempotency_key is not None:
        return "conversion", command.idempotency_key
    return None


# The append (module docstring), atomic as one Lua script: an optional admission prologue (core.admission), the
# idempotency reservations (API-55), the XADDs with their wait maps and fences, and the debounced drain triggers.
# KEYS: the partitions' streams in index order, the partitions' pending-drain flags in index order, the k idempotency
# keys — all in the tenant's hash slot — then (with admission) Admission.keys(), which name the API key and the
# client's address, not the tenant (docs/scale-out.md). ARGV: n, the flags' lifetime in ms, k, admission (0/1), the
# keys' lifetime in s, (with admission) Admission.args(), then (partition, ordering, key slot or 0, command id,
# command) per command. A wait map names partitions by index. The registry (PARTITIONS) is written before, apart.
# Returns {admission reply, the original id per command ('' when appended now), the partitions whose drain job is
# to be enqueued (their pending-drain flag was not set)}; nothing is written when the prologue refuses. The
# shebang makes Redis refuse the whole script up front when it is out of memory (no half-written request).
_APPEND = "#!lua\n" + LUA_WINDOW + LUA_ADMIT + """
local n, k, admitting = tonumber(ARGV[1]), tonumber(ARGV[3]), ARGV[4] == '1'
local first = 6
local admitted = {'ok'}
if admitting then
  admitted = admit(2 * n + k + 1, first)
  if admitted[1] ~= 'ok' then return {admitted, {}, {}} end
  first = first + 9
end
local originals, touched, appended = {}, {}, false
for i = first, #ARGV, 5 do
  local slot = tonumber(ARGV[i + 2])
  local original = ''
  if slot > 0 then
    local key = KEYS[2 * n + slot]
    if not redis.call('SET', key, ARGV[i + 3], 'NX', 'EX', ARGV[5]) then original = redis.call('GET', key) end
  end
  originals[#originals + 1] = original
  if original == '' then
    local p = tonumber(ARGV[i]) + 1
    local ordering = tonumber(ARGV[i + 1])
    local fields = {'c', ARGV[i + 4]}
    touched[p] = true
    appended = true
    if ordering > 0 then
      local wait, any = {}, false
      for q = 1, n do
        if q ~= p then
          local last = redis.call('XREVRANGE', KEYS[q], '+', '-', 'COUNT', 1)
          if #last > 0 then wait[tostring(q - 1)] = last[1][1]; any = true end
        end
      end
      if any then fields[3] = 'w'; fields[4] = cjson.encode(wait) end
    end
    local id = redis.call('XADD', KEYS[p], '*', unpack(fields))
    if ordering == 2 then
      local fence = cjson.encode({[tostring(p - 1)] = id})
      for q = 1, n do
        if q ~= p then redis.call('XADD', KEYS[q], '*', 'w', fence); touched[q] = true end
      end
    end
  end
end
local due = {}
for q = 1, n do
  if touched[q] and redis.call('SET', KEYS[n + q], '1', 'NX', 'PX', ARGV[2]) then due[#due + 1] = q - 1 end
end
return {admitted, originals, due}
"""


def unmet_waits(client: RedisClient, where: Tenant | Partition,
                waits: Sequence[dict[str, str]]) -> list[dict[int, str]]:
    """For each wait map, the entries it names that are still in their partition's log (not processed yet);
    one pipelined round trip for all of them. An entry leaves the log only when it is acknowledged. A map read
    from a legacy-named stream (``where`` a legacy partition) names legacy-named streams."""
    part = where if isinstance(where, Partition) else Partition(where)
    pipe = client.pipeline(transaction=False)
    asked: list[tuple[int, int, str]] = []
    for n, wait in enumerate(waits):
        for name, entry_id in wait.items():
            pipe.xrange(part.sibling(int(name)).stream, min=entry_id, max=entry_id, count=1)
            asked.append((n, int(name), entry_id))
    unmet: list[dict[int, str]] = [{} for _ in waits]
    for (n, index, wanted), found in zip(asked, pipe.execute() if asked else [], strict=True):
        if found:
            unmet[n][index] = wanted
    return unmet


@dataclass
class QueuedAppend:
    results: list[CommandResult]
    appended: list[Command]
    verdict: Verdict | None = None  # the admission's rate-limit figures (API-140), when it counted one


class RedisStreamLog:
    """Appends to Redis; ``wait`` collects processed results for the read-your-writes answers (API-62)."""

    mode = "queued"

    def __init__(self, client: RedisClient, enqueue_drain: Any, partitions: int = 1) -> None:
        self._redis = client
        self._enqueue_drain = enqueue_drain  # (Partition) -> None
        self.partitions = max(1, partitions)
        self._append_script = client.register_script(_APPEND)
        self._registered: dict[tuple[Tenant, int], float] = {}  # (tenant, partitions) -> monotonic time of SADD

    def register(self, tenant: Tenant) -> None:
        """Add the tenant's partitions to ``PARTITIONS`` (the sweeps' registry), before anything is appended to
        them, so a stream with entries is always registered. The set is global (another Cluster slot than the
        tenant's), so this is its own round trip, repeated at most every ``REGISTER_EVERY_S`` per process."""
        now = time.monotonic()
        marker = (tenant, self.partitions)
        if now - self._registered.get(marker, -REGISTER_EVERY_S) < REGISTER_EVERY_S:
            return
        self._redis.sadd(PARTITIONS, *(Partition(tenant, i).name for i in range(self.partitions)))
        if len(self._registered) >= 100_000:
            self._registered.clear()
        self._registered[marker] = now

    def append(self, tenant: Tenant, commands: Sequence[Command], admission: Admission | None = None) -> QueuedAppend:
        """Admit (when asked), reserve keys and XADD in one atomic script, then schedule a drain. Raises
        ``NotAdmitted`` when the admission refuses (nothing written), ``redis.RedisError`` when Redis is down."""
        if commands:
            self.register(tenant)
        admitted, originals, due = self._append_script(*self._script_input(tenant, commands, admission))
        verdict = outcome(admitted) if admission is not None else None
        results: list[CommandResult] = []
        fresh: list[Command] = []
        for command, original in zip(commands, originals, strict=True):
            if original:
                results.append(CommandResult(command_id=command.id, status="duplicate", result_id=original.decode()))
                continue
            fresh.append(command)
            results.append(CommandResult(command_id=command.id, status="queued", result_id=command.id))
        try:
            for index in due:
                self._enqueue_drain(Partition(tenant, int(index)))
        except redis.RedisError:
            pass  # the commands are durable in the stream; the workers' sweeper schedules the drain
        return QueuedAppend(results=results, appended=fresh, verdict=verdict)

    def _script_input(self, tenant: Tenant, commands: Sequence[Command],
                      admission: Admission | None) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of ``_APPEND``. API-51/52: a command's idempotency key is its slot among the keys; Redis
        reserves them in order, so a key used twice in one request is a duplicate of its first use."""
        parts = [Partition(tenant, i) for i in range(self.partitions)]
        keys = [p.stream for p in parts] + [p.key(PENDING_DRAIN) for p in parts]
        rows: list[Any] = []
        idempotency: list[str] = []
        for command in commands:
            scoped = _scope_key(command)
            if scoped is not None:
                idempotency.append(idempotency_key(tenant, *scoped))
            rows += [partition_index(command, self.partitions), ordering_of(command),
                     len(idempotency) if scoped is not None else 0, command.id,
                     orjson.dumps(command_to_dict(command))]
        args: list[Any] = [self.partitions, DEBOUNCE_MS * 20, len(idempotency), 0 if admission is None else 1,
                           IDEMPOTENCY_TTL_S]
        keys += idempotency
        if admission is not None:
            keys += admission.keys()
            args += admission.args(tenant)
        return keys, args + rows

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
