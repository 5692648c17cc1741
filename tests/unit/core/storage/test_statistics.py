"""Planner statistics kept current by the application (core.storage.statistics; docs/performance.md Q-9-D1)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from core.storage import statistics
from core.storage.db import make_engine
from core.storage.statistics import StatisticsKeeper, keep_statistics, refresh_statistics


@pytest.fixture()
def pg_engine(database_url: str) -> Iterator[sa.Engine]:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL planner statistics")
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS stats_probe"))
        conn.execute(sa.text("CREATE TABLE stats_probe (id int PRIMARY KEY, visitor text)"))
    yield engine
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS stats_probe"))
    engine.dispose()


def _fill(engine: sa.Engine, rows: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO stats_probe SELECT g, 'v' || g FROM generate_series(1, :n) AS g"),
                     {"n": rows})


def _planner_rows(engine: sa.Engine) -> float:
    with engine.begin() as conn:  # a commit: it nudges a keeper registered on the engine
        return float(conn.scalar(sa.text("SELECT reltuples FROM pg_class WHERE relname = 'stats_probe'")))


def _until(condition: Any, deadline_s: float = 15.0) -> bool:
    """Table change counts reach PostgreSQL's shared statistics up to a second after the commit: poll."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def test_Q9_a_changed_table_is_analysed_and_an_unchanged_one_is_not(pg_engine: sa.Engine) -> None:
    _fill(pg_engine, 2500)
    assert _planner_rows(pg_engine) <= 0  # never analysed: the planner guesses
    analysed: list[str] = []
    assert _until(lambda: analysed.extend(refresh_statistics(pg_engine)) or "stats_probe" in analysed)
    assert _planner_rows(pg_engine) == 2500
    time.sleep(1.5)  # any late change count has arrived by now
    assert "stats_probe" not in refresh_statistics(pg_engine)  # nothing changed since


def test_Q9_below_the_threshold_nothing_is_analysed(pg_engine: sa.Engine) -> None:
    _fill(pg_engine, statistics.CHANGED_ROWS // 2)
    time.sleep(1.5)  # the change count has arrived
    assert "stats_probe" not in refresh_statistics(pg_engine)


def test_Q9_commits_on_the_engine_refresh_in_the_background(database_url: str, pg_engine: sa.Engine) -> None:
    engine = make_engine(database_url)
    try:
        keep_statistics(engine, every_s=0.2)
        _fill(engine, 2500)
        assert _until(lambda: _planner_rows(engine) == 2500)  # each poll commits, so it nudges the keeper
    finally:
        engine.dispose()


def test_keeper_runs_at_most_once_per_interval() -> None:
    now = [100.0]
    runs: list[Any] = []
    done = threading.Event()

    def refresh(engine: Any) -> list[str]:
        runs.append(engine)
        done.set()
        return []

    keeper = StatisticsKeeper("engine", every_s=60, clock=lambda: now[0], refresh=refresh)  # type: ignore[arg-type]
    assert not keeper.nudge()  # the first run is one interval after the start
    now[0] += 60
    assert keeper.nudge()
    assert done.wait(5) and runs == ["engine"]
    assert not keeper.nudge()
    now[0] += 59
    assert not keeper.nudge()
    now[0] += 1
    assert keeper.nudge()
    assert not StatisticsKeeper("engine", every_s=0).nudge()  # type: ignore[arg-type]  # 0 switches it off
