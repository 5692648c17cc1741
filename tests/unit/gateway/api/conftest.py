from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.integration.processes import queued_redis_url


@pytest.fixture()
def redis_url(worker_id: str, is_postgres: bool) -> Iterator[str]:
    """A Redis database of these modules' own (6 + the xdist worker's index): the drain jobs their appends enqueue
    must not reach the queued-pipeline tests' workers; emptied afterwards."""
    queued_redis_url(worker_id, is_postgres)  # skips without PostgreSQL or Redis, as the pipeline tests do
    index = 0 if worker_id == "master" else int(worker_id.removeprefix("gw"))
    url = f"redis://127.0.0.1:6379/{6 + index}"
    yield url
    redis.Redis.from_url(url).flushdb()
