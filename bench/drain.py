#!/usr/bin/env python3
"""Drain benchmark (quality.md Q-3, Q-8, Q-9): the processors alone, fed from a pre-filled Redis log.

Fills one partition's stream with N realistic event commands (XADD, pipelined), then runs the drain job in
this process exactly as an RQ worker would (``core.jobs.drain``) and prints events/s and the process RSS.
``--sizes 10000,100000`` repeats the measurement after the database already holds that many events, to show
whether the per-event cost stays flat as the tables grow.

    python bench/drain.py --events 100000
    python bench/drain.py --events 20000 --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DB = "postgresql://postgres@127.0.0.1:5432/mbuzz_drain_bench"
REDIS = "redis://127.0.0.1:6379/13"
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
SOURCES = ("?utm_source=google&utm_medium=cpc", "?utm_source=newsletter&utm_medium=email", "?gclid=Cj0KC", "")


def rss_mb() -> float:
    """Peak RSS of this process (includes the benchmark's own payload lists)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def commands(n: int, visitors: int, start: datetime, seed: int) -> list[bytes]:
    from core.commands import EventCommand, command_to_dict
    from core.ids import new_id

    r = random.Random(seed)
    out = []
    for i in range(n):
        at = start + timedelta(seconds=i * 0.5)
        v = r.randrange(visitors)
        url = f"https://shop.example/p/{r.randrange(500)}{r.choice(SOURCES)}" if r.random() < 0.6 else None
        cmd = EventCommand(id=new_id("evt", at), event_type=r.choice(("page_view", "add_to_cart", "signup")),
                           occurred_at=at, received_at=at, visitor_key=f"bench-{v:06d}", url=url,
                           referrer="https://www.google.com/" if url and r.random() < 0.3 else None,
                           user_agent=UA, fingerprint=f"{v:032x}"[-32:], properties={"i": i})
        out.append(orjson.dumps(command_to_dict(cmd)))
    return out


def fill(client: object, stream: str, n: int, visitors: int, start: datetime, seed: int) -> None:
    """Generated and appended 5,000 at a time, so the benchmark's own memory stays out of the RSS figures."""
    for offset in range(0, n, 5000):
        pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
        chunk = commands(min(5000, n - offset), visitors, start + timedelta(seconds=offset * 0.5), seed + offset)
        for payload in chunk:
            pipe.xadd(stream, {"c": payload})
        pipe.execute()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--visitors", type=int, default=10_000)
    parser.add_argument("--sizes", default="", help="comma list of stored-event counts to measure at")
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)
    os.environ.update({"DATABASE_URL": DB, "REDIS_URL": REDIS, "MBUZZ_DRAIN_BATCH": str(args.batch),
                       "MBUZZ_REDIS_PREFIX": f"mbuzz-bench-{uuid.uuid4().hex[:6]}"})
    import redis
    import sqlalchemy as sa

    from core import jobs
    from core.accounts import create_account
    from core.queue import stream_key
    from core.storage.db import make_engine, migrate, session_factory
    from core.storage.models import Event
    from core.tenant import Tenant

    admin = make_engine(DB.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS mbuzz_drain_bench WITH (FORCE)"))
        conn.execute(sa.text("CREATE DATABASE mbuzz_drain_bench"))
    try:
        migrate(DB)
        sessions = session_factory(make_engine(DB))
        with sessions.begin() as db:
            account, _, _ = create_account(db, "Drain bench")
        tenant = Tenant(account.id, "test")
        client = redis.Redis.from_url(REDIS)
        stream = stream_key(tenant)
        jobs.enqueue_drain = lambda *_: None  # type: ignore[assignment]  # no worker: this process drains
        sizes = [int(s) for s in args.sizes.split(",") if s] or [0]
        stored = 0
        start = datetime.now(UTC) - timedelta(days=300)
        print(f"drain benchmark: {args.events} events per run, {args.visitors} visitors, batch {args.batch}")
        for run, size in enumerate(sizes):
            while stored < size:  # grow the tables to the next size through the same drain path
                chunk = min(50_000, size - stored)
                fill(client, stream, chunk, args.visitors, start + timedelta(days=stored / 20_000), 1000 + stored)
                jobs.drain(tenant.account_id, tenant.environment, budget_s=1e9)
                stored += chunk
            if size:
                # A running system has autovacuum's statistics for the rows it holds (migration 0003 makes it
                # re-analyse after 1 % change); the growth above outruns autovacuum's one-minute nap.
                with make_engine(DB, isolation_level="AUTOCOMMIT").connect() as conn:
                    conn.execute(sa.text("ANALYZE"))
            fill(client, stream, args.events, args.visitors, start + timedelta(days=200 + run), run * 10_000_000)
            before_rss = current_rss_mb()
            began = time.perf_counter()
            done = jobs.drain(tenant.account_id, tenant.environment, budget_s=1e9)
            elapsed = time.perf_counter() - began
            stored += done
            with sessions() as db:
                rows = db.scalar(sa.select(sa.func.count()).select_from(Event))
            print(f"  stored before: {size:>9,}  drained {done:,} in {elapsed:.1f} s = {done / elapsed:,.0f} "
                  f"events/s ({elapsed / max(done, 1) * 1e6:,.0f} µs/event)  rows now {rows:,}  "
                  f"RSS {before_rss:.0f} MB before, {current_rss_mb():.0f} MB after the drain (peak {rss_mb():.0f})")
        client.delete(stream)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text("DROP DATABASE IF EXISTS mbuzz_drain_bench WITH (FORCE)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
