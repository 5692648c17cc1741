"""Several partitions per tenant's log (issue 16 item 3; docs/pipeline.md Q-3-D1), against real Redis and PostgreSQL.

A big tenant's log is split by visitor so that several workers drain it at once. What must not change: one
visitor's commands keep their order, and a command that reads across visitors (identify, conversions,
redactions) sees everything appended before it, exactly as with one partition. The tests drain the partitions
in the worst order (the cross-visitor command's partition first) and compare what is stored with the same
commands processed inline, one request at a time.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import requests
import sqlalchemy as sa
from flask import Flask

from core import jobs
from core.commands import Command, ConversionCommand, EventCommand, IdentifyCommand, RedactCommand
from core.ids import new_id
from core.log import InlineLog
from core.queue import PARTITIONS, Partition, RedisStreamLog, partition_index, stream_key
from core.reads import conversion_by_id
from core.storage import models as m
from core.tenant import Tenant
from tests.conftest import new_account
from tests.integration.processes import env_for, gunicorn, queued_redis_url, start_worker, stop, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

COUNT = 4
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "partitions"


@pytest.fixture()
def redis_url(worker_id: str, is_postgres: bool) -> str:
    return queued_redis_url(worker_id, is_postgres)


def key_in(index: int, prefix: str) -> str:
    """A visitor key that routes to partition ``index`` of ``COUNT``."""
    for n in range(10_000):
        key = f"{prefix}-{n}"
        if partition_index(EventCommand(id="x", event_type="x", occurred_at=T0, received_at=T0, visitor_key=key),
                           COUNT) == index:
            return key
    raise AssertionError("no key found")


def event(visitor: str, at: datetime, url: str, user: str | None = None) -> EventCommand:
    return EventCommand(id=new_id("evt", at), event_type="page_view", occurred_at=at, received_at=at,
                        visitor_key=visitor, user_key=user, url=url)


def identify(user: str, visitor: str, at: datetime) -> IdentifyCommand:
    return IdentifyCommand(id=new_id("cmd", at), user_key=user, visitor_key=visitor, occurred_at=at, received_at=at)


def conversion(user: str, at: datetime) -> ConversionCommand:
    return ConversionCommand(id=new_id("conv", at), conversion_type="purchase", received_at=at, converted_at=at,
                             user_key=user, revenue_minor=10_000)


def credits(app: Flask, tenant: Tenant, conversion_id: str) -> dict[str, list[tuple[str, str]]]:
    """What a user sees of a conversion's attribution: per model, the channels and their credits."""
    with app.config["MBUZZ"].sessions() as db:
        body = conversion_by_id(db, tenant, conversion_id)
    assert body is not None, f"conversion {conversion_id} not stored"
    assert body["attribution"]["status"] == "complete", body["attribution"]
    return {model: sorted((c["channel"], str(c["credit"])) for c in rows)
            for model, rows in body["attribution"]["models"].items()}


def inline(app: Flask, tenant: Tenant, requests_: list[list[Command]]) -> None:
    """The reference: one partition's semantics, each request processed in its own transaction, in order."""
    log = InlineLog(app.config["MBUZZ"].sessions, refit_inline=True)
    for commands in requests_:
        log.append(tenant, commands)


def drain_all(tenant: Tenant, first: int) -> None:
    """Drain partition ``first`` first (the worst order), then every partition until none has anything left."""
    jobs.drain(tenant.account_id, tenant.environment, partition=first, budget_s=120)
    for _ in range(3):
        for index in range(COUNT):
            jobs.drain(tenant.account_id, tenant.environment, partition=index, budget_s=120)


def copy_for(commands: list[Command]) -> list[Command]:
    """The same commands with fresh ids (the reference tenant stores its own rows)."""
    return [replace(c, id=new_id(c.id.split("_", 1)[0], c.received_at)) for c in commands]


def test_Q3D1_a_visitors_commands_stay_in_one_partition_in_order(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    tenant = Tenant(f"acct_{uuid.uuid4().hex[:12]}", "test")
    log = RedisStreamLog(client, lambda _p: None, partitions=COUNT)
    visitors = [f"v-{n}" for n in range(40)]
    sent: dict[str, list[str]] = {v: [] for v in visitors}
    for step in range(5):
        batch = [event(v, T0 + timedelta(minutes=step), "https://shop.example/") for v in visitors]
        log.append(tenant, batch)
        for command in batch:
            assert command.visitor_key is not None
            sent[command.visitor_key].append(command.id)
    log.append(tenant, [conversion("user-1", T0 + timedelta(hours=1))])

    seen: dict[str, list[tuple[int, str]]] = {v: [] for v in visitors}
    waits: list[dict[str, str]] = []
    for index in range(COUNT):
        for _entry_id, fields in client.xrange(stream_key(tenant, index)):
            if b"w" in fields:
                waits.append(orjson.loads(fields[b"w"]))
            command = orjson.loads(fields[b"c"])
            if command["kind"] == "event":
                seen[command["visitor_key"]].append((index, command["id"]))
    assert all(len({i for i, _ in seen[v]}) == 1 for v in visitors), "a visitor's commands span partitions"
    assert all([c for _, c in seen[v]] == sent[v] for v in visitors), "a visitor's commands are out of order"
    assert len({seen[v][0][0] for v in visitors}) == COUNT  # 40 visitors spread over every partition
    # The conversion reads across visitors: it carries the last entry of every other partition.
    (wait,) = waits
    assert len(wait) == COUNT - 1
    for name, entry_id in wait.items():
        last = client.xrevrange(stream_key(tenant, int(name)), count=1)[0][0].decode()
        assert entry_id == last
    members = {m.decode() for m in client.smembers(PARTITIONS)}
    assert {Partition(tenant, i).name for i in range(COUNT)} <= members


def test_Q3D1_a_user_conversion_sees_every_partition_drained_in_the_worst_order(
    app: Flask, redis_url: str, in_process: None
) -> None:
    """A user's three visitors live in three partitions; the conversion, in a fourth, is drained first. It must
    still be attributed over all three visitors' sessions, exactly as one partition would."""
    keys, reference_keys = new_account(app), new_account(app, "Reference")
    tenant, reference = Tenant(keys.account_id, "test"), Tenant(reference_keys.account_id, "test")
    user = "user-42"
    owner = partition_index(conversion(user, T0), COUNT)
    others = [i for i in range(COUNT) if i != owner]
    va, vb, vc = (key_in(i, f"visitor{i}") for i in others)
    requests_: list[list[Command]] = [
        [event(va, T0, "https://shop.example/?utm_source=google&utm_medium=cpc")],
        [event(vb, T0 + timedelta(days=1), "https://shop.example/?utm_source=news&utm_medium=email")],
        [event(vc, T0 + timedelta(days=2), "https://shop.example/?utm_source=facebook&utm_medium=paid_social")],
        [identify(user, va, T0 + timedelta(days=2, hours=1))],
        [identify(user, vb, T0 + timedelta(days=2, hours=2))],
        [identify(user, vc, T0 + timedelta(days=2, hours=3))],
        [conversion(user, T0 + timedelta(days=3))],
    ]
    log = RedisStreamLog(redis.Redis.from_url(redis_url), lambda _p: None, partitions=COUNT)
    for commands in requests_:
        log.append(tenant, commands)
    copies = [copy_for(commands) for commands in requests_]
    inline(app, reference, copies)

    drain_all(tenant, first=owner)

    got = credits(app, tenant, requests_[-1][0].id)
    assert got == credits(app, reference, copies[-1][0].id)
    assert {channel for channel, _ in got["linear"]} == {"paid_search", "email", "paid_social"}
    client = redis.Redis.from_url(redis_url)
    assert all(client.xlen(stream_key(tenant, i)) == 0 for i in range(COUNT))


def test_Q3D1_a_redaction_holds_back_what_was_appended_after_it(
    app: Flask, redis_url: str, in_process: None
) -> None:
    """A redaction leaves a fence in every other partition: an event appended after it, for another of the
    person's visitors, is processed after it even when its partition is drained first (SHP-88)."""
    keys, reference_keys = new_account(app), new_account(app, "Reference")
    tenant, reference = Tenant(keys.account_id, "test"), Tenant(reference_keys.account_id, "test")
    user = "user-to-forget"
    owner = partition_index(conversion(user, T0), COUNT)
    others = [i for i in range(COUNT) if i != owner]
    va, vb = key_in(others[0], "before"), key_in(others[1], "after")
    redact = RedactCommand(id=new_id("cmd", T0), idempotency_key="redact-1", scope="identity",
                           occurred_at=T0 + timedelta(hours=1), received_at=T0 + timedelta(hours=1), user_key=user,
                           tombstone="tombstone-1")
    requests_: list[list[Command]] = [
        [event(va, T0, "https://shop.example/", user=user)],
        [redact],
        [event(vb, T0 + timedelta(hours=2), "https://shop.example/", user=user)],
    ]
    log = RedisStreamLog(redis.Redis.from_url(redis_url), lambda _p: None, partitions=COUNT)
    for commands in requests_:
        log.append(tenant, commands)
    inline(app, reference, [copy_for(commands) for commands in requests_])

    drain_all(tenant, first=others[1])  # the partition of the event appended after the redaction

    def who_is_linked(t: Tenant) -> dict[str, str | None]:
        with app.config["MBUZZ"].sessions() as db:
            rows = db.execute(
                sa.select(m.Visitor.visitor_key, m.User.user_key)
                .join(m.VisitorLink, sa.and_(m.VisitorLink.visitor_id == m.Visitor.id,
                                             m.VisitorLink.account_id == m.Visitor.account_id,
                                             m.VisitorLink.environment == m.Visitor.environment))
                .join(m.User, sa.and_(m.User.id == m.VisitorLink.user_id, m.User.account_id == m.Visitor.account_id,
                                      m.User.environment == m.Visitor.environment))
                .where(m.Visitor.account_id == t.account_id, m.Visitor.environment == t.environment,
                       m.VisitorLink.valid_to.is_(None))
            )
            return {visitor: user_key for visitor, user_key in rows}

    # The redaction unlinked the first visitor; the later event linked the second to a fresh identity.
    assert who_is_linked(tenant) == who_is_linked(reference) == {vb: user}


def visitor_conversion(visitor: str, at: datetime) -> ConversionCommand:
    """A conversion naming only its visitor (Q-3-D2)."""
    return ConversionCommand(id=new_id("conv", at), conversion_type="purchase", received_at=at, converted_at=at,
                             visitor_key=visitor, revenue_minor=10_000)


def _append(redis_url: str, tenant: Tenant, requests_: list[list[Command]]) -> None:
    log = RedisStreamLog(redis.Redis.from_url(redis_url), lambda _p: None, partitions=COUNT)
    for commands in requests_:
        log.append(tenant, commands)


def test_Q3D2_a_conversion_of_an_unlinked_visitor_does_not_wait_for_other_partitions(
    app: Flask, redis_url: str, in_process: None
) -> None:
    """Another visitor's earlier event is still pending in another partition: the conversion of a visitor with no
    link runs at once (a waiting drain would have helped drain that partition), attributed as inline."""
    keys, reference_keys = new_account(app), new_account(app, "Reference")
    tenant, reference = Tenant(keys.account_id, "test"), Tenant(reference_keys.account_id, "test")
    va, vb = key_in(0, "buyer"), key_in(1, "stranger")
    requests_: list[list[Command]] = [
        [event(vb, T0, "https://shop.example/?utm_source=news&utm_medium=email")],
        [event(va, T0 + timedelta(hours=1), "https://shop.example/?utm_source=google&utm_medium=cpc")],
        [visitor_conversion(va, T0 + timedelta(days=1))],
    ]
    _append(redis_url, tenant, requests_)
    copies = [copy_for(commands) for commands in requests_]
    inline(app, reference, copies)

    jobs.drain(tenant.account_id, tenant.environment, partition=0, budget_s=120)

    assert credits(app, tenant, requests_[-1][0].id) == credits(app, reference, copies[-1][0].id)
    client = redis.Redis.from_url(redis_url)
    assert client.xlen(stream_key(tenant, 0)) == 0
    assert client.xlen(stream_key(tenant, 1)) == 1, "the other partition was drained: the conversion waited"


def test_Q3D2_a_conversion_of_a_linked_visitor_still_waits(app: Flask, redis_url: str, in_process: None) -> None:
    """The visitor was linked to a user in an earlier batch: its conversion reads the user's other visitor, whose
    newer session is pending in another partition, so it waits for it (worst order, as inline)."""
    keys, reference_keys = new_account(app), new_account(app, "Reference")
    tenant, reference = Tenant(keys.account_id, "test"), Tenant(reference_keys.account_id, "test")
    user, va, vb = "user-7", key_in(0, "phone"), key_in(1, "laptop")
    earlier: list[list[Command]] = [
        [event(va, T0, "https://shop.example/?utm_source=google&utm_medium=cpc")],
        [identify(user, va, T0 + timedelta(hours=1))],
        [identify(user, vb, T0 + timedelta(hours=2))],
    ]
    later: list[list[Command]] = [
        [event(vb, T0 + timedelta(days=1), "https://shop.example/?utm_source=news&utm_medium=email")],
        [visitor_conversion(va, T0 + timedelta(days=2))],
    ]
    _append(redis_url, tenant, earlier)
    drain_all(tenant, first=0)
    _append(redis_url, tenant, later)
    copies = [copy_for(commands) for commands in earlier + later]
    inline(app, reference, copies)

    jobs.drain(tenant.account_id, tenant.environment, partition=0, budget_s=120)

    got = credits(app, tenant, later[-1][0].id)
    assert got == credits(app, reference, copies[-1][0].id)
    assert {channel for channel, _ in got["linear"]} == {"paid_search", "email"}


def test_Q3D2_a_link_earlier_in_the_same_batch_makes_the_conversion_wait(
    app: Flask, redis_url: str, in_process: None
) -> None:
    """The visitor's link comes from an event of the same batch, not committed yet when the batch is cut: the
    conversion still waits for the user's other visitor."""
    keys, reference_keys = new_account(app), new_account(app, "Reference")
    tenant, reference = Tenant(keys.account_id, "test"), Tenant(reference_keys.account_id, "test")
    user, va, vb = "user-8", key_in(0, "tablet"), key_in(1, "desktop")
    requests_: list[list[Command]] = [
        [event(vb, T0, "https://shop.example/?utm_source=news&utm_medium=email", user=user)],
        [event(va, T0 + timedelta(days=1), "https://shop.example/?utm_source=google&utm_medium=cpc", user=user)],
        [visitor_conversion(va, T0 + timedelta(days=2))],
    ]
    _append(redis_url, tenant, requests_)
    copies = [copy_for(commands) for commands in requests_]
    inline(app, reference, copies)

    jobs.drain(tenant.account_id, tenant.environment, partition=0, budget_s=120)

    got = credits(app, tenant, requests_[-1][0].id)
    assert got == credits(app, reference, copies[-1][0].id)
    assert {channel for channel, _ in got["linear"]} == {"paid_search", "email"}


def _post(session: requests.Session, base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = session.post(base + path, json=body, timeout=30)
    assert resp.status_code in (200, 201, 202), resp.text
    payload: dict[str, Any] = resp.json()
    return payload


def test_Q3D1_two_workers_drain_one_tenant_exactly_as_one_partition(
    app: Flask, database_url: str, redis_url: str
) -> None:
    """End to end: gunicorn and two RQ workers with four partitions per tenant. Journeys of visitors who
    identify and convert by user; every event stored once and every conversion attributed exactly as the same
    requests processed inline."""
    logs = ARTIFACTS / "two_workers"
    logs.mkdir(parents=True, exist_ok=True)
    keys, reference_keys = new_account(app), new_account(app, "Reference")
    env = env_for(database_url, redis_url, MBUZZ_LOG_PARTITIONS=str(COUNT))
    sources = ["?utm_source=google&utm_medium=cpc", "?utm_source=news&utm_medium=email",
               "?utm_source=facebook&utm_medium=paid_social", "?gclid=abc", ""]
    plan: list[tuple[str, dict[str, Any]]] = []
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=6)
    for person in range(12):
        user = f"person-{person}"
        for device in range(3):
            visitor = f"p{person}-d{device}"
            at = start + timedelta(days=device, hours=person)
            plan.append(("/api/v1/events", {"events": [
                {"event_type": "page_view", "visitor_id": visitor, "timestamp": (at + timedelta(minutes=k)).isoformat(),
                 "properties": {"url": f"https://shop.example/p/{k}{sources[(person + device + k) % 5]}"}}
                for k in range(4)]}))
            plan.append(("/api/v1/identify", {"user_id": user, "visitor_id": visitor,
                                              "timestamp": (at + timedelta(minutes=10)).isoformat()}))
        plan.append(("/api/v1/conversions", {"user_id": user, "conversion_type": "purchase", "revenue": "40.00",
                                             "converted_at": (start + timedelta(days=4, hours=person)).isoformat(),
                                             "idempotency_key": f"order-{person}"}))
    workers = [start_worker(env, logs / f"worker{n}.log") for n in range(2)]
    queued_ids: list[str] = []
    try:
        with gunicorn(env, log=logs / "gunicorn.log") as (base, _proc):
            http = requests.Session()
            http.headers["Authorization"] = f"Bearer {keys.test_key}"
            for path, body in plan:
                answer = _post(http, base, path, body)
                if path.endswith("conversions"):
                    queued_ids.append(answer["id"])
        tenant = Tenant(keys.account_id, "test")

        def drained() -> bool:
            client = redis.Redis.from_url(redis_url)
            return all(client.xlen(stream_key(tenant, i)) == 0 for i in range(COUNT))

        assert wait_until(drained, 240), "the partitions were not drained"
    finally:
        for worker in workers:
            stop(worker)
    reference_client = app.test_client()  # inline: one request at a time, one log
    reference_ids = []
    for path, body in plan:
        resp = reference_client.post(path, json=body, headers={"Authorization": f"Bearer {reference_keys.test_key}"})
        assert resp.status_code in (200, 201, 202), resp.get_data(as_text=True)
        if path.endswith("conversions"):
            reference_ids.append(resp.get_json()["id"])
    with app.config["MBUZZ"].sessions() as db:
        events = db.scalar(sa.select(sa.func.count()).select_from(m.Event)
                           .where(m.Event.account_id == keys.account_id))
    assert events == 12 * 3 * 4
    reference = Tenant(reference_keys.account_id, "test")
    for queued_id, reference_id in zip(queued_ids, reference_ids, strict=True):
        assert credits(app, tenant, queued_id) == credits(app, reference, reference_id)
