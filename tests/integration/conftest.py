"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core import jobs
from core.config import CoreSettings


@pytest.fixture()
def in_process(database_url: str, redis_url: str) -> Iterator[None]:
    """``core.jobs.drain`` run in this process against the test database and Redis (the test module provides
    ``redis_url``), handed its settings as the worker's entry point does."""
    jobs.use_settings(CoreSettings.from_env(database_url=database_url, redis_url=redis_url))
    yield
    jobs.use_settings(None)
