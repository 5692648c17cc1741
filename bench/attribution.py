#!/usr/bin/env python3
"""Fit benchmark (quality.md Q-5, Q-6): data-driven fits over a large tenant stored in PostgreSQL.

Seeds one tenant with N journeys (one visitor each, 1-4 sessions over 12 channels, about 10 % converting),
written with COPY, then runs the fit twice exactly as the fit job does: the ATT-23 corpus from PostgreSQL,
then order-1 Markov removal effects and exact Shapley values. Prints the time of each step, the ratio to a bare
binary COPY of the sessions the fit reads (measured in the same run), and whether the two runs agree value for
value (ATT-33). ``--keep`` keeps the seeded database for the next ``--keep`` run of the same size.

    python bench/attribution.py --journeys 1000000 [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DB = "postgresql://postgres@127.0.0.1:5432/mbuzz_attribution_bench"
CHANNELS = ("direct", "display", "email", "organic_search", "organic_social", "paid_search", "paid_social",
            "referral", "affiliate", "video", "ai", "other")  # the twelve of sessions.md CH-1
# How often each channel appears and how much it lifts the chance to convert: the values have something to find.
WEIGHT = (30, 6, 10, 25, 8, 14, 12, 5, 3, 3, 2, 2)
LIFT = (0.02, 0.01, 0.06, 0.03, 0.01, 0.05, 0.02, 0.03, 0.04, 0.01, 0.05, 0.0)
SESSION_COLUMNS = ("account_id", "id", "environment", "visitor_id", "started_at", "last_activity_at", "channel",
                   "utm_raw", "click_ids", "excluded", "touches", "events", "created_at")
CONVERSION_COLUMNS = ("account_id", "id", "environment", "conversion_type", "visitor_id", "named_user",
                      "converted_at", "converted_at_source", "received_at", "refunded_minor", "currency", "status",
                      "is_acquisition", "inherit_acquisition", "properties", "journey_session_ids",
                      "journey_truncated", "attribution_status", "fallbacks", "warnings")


def seed(url: str, account_id: str, journeys: int, now: datetime) -> tuple[int, int]:
    """COPY the sessions and conversions of ``journeys`` one-visitor journeys; returns (sessions, conversions)."""
    import psycopg
    from psycopg.types.json import Jsonb

    from core.ids import new_id

    r = random.Random(20261202)
    sessions = conversions = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        conversion_rows = []  # one COPY at a time per connection: conversions go second
        with cur.copy(f"COPY sessions ({', '.join(SESSION_COLUMNS)}) FROM STDIN") as s_copy:
            empty = Jsonb({})
            for i in range(journeys):
                visitor = f"vis_{i:026d}"
                at = now - timedelta(days=80) + timedelta(seconds=r.randrange(0, 75 * 86_400))
                chance = 0.02
                for _ in range(r.choice((1, 1, 2, 2, 3, 4))):
                    k = r.choices(range(len(CHANNELS)), WEIGHT)[0]
                    chance += LIFT[k]
                    s_copy.write_row((account_id, new_id("sess", at), "test", visitor, at, at, CHANNELS[k], empty,
                                      empty, False, 1, 0, at))
                    sessions += 1
                    at += timedelta(hours=r.randrange(1, 72))
                if r.random() < chance:
                    conversion_rows.append((visitor, at))
        with cur.copy(f"COPY conversions ({', '.join(CONVERSION_COLUMNS)}) FROM STDIN") as c_copy:
            empty_obj, empty_list = Jsonb({}), Jsonb([])
            for visitor, at in conversion_rows:
                c_copy.write_row((account_id, new_id("conv", at), "test", "purchase", visitor, False, at, "timestamp",
                                  at, 0, "USD", "active", False, False, empty_obj, empty_list, False, "complete",
                                  empty_obj, empty_list))
                conversions += 1
        conn.commit()
        cur.execute("ANALYZE")
    return sessions, conversions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--journeys", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true",
                        help="keep the seeded database and reuse it on the next run with --keep")
    args = parser.parse_args(argv)
    import sqlalchemy as sa

    from core.attribution import AttributionSettings
    from core.attribution.fits import fit_markov, fit_shapley
    from core.fitting.corpus import CorpusSpec, sql_corpus
    from core.storage.db import make_engine, migrate, session_factory
    from core.tenant import Tenant

    admin = make_engine(DB.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    kept = _kept_seed(DB, args.journeys) if args.keep else None
    if kept is None:
        with admin.connect() as conn:
            conn.execute(sa.text("DROP DATABASE IF EXISTS mbuzz_attribution_bench WITH (FORCE)"))
            conn.execute(sa.text("CREATE DATABASE mbuzz_attribution_bench"))
    try:
        if kept is None:
            migrate(DB)
            now = datetime.now(UTC).replace(microsecond=0)
            account_id = f"acct_bench{uuid.uuid4().hex[:16]}"
            began = time.perf_counter()
            n_sessions, n_conversions = seed(DB, account_id, args.journeys, now)
            _remember_seed(DB, account_id, now, args.journeys)
            print(f"attribution benchmark: {args.journeys:,} journeys, {n_sessions:,} sessions, "
                  f"{n_conversions:,} conversions, 12 channels (seeded in {time.perf_counter() - began:.0f} s)")
        else:
            account_id, now = kept
            print(f"attribution benchmark: {args.journeys:,} journeys, the kept seed of an earlier --keep run")
        sessions = session_factory(make_engine(DB))
        tenant = Tenant(account_id, "test")
        spec = CorpusSpec(as_of=now, window_days=90, settings=AttributionSettings())
        ceiling = _bare_copy(DB, account_id, spec.window_start - spec.lookback, spec.as_of)
        print(f"  ceiling: a bare binary COPY of the window's sessions (visitor, start, channel) {ceiling:.2f} s")
        runs = []
        for run in (1, 2):
            with sessions.begin() as db:
                t0 = time.perf_counter()
                paths = sql_corpus(db, tenant, spec)
            t1 = time.perf_counter()
            markov = fit_markov(paths)
            t2 = time.perf_counter()
            shapley = fit_shapley(paths)
            t3 = time.perf_counter()
            total = sum(p.count for p in paths)
            print(f"  run {run}: corpus from PostgreSQL {t1 - t0:.2f} s ({len(paths):,} distinct paths, "
                  f"{total:,} journeys, {markov.converting_paths:,} converting); Markov order 1 maths "
                  f"{t2 - t1:.2f} s (Q-5 end to end {t2 - t0:.2f} s, {(t2 - t0) / ceiling:.1f} × the bare COPY); "
                  f"Shapley {t3 - t2:.2f} s after aggregation")
            runs.append((markov.values, markov.conversion_probability, shapley.values))
        print(f"  identical across runs: {runs[0] == runs[1]}")
        print(_one_conversion({"markov_chain": markov.values, "shapley_value": shapley.values}, now))
        print("  removal effects: " + ", ".join(f"{c} {v:.6f}" for c, v in runs[0][0].items()))
        print("  shapley values:  " + ", ".join(f"{c} {v:.6f}" for c, v in runs[0][2].items()))
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(sa.text("DROP DATABASE IF EXISTS mbuzz_attribution_bench WITH (FORCE)"))
    return 0


def _one_conversion(values: dict[str, Any], now: datetime, conversions: int = 2_000) -> str:
    """Q-4: the CPU time of one conversion's attribution (eight models, the fits just made), over journeys of 1 to
    20 sessions spread over the 30-day lookback: the maths the conversion processor runs per conversion."""
    from core.attribution import AttributionSettings, ModelFit, Touchpoint, attribute, journey_for

    r = random.Random(7)
    fits = {model: ModelFit(values=model_values) for model, model_values in values.items()}
    settings = AttributionSettings()
    journeys = []
    for n in range(conversions):
        ages = [timedelta(seconds=r.randrange(30 * 86_400)) for _ in range(r.randint(1, 20))]
        touchpoints = [Touchpoint(f"sess_{n}_{k}", r.choice(CHANNELS), now - age) for k, age in enumerate(ages)]
        journeys.append(journey_for(touchpoints, now, settings))
    began = time.process_time()
    for journey in journeys:
        attribute(journey, now, 12_345, settings, fits)
    per = (time.process_time() - began) / conversions
    return (f"  one conversion's attribution (8 models, 1-20 sessions, mean 10.5): {per * 1000:.2f} ms of CPU "
            f"(Q-4: <= 1 ms)")


def _bare_copy(url: str, account_id: str, start: datetime, end: datetime) -> float:
    """Seconds to stream the sessions a fit reads, unordered and unjoined: what reading the rows costs."""
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        began = time.perf_counter()
        with cur.copy("COPY (SELECT visitor_id, started_at, channel FROM sessions WHERE account_id = %s "
                      "AND environment = 'test' AND started_at BETWEEN %s AND %s) TO STDOUT (FORMAT BINARY)",
                      (account_id, start, end)) as copy:
            for _chunk in copy:
                pass
        return time.perf_counter() - began


def _kept_seed(url: str, journeys: int) -> tuple[str, datetime] | None:
    """The account and seed instant of an earlier ``--keep`` run of the same size, if its database is there."""
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT account_id, seeded_at FROM bench_seed WHERE journeys = %s",
                               (journeys,)).fetchone()
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return None
    return None if row is None else (row[0], row[1])


def _remember_seed(url: str, account_id: str, now: datetime, journeys: int) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE bench_seed (account_id text, seeded_at timestamptz, journeys integer)")
        conn.execute("INSERT INTO bench_seed VALUES (%s, %s, %s)", (account_id, now, journeys))


if __name__ == "__main__":
    os.environ.setdefault("DATABASE_URL", DB)
    raise SystemExit(main())
