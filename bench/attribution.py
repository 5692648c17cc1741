#!/usr/bin/env python3
"""Fit benchmark (quality.md Q-5, Q-6): data-driven fits over a large tenant stored in PostgreSQL.

Seeds one tenant with N journeys (one visitor each, 1-4 sessions over 12 channels, about 10 % converting),
written with COPY, then runs the fit twice exactly as the fit job does: the ATT-23 corpus from PostgreSQL,
then order-1 Markov removal effects and exact Shapley values. Prints the time of each step and whether the two
runs agree value for value (ATT-33).

    python bench/attribution.py --journeys 1000000
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DB = "postgresql://postgres@127.0.0.1:5432/mbuzz_attribution_bench"
CHANNELS = ("direct", "display", "email", "organic_search", "organic_social", "paid_search", "paid_social",
            "referral", "affiliate", "video", "sms", "other")
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
    args = parser.parse_args(argv)
    import sqlalchemy as sa

    from core.attribution import AttributionSettings
    from core.attribution.fits import fit_markov, fit_shapley
    from core.fitting.corpus import CorpusSpec, sql_corpus
    from core.storage.db import make_engine, migrate, session_factory
    from core.tenant import Tenant

    admin = make_engine(DB.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS mbuzz_attribution_bench WITH (FORCE)"))
        conn.execute(sa.text("CREATE DATABASE mbuzz_attribution_bench"))
    try:
        migrate(DB)
        now = datetime.now(UTC).replace(microsecond=0)
        account_id = f"acct_bench{uuid.uuid4().hex[:16]}"
        began = time.perf_counter()
        n_sessions, n_conversions = seed(DB, account_id, args.journeys, now)
        print(f"attribution benchmark: {args.journeys:,} journeys, {n_sessions:,} sessions, "
              f"{n_conversions:,} conversions, 12 channels (seeded in {time.perf_counter() - began:.0f} s)")
        sessions = session_factory(make_engine(DB))
        tenant = Tenant(account_id, "test")
        spec = CorpusSpec(as_of=now, window_days=90, settings=AttributionSettings())
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
                  f"{t2 - t1:.2f} s (Q-5 end to end {t2 - t0:.2f} s); Shapley {t3 - t2:.2f} s after aggregation")
            runs.append((markov.values, markov.conversion_probability, shapley.values))
        print(f"  identical across runs: {runs[0] == runs[1]}")
        print("  removal effects: " + ", ".join(f"{c} {v:.6f}" for c, v in runs[0][0].items()))
        print("  shapley values:  " + ", ".join(f"{c} {v:.6f}" for c, v in runs[0][2].items()))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text("DROP DATABASE IF EXISTS mbuzz_attribution_bench WITH (FORCE)"))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("DATABASE_URL", DB)
    raise SystemExit(main())
