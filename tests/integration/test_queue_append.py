"""The edge's append to the log in as few Redis round trips as it can (issue 17), against real Redis.

Idempotency keys are reserved for a whole request in one pipeline, and the drain trigger (the debounced
pending-drain flag) is set in the same atomic step as the XADDs. What must not change: a key used twice is a
duplicate of its first use, also inside one request (API-51, API-52); a partition written to gets a drain job
unless one is already due; a fence wakes every partition (docs/pipeline.md Q-3-D1).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import redis

from core.commands import EventCommand, RedactCommand
from core.ids import new_id
from core.queue import PENDING_DRAIN, Partition, RedisStreamLog, partition_index
from core.tenant import Tenant
from tests.integration.processes import queued_redis_url

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture()
def client(worker_id: str, is_postgres: bool) -> redis.Redis:
    return redis.Redis.from_url(queued_redis_url(worker_id, is_postgres))


def _event(visitor: str, key: str | None = None) -> EventCommand:
    return EventCommand(id=new_id("evt", T0), event_type="page_view", occurred_at=T0, received_at=T0,
                        visitor_key=visitor, idempotency_key=key)


def _tenant() -> Tenant:
    return Tenant(f"acct_{uuid.uuid4().hex}", "test")


def test_API51_keys_of_one_request_are_reserved_together_and_a_repeat_is_a_duplicate(client: redis.Redis) -> None:
    tenant = _tenant()
    log = RedisStreamLog(client, lambda _p: None)
    first, second, again = _event("v1", "A"), _event("v1", "B"), _event("v2", "A")
    results = log.append(tenant, [first, second, again, _event("v3")]).results
    assert [r.status for r in results] == ["queued", "queued", "duplicate", "queued"]
    assert results[2].result_id == first.id  # the key's first use in the same request
    later = log.append(tenant, [_event("v4", "B"), _event("v5", "C")]).results
    assert [(r.status, r.result_id) for r in later][0] == ("duplicate", second.id)
    assert later[1].status == "queued"
    assert client.xlen(Partition(tenant).stream) == 4  # first, second, the keyless one and C


def test_one_partition_gets_one_drain_job_until_its_drain_clears_the_flag(client: redis.Redis) -> None:
    tenant = _tenant()
    enqueued: list[Partition] = []
    log = RedisStreamLog(client, enqueued.append)
    log.append(tenant, [_event("v1")])
    log.append(tenant, [_event("v2")])
    assert enqueued == [Partition(tenant)]  # the second append found the drain already due
    client.delete(Partition(tenant).key(PENDING_DRAIN))  # what a drain does when it finds its stream empty
    log.append(tenant, [_event("v3")])
    assert enqueued == [Partition(tenant), Partition(tenant)]


def test_Q3_partitions_written_to_get_their_drain_and_a_fence_wakes_them_all(client: redis.Redis) -> None:
    tenant, count = _tenant(), 4
    enqueued: list[int] = []
    log = RedisStreamLog(client, lambda part: enqueued.append(part.index), partitions=count)
    events = [_event(f"visitor-{n}") for n in range(40)]
    wanted = {partition_index(e, count) for e in events[:2]}
    log.append(tenant, events[:2])
    assert sorted(enqueued) == sorted(wanted)
    log.append(tenant, events[:2])
    assert sorted(enqueued) == sorted(wanted)  # still due: nothing more
    redact = RedactCommand(id=new_id("red", T0), idempotency_key="erase-1", scope="origin", occurred_at=T0,
                           received_at=T0)
    log.append(tenant, [redact])
    assert set(enqueued) == set(range(count)) and len(enqueued) == count
