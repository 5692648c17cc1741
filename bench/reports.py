#!/usr/bin/env python3
"""Report benchmark (quality.md Q-7, dashboard.md DSH-22): Overview and Channels over 1,000,000 conversions.

Seeds one tenant's live environment in PostgreSQL with COPY: N conversions over the last ``--days`` days (journeys of
1-6 sessions over 12 channels, two currencies, two conversion types, two funnels, 2 % without a journey) and the
credit rows of all eight models, as the attribution processor stores them. Then, through the real Flask app and a
logged-in dashboard session, it times:

- the first page read of an upgraded install: answered from the source tables while the rollups build;
- Overview and Channels warm (30, 90 and 365 days, Channels with a compared model), 7 runs each;
- the same pages right after a conversion changed (one dirty day recomputed before the read);
- for contrast, the same report read from the source tables (``use_rollups=False``), what a page cost before.

    python bench/reports.py --conversions 1000000 --days 90     # 11,000 conversions a day
    python bench/reports.py --conversions 1000000 --days 365    # a year of a large shop
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DB = "postgresql://postgres@127.0.0.1:5432/mbuzz_reports_bench"
EMAIL, PASSWORD = "bench@example.com", "bench-password-123"
CHANNELS = ("direct", "display", "email", "organic_search", "organic_social", "paid_search", "paid_social",
            "referral", "affiliate", "video", "ai", "other")
WEIGHT = (30, 6, 10, 25, 8, 14, 12, 5, 3, 3, 2, 2)
MODELS = ("first_touch", "last_touch", "linear", "time_decay", "u_shaped", "participation", "markov_chain",
          "shapley_value")
CONVERSION_COLUMNS = ("account_id", "id", "environment", "conversion_type", "visitor_id", "named_user",
                      "converted_at", "converted_at_source", "received_at", "refunded_minor", "currency", "status",
                      "is_acquisition", "inherit_acquisition", "properties", "journey_session_ids",
                      "journey_truncated", "attribution_status", "fallbacks", "warnings", "revenue_minor",
                      "net_revenue_minor", "sessions_analyzed", "funnel", "attributed_at")
CREDIT_COLUMNS = ("account_id", "conversion_id", "model", "session_id", "environment", "touchpoint_index",
                  "journey_length", "channel", "position", "credit", "revenue_credit_minor", "currency",
                  "converted_at", "model_config_version", "created_at")


def _split(model: str, n: int) -> list[int]:
    """Credit units (× 10,000) per touchpoint, summing to 10,000 (participation: 10,000 each)."""
    if model == "first_touch":
        return [10_000] + [0] * (n - 1)
    if model == "last_touch":
        return [0] * (n - 1) + [10_000]
    if model == "participation":
        return [10_000] * n
    if model == "u_shaped" and n > 2:
        middle = [2_000 // (n - 2)] * (n - 2)
        middle[-1] += 2_000 - sum(middle)
        return [4_000, *middle, 4_000]
    if model == "time_decay":
        weights = [2 ** i for i in range(n)]
    else:
        weights = [1] * n
    units = [10_000 * w // sum(weights) for w in weights]
    units[-1] += 10_000 - sum(units)
    return units


def seed(url: str, account_id: str, conversions: int, now: datetime, days: int) -> int:
    """COPY ``conversions`` conversions and their credit rows; returns the number of credit rows."""
    import psycopg
    from psycopg.types.json import Jsonb

    from core.ids import new_id

    r = random.Random(20261202)
    credits = 0
    empty_obj, empty_list = Jsonb({}), Jsonb([])
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        plan = []
        with cur.copy(f"COPY conversions ({', '.join(CONVERSION_COLUMNS)}) FROM STDIN") as copy:
            for i in range(conversions):
                at = now - timedelta(seconds=r.randrange(60, days * 86_400))
                signup = r.random() < 0.3
                currency = "EUR" if r.random() < 0.15 else "USD"
                revenue = None if signup else r.randrange(500, 40_000)
                length = 0 if r.random() < 0.02 else r.choice((1, 1, 2, 2, 3, 4, 5, 6))
                conv_id = new_id("conv", at)
                copy.write_row((account_id, conv_id, "live", "signup" if signup else "purchase", f"vis_{i:026d}",
                                False, at, "timestamp", at, 0, currency, "active", signup, False, empty_obj,
                                empty_list, False, "complete", empty_obj, empty_list, revenue, revenue, length,
                                "signup" if signup else "checkout", at))
                if length:
                    plan.append((conv_id, at, currency, revenue, length))
        with cur.copy(f"COPY attribution_credits ({', '.join(CREDIT_COLUMNS)}) FROM STDIN") as copy:
            for conv_id, at, currency, revenue, length in plan:
                channels = r.choices(CHANNELS, WEIGHT, k=length)
                sessions = [new_id("sess", at - timedelta(days=length - k)) for k in range(length)]
                for model in MODELS:
                    for k, units in enumerate(_split(model, length)):
                        if units == 0 and model in ("first_touch", "last_touch"):
                            continue
                        position = "first" if k == 0 else "last" if k == length - 1 else "middle"
                        share = None if revenue is None else revenue * units // 10_000
                        copy.write_row((account_id, conv_id, model, sessions[k], "live", k, length, channels[k],
                                        position, f"{units / 10_000:.4f}", share, currency, at, 1, at))
                        credits += 1
        conn.commit()
        cur.execute("ANALYZE")
    return credits


LINES: list[str] = []
DOC = ROOT / "docs" / "performance.md"
MARKS = ("<!-- bench/reports.py output -->", "<!-- /bench/reports.py output -->")


def say(line: str) -> None:
    """Print a figure, and keep it for ``--record``."""
    print(line, flush=True)
    LINES.append(line)


def record() -> None:
    """Write this run's figures between the markers of docs/performance.md (Q-7's section)."""
    text = DOC.read_text()
    start, end = text.index(MARKS[0]) + len(MARKS[0]), text.index(MARKS[1])
    block = "\n```text\n" + "\n".join(LINES) + "\n```\n"
    DOC.write_text(text[:start] + block + text[end:])


def _timed(call: object, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversions", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90, help="the conversions' span, ending now")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the seeded database for a later --reuse")
    parser.add_argument("--reuse", action="store_true", help="reuse a database kept by --keep (same size)")
    parser.add_argument("--record", action="store_true", help="write the figures into docs/performance.md")
    args = parser.parse_args(argv)
    import sqlalchemy as sa

    from core import accounts
    from core.reports import attribution_report, daily_totals, resolve_range
    from core.storage.db import make_engine, migrate
    from core.storage.models import Account, AttributionCredit, Conversion, ReportRollupState
    from core.tenant import Tenant
    from gateway import create_app
    from gateway.config import Settings

    admin = make_engine(DB.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    if not args.reuse:
        with admin.connect() as conn:
            conn.execute(sa.text("DROP DATABASE IF EXISTS mbuzz_reports_bench WITH (FORCE)"))
            conn.execute(sa.text("CREATE DATABASE mbuzz_reports_bench"))
    try:
        migrate(DB)
        app = create_app(Settings(database_url=DB, redis_url=None, secret_key="bench"))
        services = app.config["MBUZZ"]
        if args.reuse:  # measure the build again: forget the rollups
            with services.sessions.begin() as db:
                account = db.scalars(sa.select(Account)).one()
                for table in ("report_credit_days", "report_conversion_days", "report_dirty_days",
                              "report_rollup_states"):
                    db.execute(sa.text(f"DELETE FROM {table}"))
                now, n_conversions, n_credits = (
                    db.scalar(sa.select(sa.func.max(Conversion.converted_at))),
                    db.scalar(sa.select(sa.func.count()).select_from(Conversion)),
                    db.scalar(sa.select(sa.func.count()).select_from(AttributionCredit)))
            say(f"report benchmark (reused database): {n_conversions:,} conversions, {n_credits:,} credit rows")
        else:
            with services.sessions.begin() as db:
                account = accounts.create_account(db, "Bench", EMAIL, PASSWORD)[0]
            now = datetime.now(UTC).replace(microsecond=0)
            began = time.perf_counter()
            n_credits = seed(DB, account.id, args.conversions, now, args.days)
            say(f"report benchmark: {args.conversions:,} conversions over {args.days} days, {n_credits:,} credit "
                  f"rows (8 models), seeded in {time.perf_counter() - began:.0f} s")
        tenant = Tenant(account.id, "live")

        client = app.test_client()
        page = client.get("/dashboard/login").get_data(as_text=True)
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        assert client.post("/dashboard/login", data={"email": EMAIL, "password": PASSWORD,
                                                     "csrf_token": token}).status_code == 302

        def get(path: str) -> None:
            resp = client.get(path)
            assert resp.status_code == 200, (path, resp.status_code)

        pages = {
            "Overview 30 days": "/dashboard/?date_range=30d&model=linear",
            "Overview 90 days": "/dashboard/?date_range=90d&model=linear",
            "Overview 365 days": "/dashboard/?date_range=365d&model=linear",
            "Channels 30 days": "/dashboard/channels?date_range=30d&model=linear",
            "Channels 90 days, compare first_touch": "/dashboard/channels?date_range=90d&model=linear"
                                                     "&compare=first_touch",
        }
        t0 = time.perf_counter()
        get(pages["Overview 30 days"])  # a large tenant's first read: sources, the rollups build in the background
        first = time.perf_counter() - t0
        while True:
            with services.sessions() as db:
                if db.get(ReportRollupState, (account.id, "live")) is not None:
                    break
            time.sleep(0.5)
        say(f"  first read {first:.1f} s (from the source tables); rollups built in the background in "
            f"{time.perf_counter() - t0:.1f} s")
        for name, path in pages.items():
            median, worst = _timed(lambda p=path: get(p), args.runs)
            say(f"  {name}: median {median:.0f} ms, max {worst:.0f} ms over {args.runs} runs (Q-7: <= 500 ms)")

        def touch_one_conversion() -> None:
            with services.sessions.begin() as db:
                conv = db.scalars(sa.select(Conversion).where(
                    Conversion.account_id == account.id, Conversion.converted_at > now - timedelta(days=1))
                    .limit(1)).one()
                conv.net_revenue_minor = (conv.net_revenue_minor or 0) + 1  # e.g. a refund's re-split

        times = []
        for _ in range(args.runs):
            touch_one_conversion()
            t0 = time.perf_counter()
            get(pages["Overview 30 days"])
            times.append((time.perf_counter() - t0) * 1000)
        say(f"  Overview 30 days right after a change (one day recomputed): median "
              f"{statistics.median(times):.0f} ms, max {max(times):.0f} ms")

        rng = resolve_range("30d", None, None, "UTC", now.date())
        with services.sessions() as db:
            def from_source() -> None:
                attribution_report(db, tenant, rng, models=["linear"], use_rollups=False)
                daily_totals(db, tenant, rng, use_rollups=False)
            median, worst = _timed(from_source, 3)
        say(f"  for contrast, Overview's queries on the source tables (no rollups), 30 days: median "
              f"{median:.0f} ms, max {worst:.0f} ms")
        if args.record:
            record()
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(sa.text("DROP DATABASE IF EXISTS mbuzz_reports_bench WITH (FORCE)"))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("DATABASE_URL", DB)
    raise SystemExit(main())
