"""Every multi-key operation of the command log stays in one Redis Cluster slot (issue 18 item 9;
docs/scale-out.md), and keys named before the hash tags lose nothing after an upgrade (core/rediskeys.py).

Against real Redis: the commands the code actually sends are recorded (the client's ``execute_command`` and its
pipelines), and the keys of each script call and each ``MULTI`` must hash to one slot.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from redis.crc import key_slot

from core import jobs, rediskeys
from core.admission import Admission
from core.commands import ConversionCommand, EventCommand, RedactCommand
from core.ids import new_id
from core.queue import (
    DEAD,
    DRAIN_BUSY,
    DRAIN_LOCK,
    GROUP,
    PARTITIONS,
    PENDING_DRAIN,
    PREFIX,
    STREAM,
    WAITING,
    Partition,
    RedisStreamLog,
    acknowledge,
    hash_tag,
    idempotency_key,
    partition_index,
    partition_of,
)
from core.ratewindow import Window
from core.storage import models as m
from core.tenant import Tenant
from tests.conftest import new_account
from tests.integration.processes import queued_redis_url

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
KINDS = (STREAM, DEAD, WAITING, PENDING_DRAIN, DRAIN_LOCK, DRAIN_BUSY)


def slot(key: str | bytes) -> int:
    return int(key_slot(key.encode() if isinstance(key, str) else key))


def _tenant(environment: str = "test") -> Tenant:
    return Tenant(f"acct_{uuid.uuid4().hex[:12]}", environment)


def _event(visitor: str, key: str | None = None) -> EventCommand:
    return EventCommand(id=new_id("evt", T0), event_type="page_view", occurred_at=T0, received_at=T0,
                        visitor_key=visitor, idempotency_key=key, url="https://shop.example/")


def _conversion(user: str) -> ConversionCommand:
    return ConversionCommand(id=new_id("conv", T0), conversion_type="purchase", received_at=T0, converted_at=T0,
                             user_key=user, revenue_minor=1000, idempotency_key=f"order-{user}")


# ------------------------------------------------------------------------------------------------ key names


@pytest.mark.parametrize("count", [1, 4, 64])
def test_every_key_of_a_tenants_log_shares_the_tenants_slot(count: int) -> None:
    for tenant in (_tenant(), _tenant("live")):
        wanted = slot(hash_tag(tenant)[1:-1])
        keys = [Partition(tenant, i).key(kind) for i in range(count) for kind in KINDS]
        keys += [idempotency_key(tenant, scope, value)
                 for scope in ("event", "conversion") for value in ("k", "a}b{c", "{other}", "")]
        assert {slot(k) for k in keys} == {wanted}, keys
        assert all(k.startswith(PREFIX + ":") for k in keys)


def test_legacy_names_are_the_names_before_the_tags() -> None:
    tenant = Tenant("acct_1", "live")
    assert Partition(tenant).stream == f"{PREFIX}:log:{{acct_1:live}}"
    assert Partition(tenant, 3, legacy=True).stream == f"{PREFIX}:log:acct_1:live#3"
    assert Partition(tenant, 0, legacy=True).key(DRAIN_LOCK) == f"{PREFIX}:drain-lock:acct_1:live"
    assert partition_of(Partition(tenant, 3).name) == Partition(tenant, 3)


# ------------------------------------------------------------------------------------------------ recorded traffic


def keys_of(args: tuple[Any, ...]) -> list[Any]:
    """The keys of one command as sent (the commands the log and the drain use)."""
    name = str(args[0]).upper()
    if name in ("EVAL", "EVALSHA"):
        return list(args[3:3 + int(args[2])])
    if name in ("MGET", "DEL", "EXISTS", "UNLINK"):
        return list(args[1:])
    if name in ("XREADGROUP", "XREAD"):
        rest = list(args[list(map(str, args)).index("STREAMS") + 1:])
        return rest[:len(rest) // 2]
    return [args[1]] if len(args) > 1 else []


class Recorder:
    """Wraps a real client: every command and every pipeline it sends, grouped as sent."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.sent: list[tuple[str, list[tuple[Any, ...]]]] = []  # ("call" | "multi" | "pipeline", commands)
        send, pipeline = client.execute_command, client.pipeline

        def execute_command(*args: Any, **options: Any) -> Any:
            self.sent.append(("call", [args]))
            return send(*args, **options)

        def recording_pipeline(transaction: bool = True, shard_hint: Any = None) -> Any:
            pipe = pipeline(transaction=transaction, shard_hint=shard_hint)
            run = pipe.execute

            def execute(raise_on_error: bool = True) -> Any:
                self.sent.append(("multi" if transaction else "pipeline", [a for a, _ in pipe.command_stack]))
                return run(raise_on_error)

            pipe.execute = execute
            return pipe

        client.execute_command = execute_command  # type: ignore[method-assign]
        client.pipeline = recording_pipeline  # type: ignore[method-assign]

    def atomic_groups(self) -> list[list[Any]]:
        """The keys of every script call and every MULTI: what Redis Cluster needs in one slot."""
        groups = []
        for kind, commands in self.sent:
            if kind == "multi" or str(commands[0][0]).upper() in ("EVAL", "EVALSHA"):
                groups.append([k for args in commands for k in keys_of(args)])
        return groups


@pytest.fixture()
def redis_url(worker_id: str, is_postgres: bool) -> str:
    return queued_redis_url(worker_id, is_postgres)


@pytest.fixture()
def recorder(redis_url: str) -> Iterator[Recorder]:
    client = redis.Redis.from_url(redis_url)
    yield Recorder(client)
    client.close()


@pytest.mark.parametrize("count", [1, 4])
def test_an_append_round_trip_touches_one_slot(recorder: Recorder, count: int) -> None:
    tenant = _tenant()
    log = RedisStreamLog(recorder.client, lambda _p: None, partitions=count)
    requests_ = [
        [_event("v1", "key-1"), _event("v2", "key-2"), _event("v1", "key-1")],  # a repeat inside the request
        [_conversion("user-1")],  # reads across visitors: a wait map over every partition
        [RedactCommand(id=new_id("cmd", T0), idempotency_key="erase-1", scope="origin", occurred_at=T0,
                       received_at=T0, origin="shopify:test")],  # a fence in every other partition
    ]
    for commands in requests_:
        recorder.sent.clear()
        log.append(tenant, commands)
        scripts = [c for kind, c in recorder.sent if kind == "call" and str(c[0][0]).upper() in ("EVAL", "EVALSHA")]
        assert len(scripts) == 1, recorder.sent  # one round trip for the request's commands
        (keys,) = recorder.atomic_groups()
        assert len(keys) >= 2 * count
        assert {slot(k) for k in keys} == {slot(hash_tag(tenant)[1:-1])}
        others = [args for kind, c in recorder.sent for args in c if (kind, c) != ("call", scripts[0])]
        assert all(len(keys_of(args)) <= 1 for args in others)  # the registry: a single-key SADD, apart
    # The registry was written once (per process and minute), before the first append, for every partition.
    members = {m.decode() for m in recorder.client.smembers(PARTITIONS)}
    assert {Partition(tenant, i).name for i in range(count)} <= members


def test_with_admission_only_the_admissions_own_keys_are_elsewhere(recorder: Recorder) -> None:
    """The admission prologue (core.admission) names the API key's cache entry, its revocation mark and the
    per-key and per-address counters: not the tenant's keys. Everything else of the round trip is in the
    tenant's slot; docs/scale-out.md says what a Cluster deployment does about the four."""
    tenant = _tenant()
    log = RedisStreamLog(recorder.client, lambda _p: None, partitions=2)
    window = Window.parse("100 per second")
    admission = Admission(entry_key=f"{PREFIX}:apikey:d1", revoked_key=f"{PREFIX}:apikey-revoked:d1",
                          fresh_ms=60_000, verified=True, failures_key=f"{PREFIX}:limits:authfail:ip1",
                          failures=window, requests_key=f"{PREFIX}:limits:ingest:k:d1", requests=window,
                          now_ms=int(time.time() * 1000))
    recorder.sent.clear()
    log.append(tenant, [_event("v1", "k1")], admission=admission)
    (keys,) = recorder.atomic_groups()
    tenant_keys, admission_keys = keys[:-4], keys[-4:]
    assert [k.decode() if isinstance(k, bytes) else k for k in admission_keys] == admission.keys()
    assert {slot(k) for k in tenant_keys} == {slot(hash_tag(tenant)[1:-1])}


def test_the_drains_multis_touch_one_slot(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Acknowledging, dead-lettering, releasing waiting conversions and replaying a dead letter: each MULTI stays
    in the partition's slot."""
    monkeypatch.setattr(jobs, "enqueue_drain", lambda *_: None)
    client = recorder.client
    tenant = _tenant()
    part = Partition(tenant, 2)
    visitors = [v for v in (f"v{n}" for n in range(40)) if partition_index(_event(v), 4) == 2][:3]
    RedisStreamLog(client, lambda _p: None, partitions=4).append(tenant, [_event(v) for v in visitors])
    client.xadd(part.stream, {"c": b"{}"})
    jobs.ensure_group(client, part.stream)
    entries = client.xreadgroup(GROUP, "drainer", {part.stream: ">"}, count=10)[0][1]
    recorder.sent.clear()
    jobs._dead_letter(client, part, entries[-1][0], entries[-1][1], "boom")
    acknowledge(client, part.stream, [e for e, _ in entries[:-1]])
    client.zadd(part.key(WAITING), {b'{"kind":"conversion"}': 0})
    assert jobs.release_waiting(client, part) == 1
    letter = client.xrange(part.key(DEAD))[0][0].decode()
    assert jobs.replay_dead_letter(client, part.name, letter)
    groups = recorder.atomic_groups()
    assert len(groups) == 4
    for keys in groups:
        assert {slot(k) for k in keys} == {slot(hash_tag(tenant)[1:-1])}, keys


# ------------------------------------------------------------------------------------------------ upgrading


def to_legacy(client: redis.Redis, tenant: Tenant, count: int) -> None:
    """What an older version left: the same keys under their names without the braces."""
    for index in range(count):
        new, old = Partition(tenant, index), Partition(tenant, index, legacy=True)
        for kind in KINDS:
            if client.exists(new.key(kind)):
                client.rename(new.key(kind), old.key(kind))
    for key in client.scan_iter(match=f"{PREFIX}:idem:{{{tenant.account_id}:*", count=1000):
        client.rename(key, key.decode().replace("{", "").replace("}", ""))


def stored_events(app: Flask, tenant: Tenant) -> set[str]:
    with app.config["MBUZZ"].sessions() as db:
        return set(db.scalars(sa.select(m.Event.id).where(m.Event.account_id == tenant.account_id)))


def test_a_backlog_under_the_old_names_is_drained_and_moved(app: Flask, redis_url: str, in_process: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    client = redis.Redis.from_url(redis_url)
    tenant = Tenant(new_account(app).account_id, "test")
    count = 2
    old_log = RedisStreamLog(client, lambda _p: None, partitions=count)
    first = [_event(f"v{n}", f"key-{n}") for n in range(6)]
    old_log.append(tenant, first)
    old_log.append(tenant, [_conversion("user-1")])  # a wait map naming the other partition
    legacy0 = Partition(tenant, 0, legacy=True)
    to_legacy(client, tenant, count)
    # A crashed drain of the older version: one entry delivered, never acknowledged.
    jobs.ensure_group(client, legacy0.stream)
    client.xreadgroup(GROUP, "drainer", {legacy0.stream: ">"}, count=1)
    client.xadd(legacy0.key(DEAD), {"c": b"{}", "error": b"old failure", "failed_at": b"2026-11-01", "log_id": b"1-0"})
    client.zadd(legacy0.key(WAITING), {b'{"kind":"conversion","id":"conv_x"}': time.time() + 3600})
    old_reservation = f"{PREFIX}:idem:{tenant.account_id}:test:event:key-0"
    assert client.ttl(old_reservation) > 0
    # Meanwhile the new version appends under the new names.
    later = [_event("v-new", "key-new")]
    RedisStreamLog(client, lambda _p: None, partitions=count).append(tenant, later)

    scheduled: list[Partition] = []
    monkeypatch.setattr(jobs, "enqueue_drain", lambda _c, p: scheduled.append(p))
    assert jobs.sweep(client) >= count
    legacy_scheduled = sorted(p.index for p in scheduled if p.legacy and p.tenant == tenant)
    assert legacy_scheduled == list(range(count))
    for part in [p for p in scheduled if p.tenant == tenant]:
        jobs.drain(tenant.account_id, tenant.environment, partition=part.index, legacy=part.legacy, budget_s=60)
    assert stored_events(app, tenant) == {c.id for c in first + later}  # nothing lost, nothing twice
    with app.config["MBUZZ"].sessions() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(m.Conversion).where(
            m.Conversion.account_id == tenant.account_id)) == 1

    report = rediskeys.migrate_legacy(client)
    assert (report.dead_letters, report.waiting, report.entries_left) == (1, 1, 0)
    assert report.streams_dropped == count and report.idempotency >= len(first) + 1
    assert not any(client.exists(Partition(tenant, i, legacy=True).key(k)) for i in range(count)
                   for k in (STREAM, DEAD, WAITING))
    assert [e["error"] for e in jobs.dead_letters(client) if e["partition"] == legacy0.name] == ["old failure"]
    assert client.zcard(Partition(tenant).key(WAITING)) == 1
    new_reservation = idempotency_key(tenant, "event", "key-0")
    assert client.get(new_reservation) == first[0].id.encode() and client.ttl(new_reservation) > 0
    assert not client.exists(old_reservation)
    # A repeat of an old request is now a duplicate at the edge, as before the upgrade (API-55).
    again = RedisStreamLog(client, lambda _p: None, partitions=count).append(tenant, [_event("v0", "key-0")])
    assert again.results[0].status == "duplicate" and again.results[0].result_id == first[0].id
    assert rediskeys.migrate_legacy(client) == rediskeys.Report()  # idempotent
    assert rediskeys.legacy_partitions(client, [Partition(tenant, i) for i in range(count)]) == []


def test_the_command_reports_what_it_moved(app: Flask, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import cli as gateway_cli

    client = redis.Redis.from_url(redis_url)
    tenant = _tenant()
    legacy = Partition(tenant, legacy=True)
    client.sadd(PARTITIONS, legacy.name)
    client.xadd(legacy.key(DEAD), {"c": b"{}", "error": b"e", "failed_at": b"x", "log_id": b"1-0"})
    monkeypatch.setattr(gateway_cli, "_redis", lambda: client)
    monkeypatch.setattr(jobs, "enqueue_drain", lambda *_: None)
    result = app.test_cli_runner().invoke(args=["mbuzz", "migrate-redis-keys"])
    assert result.exit_code == 0, result.output
    assert "moved 1 dead letter(s)" in result.output
    assert client.xlen(Partition(tenant).key(DEAD)) == 1 and not client.exists(legacy.key(DEAD))
