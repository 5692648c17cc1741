#!/usr/bin/env python3
"""Drain benchmark (quality.md Q-3, Q-8, Q-9): the processors alone, fed from a pre-filled Redis log.

Every figure is a ratio against a ceiling measured in the same run. One run prints:

1. **bare drain** (the ceiling): the same N event commands (same generator, same seeds) in a separate stream,
   drained in this process with nothing but XREADGROUP (``--bare-read`` entries at a time), ``orjson`` decoding,
   ``COPY`` into ``bare_events`` (``LIKE events INCLUDING DEFAULTS INCLUDING INDEXES``, so it pays the same index
   maintenance), one commit per read, and the acknowledgement (XACK + XDEL in one MULTI, as the drain does);
2. **in-process drain**: one partition's stream filled with N events, then ``core.jobs.drain`` run in this
   process exactly as an RQ worker would; events/s, µs/event, the ratio to the bare drain and the process RSS.
   ``--sizes 10000,100000`` repeats it after the database already holds that many events, to show whether the
   per-event cost stays flat as the tables grow;
3. **drain workers** (``--workers 1,2``): for each count, a fresh tenant's log of ``--partitions`` partitions
   (default 4; docs/pipeline.md Q-3-D1) is filled with N events, each routed to its visitor's partition as the
   edge routes it, and that many OS processes (multiprocessing, spawn) call
   ``core.jobs.drain(account, env, budget_s=..., partition=i)`` over the partitions in turn, as RQ workers take
   the partitions' drain jobs, until no partition has anything pending or unread; wall time from the start
   signal to fully drained (rows checked in ``events``), events/s, the ratio to the bare drain and the 2-vs-1
   ratio.

    python bench/drain.py --events 20000
    python bench/drain.py --events 100000 --workers 1,2,4
    python bench/drain.py --events 20000 --sizes 10000,100000,1000000 --workers 0
    python bench/drain.py --events 20000 --workers 0 --stages   # µs/event of each stage of the drain

Profile (``--profile`` hint): py-spy samples the in-process drain (step 2 runs in the main process; add
``--subprocesses`` to include the worker processes of step 3)::

    .venv/bin/pip install -e '.[bench]'   # py-spy, pinned in pyproject.toml
    py-spy record -o drain.svg -- .venv/bin/python bench/drain.py --events 20000 --workers 1
    py-spy record --format raw -o drain.txt -- .venv/bin/python bench/drain.py --events 20000 --workers 0
    py-spy top -- .venv/bin/python bench/drain.py --events 20000 --workers 1
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import random
import resource
import shlex
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Overridable so that two checkouts can benchmark side by side without sharing a database or a Redis db.
DB = os.environ.get("MBUZZ_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/mbuzz_drain_bench")
REDIS = os.environ.get("MBUZZ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
SOURCES = ("?utm_source=google&utm_medium=cpc", "?utm_source=newsletter&utm_medium=email", "?gclid=Cj0KC", "")
BARE_COLUMNS = (
    "account_id", "environment", "id", "event_type", "funnel", "visitor_id", "session_id", "user_id",
    "client_session_id", "occurred_at", "received_at", "url", "referrer", "properties", "idempotency_key",
    "sdk_name", "sdk_version", "source", "origin",
)


def rss_mb() -> float:
    """Peak RSS of this process (includes the benchmark's own payload lists)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def commands(n: int, visitors: int, start: datetime, seed: int, partitions: int = 1) -> list[tuple[int, bytes]]:
    """(partition index, payload) per event, routed as the edge routes them (``core.queue.partition_index``)."""
    from core.commands import EventCommand, command_to_dict
    from core.ids import new_id
    from core.queue import partition_index

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
        out.append((partition_index(cmd, partitions), orjson.dumps(command_to_dict(cmd))))
    return out


def fill(client: object, streams: list[str], n: int, visitors: int, start: datetime, seed: int) -> None:
    """Generated and appended 5,000 at a time, so the benchmark's own memory stays out of the RSS figures; with
    several streams (a tenant's partitions) each event goes to its visitor's partition."""
    for offset in range(0, n, 5000):
        pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
        chunk = commands(min(5000, n - offset), visitors, start + timedelta(seconds=offset * 0.5), seed + offset,
                         len(streams))
        for index, payload in chunk:
            pipe.xadd(streams[index], {"c": payload})
        pipe.execute()


def fully_drained(client: Any, stream: str) -> bool:
    """Nothing pending and nothing unread in the drain's consumer group (acknowledged entries are deleted)."""
    from core.queue import GROUP

    if client.xlen(stream) == 0:
        return True
    try:
        groups = client.xinfo_groups(stream)
    except Exception:  # no stream
        return True
    ours = next((g for g in groups if g["name"] in (GROUP, GROUP.encode())), None)
    return ours is not None and not ours.get("pending") and ours.get("lag") == 0


def bare_drain(client: Any, conn: Any, stream: str, account_id: str, environment: str, read: int) -> int:
    """The ceiling: read, decode, COPY, commit, acknowledge; nothing else. Returns the events drained."""
    from psycopg.types.json import Jsonb

    from core.queue import GROUP, acknowledge

    sql = f"COPY bare_events ({', '.join(BARE_COLUMNS)}) FROM STDIN"
    done = 0
    while True:
        reply = client.xreadgroup(GROUP, "bare", {stream: ">"}, count=read)
        if not reply or not reply[0][1]:
            return done
        entries = reply[0][1]
        with conn.cursor() as cursor, cursor.copy(sql) as copy:
            for _entry_id, fields in entries:
                c = orjson.loads(fields[b"c"])
                copy.write_row((account_id, environment, c["id"], c["event_type"], c["funnel"], c["visitor_key"],
                                None, None, c["client_session_id"], c["occurred_at"], c["received_at"], c["url"],
                                c["referrer"], Jsonb(c["properties"]), c["idempotency_key"], c["sdk_name"],
                                c["sdk_version"], c["source"], c["origin"]))
        conn.commit()
        acknowledge(client, stream, [entry_id for entry_id, _ in entries])  # XACK + XDEL in one MULTI
        done += len(entries)


def drain_worker(account_id: str, environment: str, budget_s: float, partitions: int, first: int, barrier: Any,
                 results: Any) -> None:
    """One OS process: calls ``core.jobs.drain`` on the tenant's partitions in turn (from ``first``), as an RQ
    worker takes the partitions' drain jobs, until every partition's stream is fully drained.

    Connections are opened before the start signal, so imports and connects stay out of the measurement.
    Reports (pid, events drained, drain calls, calls that drained nothing while work was left).
    """
    import sqlalchemy as sa

    from core import jobs
    from core.queue import stream_key
    from core.tenant import Tenant

    jobs.enqueue_drain = lambda *_: None  # this loop is the worker's next job
    rt = jobs.runtime()
    rt.redis.ping()
    with rt.sessions() as db:
        db.execute(sa.text("SELECT 1"))
    streams = [stream_key(Tenant(account_id, environment), i) for i in range(partitions)]
    barrier.wait()
    done = calls = turned_away = 0
    turn = first
    while True:
        index = turn % partitions
        turn += 1
        n = jobs.drain(account_id, environment, budget_s=budget_s, partition=index)
        calls += 1
        done += n
        if n == 0 and not fully_drained(rt.redis, streams[index]):
            turned_away += 1  # another worker holds the partition's drain lock
            time.sleep(0.01)
        if turn % partitions == first % partitions and all(fully_drained(rt.redis, s) for s in streams):
            break
    results.put((os.getpid(), done, calls, turned_away))


def run_workers(count: int, account_id: str, environment: str, budget_s: float,
                partitions: int) -> tuple[float, list[tuple[int, ...]]]:
    """Start ``count`` drain processes together; wall time until every one has seen the streams fully drained."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(count + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=drain_worker,
                         args=(account_id, environment, budget_s, partitions, n * partitions // count, barrier,
                               results))
             for n in range(count)]
    try:
        for proc in procs:
            proc.start()
        barrier.wait(timeout=300)
        began = time.perf_counter()
        reports: list[tuple[int, ...]] = []
        while len(reports) < count:
            try:
                reports.append(results.get(timeout=1))
            except queue.Empty:
                failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if failed:
                    raise RuntimeError(f"a drain worker failed (exit codes {failed})") from None
        elapsed = time.perf_counter() - began
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join()
    return elapsed, sorted(reports, key=lambda r: -r[1])


# --stages: (module, function, label) timed around each call; nested stages are included in their callers'.
STAGES = (
    ("core.jobs", "_read", "read the stream (XREADGROUP)"),
    ("core.jobs", "_decode", "decode the commands"),
    ("core.jobs", "_commit", "the batch's transaction (all below, and the commit)"),
    ("core.processors.batch", "_claim_commands", "  claim the command ids"),
    ("core.processors.batch", "lock_visitors", "  the visitors' advisory locks"),
    ("core.processors.batch", "preload", "  preload visitors, sessions, links, bindings"),
    ("core.processors.batch", "_event_or_touch", "  process each event (all below)"),
    ("core.processors.events", "traffic_for", "    channel classification"),
    ("core.processors.events", "ensure_visitor", "    find or create the visitor"),
    ("core.processors.events", "resolve", "    session resolution (with new session rows)"),
    ("core.processors.batch", "write_pending_events", "  writes (all below)"),
    ("core.processors.events", "write_rows", "    visitors, sessions, bindings (COPY, UPDATE)"),
    ("core.processors.events", "copy_rows", "    events (COPY)"),
    ("core.jobs", "_finish", "acknowledge and publish"),
)


class StageTimers:
    """Wraps the ``STAGES`` functions where their callers look them up, and sums their wall time."""

    def __init__(self) -> None:
        import importlib

        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._patched: list[tuple[Any, str, Any]] = []
        for module_name, name, label in STAGES:
            module = importlib.import_module(module_name)
            original = getattr(module, name)
            self._patched.append((module, name, original))
            setattr(module, name, self._timed(label, original))

    def _timed(self, label: str, function: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.totals[label] = self.totals.get(label, 0.0) + time.perf_counter() - began
                self.calls[label] = self.calls.get(label, 0) + 1
        return timed

    def stop(self) -> None:
        for module, name, original in self._patched:
            setattr(module, name, original)

    def report(self, events: int) -> None:
        print("  stages (wall time per drained event; a wrapper adds ~0.3 µs per call):")
        for _, _, label in STAGES:
            if label in self.totals:
                print(f"    {label:<50} {self.totals[label] / max(events, 1) * 1e6:6.1f} µs"
                      f"  ({self.calls[label]:,} calls)")


def ratio(value: float, ceiling: float) -> str:
    return f"{value / ceiling:.2f} × bare" if ceiling else "n/a"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--visitors", type=int, default=10_000)
    parser.add_argument("--sizes", default="", help="comma list of stored-event counts to measure at")
    parser.add_argument("--batch", type=int, default=2000, help="the drain's batch (MBUZZ_DRAIN_BATCH)")
    parser.add_argument("--workers", default="1,2", help="comma list of drain-process counts; 0 or '' for none")
    parser.add_argument("--budget", type=float, default=10.0, help="budget_s of each drain call in the workers")
    parser.add_argument("--late", action="store_true",
                        help="measure events dated in the middle of the stored history instead of after it")
    parser.add_argument("--partitions", type=int, default=4,
                        help="partitions of the workers' tenant (MBUZZ_LOG_PARTITIONS; docs/pipeline.md Q-3-D1)")
    parser.add_argument("--bare-read", type=int, default=1000, help="entries per XREADGROUP of the bare drain")
    parser.add_argument("--stages", action="store_true",
                        help="time the drain's stages in the in-process run and print µs/event for each")
    args = parser.parse_args(argv)
    args.worker_counts = [int(w) for w in args.workers.split(",") if w.strip() and int(w) > 0]
    args.command_line = shlex.join(["python", "bench/drain.py", *(sys.argv[1:] if argv is None else argv)])
    return args


def _print_ratios(args: argparse.Namespace, bare: float, in_process: list[float], by_workers: dict[int, float]) -> None:
    print("ratios (same run):")
    print(f"  in-process drain / bare: {', '.join(f'{r / bare:.2f}' for r in in_process)}"
          f"{' (at ' + args.sizes + ' stored)' if args.sizes else ''}")
    for count, rate in by_workers.items():
        print(f"  {count} worker{'s' if count > 1 else ''} / bare: {rate / bare:.2f}")
    if 1 in by_workers:
        for count, rate in by_workers.items():
            if count > 1:
                print(f"  {count} workers / 1 worker: {rate / by_workers[1]:.2f}x  (one tenant, "
                      f"{args.partitions} partition(s); {os.cpu_count()} CPUs shared with PostgreSQL and Redis)")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    worker_counts = args.worker_counts
    prefix = f"mbuzz-bench-{uuid.uuid4().hex[:6]}"
    os.environ.update({"DATABASE_URL": DB, "REDIS_URL": REDIS, "MBUZZ_DRAIN_BATCH": str(args.batch),
                       "MBUZZ_REDIS_PREFIX": prefix})  # inherited by the spawned workers
    import psycopg
    import redis
    import sqlalchemy as sa

    from core import jobs
    from core.accounts import create_account
    from core.queue import GROUP, stream_key
    from core.storage.db import make_engine, migrate, session_factory
    from core.storage.models import Event
    from core.tenant import Tenant

    print(f"drain benchmark: {args.command_line}")
    print(f"  {os.cpu_count()} CPUs (os.cpu_count()), {args.events:,} events per run, {args.visitors:,} visitors, "
          f"drain batch {args.batch}, bare read {args.bare_read:,}, worker drain budget {args.budget:g} s")

    admin = make_engine(DB.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        name = DB.rsplit("/", 1)[1]
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    client = redis.Redis.from_url(REDIS)
    try:
        migrate(DB)
        engine = make_engine(DB)
        sessions = session_factory(engine)

        def new_tenant(name: str) -> Tenant:
            with sessions.begin() as db:
                account, _, _ = create_account(db, name)
            return Tenant(account.id, "test")

        def analyze() -> None:
            with make_engine(DB, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(sa.text("ANALYZE"))

        def rows_of(tenant: Tenant) -> int:
            with sessions() as db:
                return int(db.scalar(sa.select(sa.func.count()).select_from(Event).where(
                    Event.account_id == tenant.account_id, Event.environment == tenant.environment)) or 0)

        start = datetime.now(UTC) - timedelta(days=300)

        # 1. The ceiling: the same events, read, decoded, COPYed, committed and acknowledged; nothing else.
        tenant = new_tenant("Drain bench")
        with psycopg.connect(DB) as raw:
            raw.execute("CREATE TABLE bare_events (LIKE events INCLUDING DEFAULTS INCLUDING INDEXES)")
            raw.commit()
            bare_stream = f"{prefix}:bare-log"
            fill(client, [bare_stream], args.events, args.visitors, start + timedelta(days=200), 0)
            client.xgroup_create(bare_stream, GROUP, id="0", mkstream=True)
            began = time.perf_counter()
            bare_done = bare_drain(client, raw, bare_stream, tenant.account_id, tenant.environment, args.bare_read)
            bare_s = time.perf_counter() - began
            bare_rows = raw.execute("SELECT count(*) FROM bare_events").fetchone()[0]  # type: ignore[index]
        bare = bare_done / bare_s
        print(f"bare drain (XREADGROUP {args.bare_read:,}, orjson, COPY, commit, XACK+XDEL; the ceiling):")
        print(f"  drained {bare_done:,} in {bare_s:.2f} s = {bare:,.0f} events/s "
              f"({bare_s / max(bare_done, 1) * 1e6:,.0f} µs/event)  rows {bare_rows:,}")

        # 2. core.jobs.drain in this process (what `py-spy record -- python bench/drain.py` samples).
        stream = stream_key(tenant)
        jobs.enqueue_drain = lambda *_: None  # no worker: this process drains
        jobs.runtime()  # as a worker at start: connects and builds the classifiers' tables before any timing
        sizes = [int(s) for s in args.sizes.split(",") if s] or [0]
        stored = 0
        in_process: list[float] = []
        print("in-process drain (core.jobs.drain in this process, one tenant):")
        for run, size in enumerate(sizes):
            while stored < size:  # grow the tables to the next size through the same drain path
                chunk = min(50_000, size - stored)
                # History before the measured window (day 200 on): 50,000 events a day, so up to 10 M stored.
                fill(client, [stream], chunk, args.visitors, start + timedelta(days=stored / 50_000), 1000 + stored)
                jobs.drain(tenant.account_id, tenant.environment, budget_s=1e9)
                stored += chunk
            if size:
                # A running system has autovacuum's statistics for the rows it holds (migration 0003 makes it
                # re-analyse after 1 % change); the growth above outruns autovacuum's one-minute nap.
                analyze()
            # --late: the measured events fall in the middle of the stored history (late events, backfills), with
            # as much of each visitor's history after them as before.
            at = start + timedelta(days=size / 100_000 + 0.5) if args.late else start + timedelta(days=200 + run)
            fill(client, [stream], args.events, args.visitors, at, run * 10_000_000)
            before_rss = current_rss_mb()
            timers = StageTimers() if args.stages else None
            began = time.perf_counter()
            done = jobs.drain(tenant.account_id, tenant.environment, budget_s=1e9)
            elapsed = time.perf_counter() - began
            if timers is not None:
                timers.stop()
            stored += done
            rate = done / elapsed
            in_process.append(rate)
            print(f"  stored before: {size:>9,}  drained {done:,} in {elapsed:.1f} s = {rate:,.0f} events/s "
                  f"({elapsed / max(done, 1) * 1e6:,.0f} µs/event) = {ratio(rate, bare)}  rows now {rows_of(tenant):,}"
                  f"  RSS {before_rss:.0f} MB before, {current_rss_mb():.0f} MB after (peak {rss_mb():.0f})")
            if timers is not None:
                timers.report(done)

        # 3. N OS processes draining one fresh tenant each time (same events), as N RQ workers would.
        by_workers: dict[int, float] = {}
        if worker_counts:
            print(f"drain workers (spawned processes calling core.jobs.drain(budget_s={args.budget:g}) on the "
                  f"tenant's {args.partitions} partition(s) until all are drained; a fresh tenant per count):")
        for count in worker_counts:
            wtenant = new_tenant(f"Drain bench, {count} workers")
            fill(client, [stream_key(wtenant, i) for i in range(args.partitions)], args.events, args.visitors,
                 start + timedelta(days=200), 0)
            analyze()
            elapsed, reports = run_workers(count, wtenant.account_id, wtenant.environment, args.budget,
                                           args.partitions)
            rows = rows_of(wtenant)
            rate = rows / elapsed
            by_workers[count] = rate
            split = " / ".join(f"{r[1]:,}" for r in reports)
            waits = sum(r[3] for r in reports)
            check = "" if rows == args.events else f"  (!! expected {args.events:,} rows)"
            print(f"  {count} worker{'s' if count > 1 else ' '}: drained {rows:,} in {elapsed:.1f} s = {rate:,.0f} "
                  f"events/s = {ratio(rate, bare)}  per worker {split}  drain calls {sum(r[2] for r in reports)}, "
                  f"{waits} turned away by a partition lock{check}")

        _print_ratios(args, bare, in_process, by_workers)
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):  # this run's own keys only
            client.delete(key)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
