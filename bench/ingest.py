#!/usr/bin/env python3
"""Ingest benchmark (quality.md Q-1, Q-2, Q-4, Q-8).

Creates a fresh PostgreSQL database, migrates it, creates an account, starts gunicorn (gthread) on a free
loopback port **without** ``REDIS_URL`` (inline mode: every request is processed and committed before the
answer) and drives it from separate client processes, so the load generator never shares a GIL with the
server. Each client process runs a few threads with keep-alive ``http.client`` connections.

Modes::

    python bench/ingest.py                      # single-event POST /api/v1/events (Q-1)
    python bench/ingest.py --batch 100          # 100 events per request, rows counted in PostgreSQL (Q-2)
    python bench/ingest.py --conversions        # seed journeys via POST /sessions, then POST /conversions (Q-4)
    python bench/ingest.py --baseline           # also a bare "validate JSON + XADD to Redis" app, same stack
    python bench/ingest.py --rate 800           # open loop at 800 requests/s: p99 at a fixed rate (Q-1)
    python bench/ingest.py --profile 8          # py-spy record every worker for 8 s during the measurement

Prints requests/s, events/s, p50/p99 latency, errors by status, gunicorn worker RSS (Q-8) and, for event
modes, the rows in ``events`` against the events the server accepted. gunicorn is always stopped and the
database dropped at the end (unless ``--keep``).
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/mbuzz_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
BARE_STREAM = "mbuzz_bench:bare"
EVENTS_PATH = "/api/v1/events"

# ------------------------------------------------------------------------------------- realistic payloads

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
    "Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 "
    "Mobile/15E148 Safari/604.1",
)
BOT_AGENTS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
)
REFERRERS = (
    "https://www.google.com/",
    "https://www.bing.com/search?q=running+shoes",
    "https://duckduckgo.com/",
    "https://www.facebook.com/",
    "https://l.instagram.com/",
    "https://t.co/abc123",
    "https://www.reddit.com/r/running/comments/xyz/",
    "https://news.ycombinator.com/item?id=4242",
    "https://chatgpt.com/",
    "https://partner-blog.example.org/best-shoes-2026",
)
UTMS = (
    ("google", "cpc", "brand_search"),
    ("facebook", "paid_social", "spring_sale"),
    ("newsletter", "email", "weekly_digest"),
    ("instagram", "social", "influencer_q2"),
    ("partner", "affiliate", "partner_launch"),
    ("linkedin", "paid_social", "b2b_retarget"),
)
PATHS = ("/", "/products/trail-runner", "/products/road-racer", "/collections/sale", "/blog/how-to-choose",
         "/cart", "/checkout", "/pricing", "/about", "/search?q=shoes")
BARE_EVENTS = ("add_to_cart", "checkout_started", "signup", "newsletter_subscribed", "video_played",
               "product_viewed", "order_shipped")
SITE = "https://shop.example.com"


def _visitor_id(i: int) -> str:
    return f"vis_{i:06d}_{(i * 2654435761) % 2**32:08x}"


def _visitor_profile(i: int) -> tuple[str, str]:
    """A stable user agent and IP per visitor (the fingerprint stays constant, as in real traffic)."""
    r = random.Random(i)
    agent = BOT_AGENTS[i % 2] if i % 50 == 0 else r.choice(USER_AGENTS)
    ip = f"{r.choice((81, 92, 151, 185, 203))}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
    return agent, ip


def _landing_url(r: random.Random) -> tuple[str, str | None]:
    """A landing URL (some with UTMs / click ids) and a referrer or None."""
    url = SITE + r.choice(PATHS)
    sep = "&" if "?" in url else "?"
    roll = r.random()
    referrer: str | None = None
    if roll < 0.20:
        source, medium, campaign = r.choice(UTMS)
        url += f"{sep}utm_source={source}&utm_medium={medium}&utm_campaign={campaign}"
        referrer = r.choice(REFERRERS) if r.random() < 0.5 else None
    elif roll < 0.27:
        url += f"{sep}gclid=Cj0KCQiA{r.getrandbits(64):016x}"
        referrer = "https://www.google.com/"
    elif roll < 0.30:
        url += f"{sep}fbclid=IwAR{r.getrandbits(64):016x}"
        referrer = "https://m.facebook.com/"
    elif roll < 0.65:
        referrer = r.choice(REFERRERS)
    elif roll < 0.80:
        referrer = SITE + r.choice(PATHS)  # internal navigation
    return url, referrer


class EventGen:
    """~60 % page views (URL, referrer, UTMs, click ids), ~40 % bare events; ~10k distinct visitors."""

    def __init__(self, rng: random.Random, visitors: int) -> None:
        self.rng = rng
        self.visitors = visitors

    def event(self) -> dict[str, Any]:
        r = self.rng
        i = r.randrange(self.visitors)
        agent, ip = _visitor_profile(i)
        ev: dict[str, Any] = {"visitor_id": _visitor_id(i)}
        if r.random() < 0.6:
            url, referrer = _landing_url(r)
            props: dict[str, Any] = {"url": url, "title": "Example Shop"}
            if referrer:
                props["referrer"] = referrer
            ev["event_type"] = "page_view"
            ev["properties"] = props
            ev["ip"] = ip
            ev["user_agent"] = agent
        else:
            ev["event_type"] = r.choice(BARE_EVENTS)
            ev["properties"] = {"product_id": f"sku_{r.randrange(500)}", "price": round(r.uniform(5, 300), 2)}
            if r.random() < 0.5:
                ev["ip"] = ip
                ev["user_agent"] = agent
        if r.random() < 0.3:  # some clients stamp the event a little in the past
            ev["timestamp"] = (datetime.now(UTC) - timedelta(seconds=r.uniform(0, 30))).isoformat()
        return ev


def _touches(i: int, r: random.Random, now: datetime) -> list[bytes]:
    """1–20 sessions of one visitor, oldest first, 2–28 h apart (all inside the 30-day lookback)."""
    n = r.randint(1, 20)
    agent, ip = _visitor_profile(i)
    visitor = _visitor_id(i)
    t = now - timedelta(minutes=5)
    starts = []
    for _ in range(n):
        starts.append(t)
        t -= timedelta(hours=r.uniform(2, 28))
    out = []
    for j, started in enumerate(reversed(starts)):
        url, referrer = _landing_url(r)
        body: dict[str, Any] = {"visitor_id": visitor, "session_id": f"{visitor}-s{j:02d}", "url": url,
                                "started_at": started.isoformat(), "user_agent": agent, "ip": ip}
        if referrer:
            body["referrer"] = referrer
        out.append(orjson.dumps(body))
    return out


# ------------------------------------------------------------------------------------- load generator


@dataclass(frozen=True)
class LoadSpec:
    port: int
    key: str
    mode: str  # "events" | "conversions" | "seed"
    batch: int
    threads: int
    start_at: float  # time.time() at which every thread starts
    measure_from: float  # requests started before this are warm-up
    stop_at: float
    seed: int
    visitors: int
    conv_visitors: tuple[str, ...] = ()  # visitor ids that have seeded journeys
    seed_ids: tuple[int, ...] = ()
    interval: float = 0.0  # --rate: seconds between one thread's sends (open loop); 0 = send when answered


@dataclass
class Stats:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    events_accepted: int = 0  # inside the measurement window
    events_accepted_total: int = 0  # including warm-up
    complete: int = 0  # conversions whose attribution is complete
    sessions_analyzed: int = 0
    samples: list[str] = field(default_factory=list)  # first error bodies

    def merge(self, other: Stats) -> None:
        self.statuses.update(other.statuses)
        self.latencies.extend(other.latencies)
        self.requests += other.requests
        self.events_accepted += other.events_accepted
        self.events_accepted_total += other.events_accepted_total
        self.complete += other.complete
        self.sessions_analyzed += other.sessions_analyzed
        for s in other.samples:
            if len(self.samples) < 5:
                self.samples.append(s)


class Client:
    """One keep-alive connection; reconnects after a failure."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                        "User-Agent": "mbuzz-bench/1.0"}
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Returns (status, body); status 0 means a connection error."""
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            conn = self.conn
            try:
                conn.request("POST", path, body, self.headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    self.conn = None
                return resp.status, data
            except (OSError, http.client.HTTPException) as exc:
                with suppress(Exception):
                    conn.close()
                self.conn = None
                if attempt == 1:
                    return 0, repr(exc).encode()
        raise AssertionError("unreachable")


def _record(stats: Stats, status: int, data: bytes, started: float, elapsed: float, spec: LoadSpec,
            on_ok: Callable[[Stats, bytes, bool], None]) -> None:
    measured = started >= spec.measure_from
    if 200 <= status < 300:
        on_ok(stats, data, measured)
    elif len(stats.samples) < 5:
        stats.samples.append(f"{status}: {data[:300]!r}")
    if measured:
        stats.requests += 1
        stats.latencies.append(elapsed)
        stats.statuses[str(status) if status else "conn_error"] += 1


def _events_ok(stats: Stats, data: bytes, measured: bool) -> None:
    accepted = int(orjson.loads(data)["accepted"])
    stats.events_accepted_total += accepted
    if measured:
        stats.events_accepted += accepted


def _conversion_ok(stats: Stats, data: bytes, measured: bool) -> None:
    if not measured:
        return
    attribution = orjson.loads(data).get("attribution") or {}
    stats.events_accepted += 1
    if attribution.get("status") == "complete":
        stats.complete += 1
    stats.sessions_analyzed += int(attribution.get("sessions_analyzed") or 0)


def _seed_ok(stats: Stats, data: bytes, measured: bool) -> None:
    stats.events_accepted += 1


def _thread(spec: LoadSpec, tid: int, pool: list[bytes], path: str, stats: Stats,
            jobs: queue.Queue[list[bytes]] | None) -> None:
    client = Client(spec.port, spec.key)
    rng = random.Random(spec.seed * 7919 + tid)
    on_ok = {"events": _events_ok, "conversions": _conversion_ok, "seed": _seed_ok}[spec.mode]
    time.sleep(max(0.0, spec.start_at - time.time()))
    if jobs is not None:  # seeding: every touch of one visitor in order, from one thread
        while True:
            try:
                touches = jobs.get_nowait()
            except queue.Empty:
                return
            for body in touches:
                if time.time() >= spec.stop_at:
                    return
                started, t0 = time.time(), time.perf_counter()
                status, data = client.post(path, body)
                _record(stats, status, data, started, time.perf_counter() - t0, spec, on_ok)
    n = len(pool)
    i = rng.randrange(n)
    due = spec.start_at + rng.random() * spec.interval  # --rate: the threads' sends spread over one interval
    while True:
        started = time.time()
        if spec.interval:  # open loop: a late answer delays nothing, and its latency counts from when it was due
            time.sleep(max(0.0, due - started))
            started, due = due, due + spec.interval
        if started >= spec.stop_at:
            return
        body = pool[i % n]
        i += 1
        status, data = client.post(path, body)
        _record(stats, status, data, started, time.time() - started, spec, on_ok)


def _conversion_body(r: random.Random, visitors: tuple[str, ...]) -> bytes:
    return orjson.dumps({
        "conversion_type": "purchase",
        "visitor_id": r.choice(visitors),
        "revenue": f"{r.uniform(10, 400):.2f}",
        "currency": "USD",
        "properties": {"order_id": f"ord_{r.getrandbits(48):012x}"},
    })


def load_process(spec: LoadSpec, results: Any) -> None:
    """Entry point of one client process: builds its payloads, runs ``spec.threads`` threads, reports Stats."""
    rng = random.Random(spec.seed)
    jobs: queue.Queue[list[bytes]] | None = None
    pool: list[bytes] = []
    if spec.mode == "events":
        gen = EventGen(rng, spec.visitors)
        size = max(64, 6000 // spec.batch)
        if spec.batch == 1:
            pool = [orjson.dumps({"events": [gen.event()]}) for _ in range(size)]
        else:
            pool = [orjson.dumps({"events": [gen.event() for _ in range(spec.batch)]}) for _ in range(size)]
        path = EVENTS_PATH
    elif spec.mode == "conversions":
        pool = [_conversion_body(rng, spec.conv_visitors) for _ in range(4000)]
        path = "/api/v1/conversions"
    else:
        now = datetime.now(UTC)
        jobs = queue.Queue()
        for i in spec.seed_ids:
            jobs.put(_touches(i, random.Random(i), now))
        path = "/api/v1/sessions"
    per_thread = [Stats() for _ in range(spec.threads)]
    threads = [
        threading.Thread(target=_thread, args=(spec, t, pool, path, per_thread[t], jobs), daemon=True)
        for t in range(spec.threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = Stats()
    for s in per_thread:
        total.merge(s)
    results.put(total)


def run_load(specs: list[LoadSpec], on_tick: Callable[[], None] | None = None) -> Stats:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=load_process, args=(spec, results), daemon=True) for spec in specs]
    for p in procs:
        p.start()
    total = Stats()
    got = 0
    while got < len(procs):
        try:
            total.merge(results.get(timeout=0.5))
            got += 1
        except queue.Empty:
            if on_tick is not None:
                on_tick()
            if not any(p.is_alive() for p in procs) and results.empty():
                raise RuntimeError("a load process died without reporting") from None
    for p in procs:
        p.join(timeout=10)
    return total


# ------------------------------------------------------------------------------------- server side


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _admin_url(url: str) -> str:
    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://"))
    return urlunsplit(parts._replace(path="/postgres"))


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://").replace("postgres://", "postgresql://", 1)


def create_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    name = _db_name(url)
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_db_name(url))))


def prepare_database(url: str) -> str:
    """Migrates ``url`` and creates the benchmark account; returns its test secret key."""
    sys.path.insert(0, str(ROOT))
    from core import accounts
    from core.storage.db import make_engine, migrate, session_factory

    migrate(url)
    engine = make_engine(url)
    try:
        with session_factory(engine).begin() as db:
            _account, test_key, _live = accounts.create_account(db, "Bench", "bench@example.com", "bench-password")
    finally:
        engine.dispose()
    return test_key.plaintext


def count_rows(url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(_plain(url)) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # table names are constants
    return int(row[0]) if row else 0


def refresh_statistics(url: str) -> list[str]:
    """What a running server's statistics keeper (core.storage.statistics, every minute) would have done by now:
    the seeded tables analysed, so the measured load is planned as on a server that has been up a while."""
    from core.storage.db import make_engine
    from core.storage.statistics import refresh_statistics as refresh

    engine = make_engine(url)
    try:
        return refresh(engine)
    finally:
        engine.dispose()


def journey_lengths(url: str) -> dict[str, int]:
    """visitor id -> number of sessions, for the visitors that have at least one."""
    import psycopg

    with psycopg.connect(_plain(url)) as conn:
        rows = conn.execute(
            "SELECT v.visitor_key, count(*) FROM visitors v JOIN sessions s ON s.visitor_id = v.id "
            "AND s.account_id = v.account_id AND s.environment = v.environment GROUP BY v.visitor_key"
        ).fetchall()
    return {str(k): int(n) for k, n in rows}


class Server:
    """gunicorn (or granian, ``--server granian``) in its own process group, stopped (group-wide, our own
    processes only) by ``stop``. ``app`` is a factory call, ``module:function()``."""

    def __init__(self, app: str, env: dict[str, str], workers: int, threads: int, logdir: Path,
                 kind: str = "gunicorn") -> None:
        self.port = free_port()
        self.log_path = logdir / f"{kind}-{self.port}.log"
        local = Path(sys.executable).parent / kind
        exe = str(local) if local.exists() else (shutil.which(kind) or kind)
        if kind == "granian":
            cmd = [exe, "--interface", "wsgi", "--factory", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", str(workers), "--blocking-threads", str(threads), "--log-level", "warning",
                   app.removesuffix("()")]
        else:
            cmd = [exe, "-c", str(ROOT / "gunicorn.conf.py"), "--workers", str(workers), "--threads", str(threads),
                   "--bind", f"127.0.0.1:{self.port}", "--keep-alive", "30", "--log-level", "warning",
                   "--graceful-timeout", "5", app]
        self.command = " ".join(cmd)
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/api/v1/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    if len(self.workers()) > 0:
                        return
                conn.close()
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not healthy after {timeout} s:\n{self.log_tail()}")

    def workers(self) -> list[int]:
        """Worker pids: the children of the gunicorn master."""
        master = self.proc.pid
        try:
            text = Path(f"/proc/{master}/task/{master}/children").read_text()
            return [int(p) for p in text.split()]
        except OSError:
            pids = []
            for stat in Path("/proc").glob("[0-9]*/stat"):
                with suppress(OSError, ValueError, IndexError):
                    if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                        pids.append(int(stat.parent.name))
            return pids

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler:
    """Peak and last VmRSS of every gunicorn worker, sampled while the load runs."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._next = 0.0

    def tick(self) -> None:
        now = time.time()
        if now < self._next:
            return
        self._next = now + 0.5
        for pid in self.server.workers():
            mb = rss_mb(pid)
            if mb is not None:
                self.last[pid] = mb
                self.peak[pid] = max(self.peak.get(pid, 0.0), mb)

    def report(self) -> str:
        if not self.peak:
            return "n/a"
        return ", ".join(f"pid {pid}: {self.last[pid]:.0f} MB (peak {self.peak[pid]:.0f})"
                         for pid in sorted(self.peak))


# ------------------------------------------------------------------------------------- profiling


class Profiler:
    """``py-spy record --gil --format raw`` on every worker for a few seconds inside the measurement window: only
    the thread holding the GIL is sampled, so a thread waiting for it (or for a socket) is not counted as busy."""

    def __init__(self, server: Server, seconds: int, start_at: float, outdir: Path) -> None:
        self.server, self.seconds, self.start_at, self.outdir = server, seconds, start_at, outdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.files: list[Path] = []
        self.started = False

    def tick(self) -> None:
        if self.started or time.time() < self.start_at:
            return
        self.started = True
        spy = Path(sys.executable).parent / "py-spy"
        exe = str(spy) if spy.exists() else shutil.which("py-spy")
        if exe is None:
            print("  (py-spy not installed: pip install py-spy)")
            return
        for pid in self.server.workers():
            out = self.outdir / f"pyspy-{pid}.txt"
            self.files.append(out)
            self.procs.append(subprocess.Popen(
                [exe, "record", "--pid", str(pid), "--duration", str(self.seconds), "--rate", "200",
                 "--format", "raw", "--output", str(out), "--nonblocking", "--gil"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def report(self, top: int = 15) -> None:
        for p in self.procs:
            try:
                p.wait(timeout=self.seconds + 30)
            except subprocess.TimeoutExpired:
                p.kill()
        self_time: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        deepest: Counter[str] = Counter()  # the innermost project frame (file:line) of each sample
        total = 0
        for path in self.files:
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                stack, _, count_text = line.rpartition(" ")
                if not stack or not count_text.isdigit():
                    continue
                count = int(count_text)
                frames = stack.split(";")
                total += count
                self_time[_frame(frames[-1], lines=False)] += count
                for name in {_frame(f, lines=False) for f in frames if _ours(f)}:
                    inclusive[name] += count
                ours = [f for f in frames if _ours(f)]
                if ours:
                    deepest[_frame(ours[-1], lines=True)] += count
        if not total:
            print("  profile: no samples")
            return
        print(f"  profile: {total} samples of busy threads over {len(self.files)} workers ({self.outdir})")
        for title, counter in (("self time (any code)", self_time), ("innermost project line", deepest),
                               ("inclusive, project functions", inclusive)):
            print(f"  top {title}:")
            for name, count in counter.most_common(top):
                print(f"    {100 * count / total:5.1f}%  {name}")


def _ours(frame: str) -> bool:
    where = frame.rpartition(" (")[2]
    return where.startswith(("core/", "gateway/")) or "/core/" in where or "/gateway/" in where


def _frame(frame: str, lines: bool) -> str:
    """``func (path/mod.py:12)`` from py-spy's raw format, with or without the line number."""
    name, _, where = frame.rpartition(" (")
    where = where.rstrip(")")
    if str(ROOT) + "/" in where:
        where = where.split(str(ROOT) + "/", 1)[1]
    return f"{name} ({where if lines else where.rsplit(':', 1)[0]})"


# ------------------------------------------------------------------------------------- reporting


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def server_errors(stats: Stats) -> int:
    return sum(v for k, v in stats.statuses.items() if k.startswith("5"))


def summary(label: str, stats: Stats, seconds: float) -> dict[str, float]:
    rps = stats.requests / seconds
    eps = stats.events_accepted / seconds
    p50 = percentile(stats.latencies, 0.50) * 1000
    p99 = percentile(stats.latencies, 0.99) * 1000
    errors = {k: v for k, v in sorted(stats.statuses.items()) if not k.startswith("2")}
    print(f"{label}:")
    print(f"  requests: {stats.requests} in {seconds:.1f} s = {rps:,.0f} requests/s")
    print(f"  accepted items: {stats.events_accepted} = {eps:,.0f} /s")
    print(f"  latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(stats.latencies, default=0) * 1000:.0f} ms")
    print(f"  statuses: {dict(sorted(stats.statuses.items()))}; errors: {errors or 'none'}")
    for sample in stats.samples:
        print(f"    e.g. {sample}")
    return {"rps": rps, "eps": eps, "p50": p50, "p99": p99}


# ------------------------------------------------------------------------------------- bare baseline app


def bare_app() -> Any:
    """Q-1's reference: the same gunicorn/Flask stack, an endpoint that only checks the key's format, parses
    the JSON and appends it to a Redis stream. ``gunicorn 'bench.ingest:bare_app()'`` (BENCH_REDIS_URL)."""
    import redis
    from flask import Flask, Response, request

    app = Flask("mbuzz_bare")
    client = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS))
    stream = os.environ.get("BENCH_REDIS_STREAM", BARE_STREAM)

    @app.post(EVENTS_PATH)
    def events() -> Response:
        if not (request.headers.get("Authorization") or "").startswith("Bearer sk_"):
            return Response(b'{"error":"Missing Authorization header"}', 401, mimetype="application/json")
        raw = request.get_data(cache=False)
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return Response(b'{"error":"Invalid JSON"}', 400, mimetype="application/json")
        items = value.get("events") if isinstance(value, dict) else None
        if not isinstance(items, list) or not items:
            return Response(b'{"error":"Missing \'events\' parameter"}', 400, mimetype="application/json")
        client.xadd(stream, {"b": raw}, maxlen=200_000, approximate=True)
        return Response(orjson.dumps({"accepted": len(items), "rejected": [], "events": []}), 202,
                        mimetype="application/json")

    @app.get("/api/v1/health")
    def health() -> Response:
        return Response(b'{"status":"ok","mode":"bare"}', 200, mimetype="application/json")

    return app


# ------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=1, help="events per request (1..500), default 1")
    p.add_argument("--conversions", action="store_true", help="seed journeys, then POST /conversions")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds, default 20")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring, default 3")
    p.add_argument("--concurrency", type=int, default=32, help="open connections in total, default 32")
    p.add_argument("--clients", type=int, default=2, help="load-generator processes, default 2")
    p.add_argument("--database-url", default=None, help=f"existing database (default: fresh {DEFAULT_DB})")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers, default 2")
    p.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker, default 8")
    p.add_argument("--visitors", type=int, default=10_000, help="distinct visitor ids, default 10000")
    p.add_argument("--seed-visitors", type=int, default=3_000, help="visitors seeded for --conversions")
    p.add_argument("--seed-seconds", type=float, default=120.0,
                   help="time budget of the --conversions seeding; the visitors seeded by then are used")
    p.add_argument("--baseline", action="store_true",
                   help="also measure the bare JSON+Redis endpoint with the same load (Q-1 ratio)")
    p.add_argument("--redis-url", default=DEFAULT_REDIS, help="Redis for --baseline and --queued")
    p.add_argument("--queued", action="store_true",
                   help="queued mode: REDIS_URL set for gunicorn, plus RQ drain workers (--drain-workers)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="requests/s in total, sent on schedule whatever the answers (open loop; latency counts "
                        "from the scheduled time): Q-1's p99 at 70 %% of the maximum rate. Default: as fast as "
                        "answered")
    p.add_argument("--p99-at", type=float, default=0.0, metavar="FRACTION",
                   help="after the measurement, send FRACTION (e.g. 0.7) of its rate on schedule for the same "
                        "duration and print that latency: Q-1's and Q-4's p99 at 70 %% of the maximum rate")
    p.add_argument("--server", choices=("gunicorn", "granian"), default="gunicorn",
                   help="WSGI server of both apps (granian: pip install granian; not a dependency)")
    p.add_argument("--drain-workers", type=int, default=1,
                   help="drain worker processes in --queued mode; 0 measures the edge alone, as the bare endpoint")
    p.add_argument("--profile", type=int, default=0, metavar="SECONDS",
                   help="py-spy record every gunicorn worker for SECONDS during the measurement")
    p.add_argument("--keep", action="store_true", help="keep the database (and print its URL)")
    args = p.parse_args(argv)
    if not 1 <= args.batch <= 500:
        p.error("--batch must be 1..500")
    if args.concurrency < 1 or args.clients < 1:
        p.error("--concurrency and --clients must be >= 1")
    args.clients = min(args.clients, args.concurrency)
    return args


def _specs(args: argparse.Namespace, port: int, key: str, mode: str, seconds: float,
           warmup: float, seed_ids: list[int] | None = None, conv_keys: tuple[str, ...] = ()) -> list[LoadSpec]:
    start_at = time.time() + 2.0  # spawn + payload generation
    out = []
    for c in range(args.clients):
        threads = args.concurrency // args.clients + (1 if c < args.concurrency % args.clients else 0)
        out.append(LoadSpec(
            port=port, key=key, mode=mode, batch=args.batch, threads=threads, start_at=start_at,
            measure_from=start_at + warmup, stop_at=start_at + warmup + seconds, seed=1000 + c,
            visitors=args.visitors, conv_visitors=conv_keys,
            seed_ids=tuple(seed_ids[c :: args.clients]) if seed_ids else (),
            interval=args.concurrency / args.rate if args.rate and mode != "seed" else 0.0,
        ))
    return out


def _at_fraction(args: argparse.Namespace, server: Server, key: str, load_mode: str, conv_keys: tuple[str, ...],
                 maximum: float, label: str, sampler: RssSampler) -> None:
    """The same load sent on schedule at ``--p99-at`` of the maximum just measured (open loop)."""
    rate = args.p99_at * maximum
    scheduled = argparse.Namespace(**{**vars(args), "rate": rate})
    with phase(f"load at {args.p99_at:.0%} of {maximum:,.0f} requests/s ({rate:,.0f}/s, open loop)"):
        stats = run_load(_specs(scheduled, server.port, key, load_mode, args.duration, args.warmup,
                                conv_keys=conv_keys), sampler.tick)
    summary(f"{label}, at {args.p99_at:.0%} of the maximum", stats, args.duration)


@contextmanager
def phase(name: str) -> Iterator[None]:
    t0 = time.time()
    print(f"-- {name} ...", flush=True)
    yield
    print(f"   done in {time.time() - t0:.1f} s", flush=True)


def _start_drainers(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> list[subprocess.Popen[bytes]]:
    """Queued mode: ``env`` gets the Redis settings and ``--drain-workers`` workers are started."""
    drainers: list[subprocess.Popen[bytes]] = []
    if args.queued:
        env.update(REDIS_URL=args.redis_url, MBUZZ_REDIS_PREFIX=f"mbuzz-bench-{os.getpid()}")
        flask = str(Path(sys.executable).parent / "flask")
        for i in range(args.drain_workers):
            log = open(workdir / f"drain-{i}.log", "wb")
            drainers.append(subprocess.Popen([flask, "--app", "gateway", "mbuzz", "worker"], cwd=ROOT, env=env,
                                             stdout=log, stderr=log))
    return drainers


def _seed_journeys(args: argparse.Namespace, server: Server, key: str, url: str,
                   sampler: RssSampler) -> tuple[str, ...]:
    """--conversions: journeys of 1-20 sessions through POST /sessions; the visitors that got one."""
    ids = list(range(args.seed_visitors))
    with phase(f"seeding {len(ids)} visitors with 1-20 sessions each via POST /api/v1/sessions "
               f"(at most {args.seed_seconds:.0f} s)"):
        t0 = time.time()
        seeded = run_load(_specs(args, server.port, key, "seed", args.seed_seconds, 0.0, ids), sampler.tick)
        t_seed = time.time() - t0 - 2.0
    sessions = count_rows(url, "sessions")
    time.sleep(1.0)  # the seed's change counts reach PostgreSQL's statistics within a second
    print(f"   planner statistics refreshed after the seed: {', '.join(refresh_statistics(url)) or 'none'}")
    journeys = journey_lengths(url)
    conv_keys = tuple(journeys)
    if not conv_keys:
        raise RuntimeError(f"no visitor was seeded:\n{server.log_tail(40)}")
    lengths = sorted(journeys.values())
    print(f"   {len(conv_keys)} visitors seeded, sessions per visitor min {lengths[0]}, "
          f"median {lengths[len(lengths) // 2]}, max {lengths[-1]}")
    print(f"   {seeded.events_accepted} touches accepted ({seeded.events_accepted / t_seed:,.0f}/s, "
          f"p50 {percentile(seeded.latencies, 0.5) * 1000:.1f} ms, "
          f"p99 {percentile(seeded.latencies, 0.99) * 1000:.1f} ms), {sessions} session rows, "
          f"statuses {dict(seeded.statuses)}")
    for sample in seeded.samples:
        print(f"    e.g. {sample}")
    if server_errors(seeded):
        print(f"   gunicorn log (last lines):\n{server.log_tail(40)}")
    return conv_keys


def _check_rows(args: argparse.Namespace, url: str, stats: Stats, start_rows: int, measure_from: float,
                stop_at: float) -> None:
    """Event modes: every accepted event is in PostgreSQL once the backlog drained (and how fast it drained)."""
    t_end = time.time()
    rows = count_rows(url, "events")
    deadline = t_end + (300.0 if args.queued else 5.0)
    while rows < stats.events_accepted_total and time.time() < deadline:
        time.sleep(0.1)
        rows = count_rows(url, "events")
    drained = time.time() - t_end
    e2e = (rows - start_rows) / (max(stop_at, t_end) - measure_from)
    verdict = "equal" if rows == stats.events_accepted_total else "MISMATCH"
    print(f"  events rows in PostgreSQL: {rows} vs accepted {stats.events_accepted_total} "
          f"(incl. warm-up): {verdict}; backlog drained {drained:.1f} s after the load stopped")
    print(f"  end to end into PostgreSQL: {e2e:,.0f} events/s "
          f"({rows - start_rows} rows written in the measured window)")


def _baseline(args: argparse.Namespace, env: dict[str, str], workdir: Path, key: str, servers: list[Server],
              rps: float) -> None:
    """--baseline: the bare endpoint under the same load, and the ratio of the two."""
    env_bare = dict(env, BENCH_REDIS_URL=args.redis_url, BENCH_REDIS_STREAM=f"{BARE_STREAM}:{os.getpid()}")
    bare = Server("bench.ingest:bare_app()", env_bare, args.workers, args.threads, workdir, args.server)
    servers.append(bare)
    with phase(f"baseline: bare JSON + XADD app on 127.0.0.1:{bare.port}"):
        bare.wait_healthy()
    bare_sampler = RssSampler(bare)
    with phase("load: same payloads against the bare endpoint"):
        bare_stats = run_load(_specs(args, bare.port, key, "events", args.duration, args.warmup), bare_sampler.tick)
    print()
    base = summary("bare endpoint (validate JSON + XADD to Redis)", bare_stats, args.duration)
    print(f"  worker RSS: {bare_sampler.report()}")
    target = ("Q-4 target >= 0.15 conversions per bare request" if args.conversions
              else "Q-1 target >= 0.7, Redis mode")
    print(f"\nratio mbuzz / bare: {rps / base['rps']:.2f} ({target})")
    with suppress(Exception):
        import redis

        redis.Redis.from_url(args.redis_url).delete(env_bare["BENCH_REDIS_STREAM"])


def _clean_up(args: argparse.Namespace, servers: list[Server], drainers: list[subprocess.Popen[bytes]], url: str,
              fresh: bool, workdir: Path) -> None:
    for s in servers:
        s.stop()
    for proc in drainers:
        proc.terminate()
        with suppress(Exception):
            proc.wait(20)
    if fresh and not args.keep:
        with suppress(Exception):
            drop_database(url)
    elif args.keep:
        print(f"kept database {url}")
    if args.profile:
        print(f"profiles kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = args.database_url or DEFAULT_DB
    fresh = args.database_url is None
    workdir = Path(tempfile.mkdtemp(prefix="mbuzz-bench-"))
    mode = "conversions" if args.conversions else ("batch" if args.batch > 1 else "single-event")
    print(f"mbuzz ingest benchmark: mode={mode} batch={args.batch} duration={args.duration:.0f}s "
          f"warmup={args.warmup:.0f}s concurrency={args.concurrency} clients={args.clients} "
          f"{args.server} workers={args.workers} threads={args.threads} cpus={os.cpu_count()}")
    servers: list[Server] = []
    drainers: list[subprocess.Popen[bytes]] = []
    try:
        with phase(f"database {_db_name(url)} ({'fresh' if fresh else 'given'}): migrate + account"):
            if fresh:
                create_database(url)
            key = prepare_database(url)
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
        env.update(DATABASE_URL=url, SECRET_KEY="bench-secret", PYTHONPATH=str(ROOT))
        drainers += _start_drainers(args, env, workdir)
        server = Server("gateway:create_app()", env, args.workers, args.threads, workdir, args.server)
        servers.append(server)
        processing = (f"queued mode, {args.drain_workers} drain worker(s)" if args.queued
                      else "inline mode, no REDIS_URL")
        with phase(f"gunicorn on 127.0.0.1:{server.port} ({processing})"):
            server.wait_healthy()
        print(f"   {server.command}")
        print(f"   worker RSS at idle: {', '.join(f'{rss_mb(p) or 0:.0f} MB' for p in server.workers())}")
        sampler = RssSampler(server)

        conv_keys = _seed_journeys(args, server, key, url, sampler) if args.conversions else ()

        load_mode = "conversions" if args.conversions else "events"
        specs = _specs(args, server.port, key, load_mode, args.duration, args.warmup, conv_keys=conv_keys)
        measure_from, stop_at = specs[0].measure_from, specs[0].stop_at
        profiler = Profiler(server, args.profile, measure_from + 1.0, workdir) if args.profile else None
        rows_at_start: list[int] = []

        def tick() -> None:
            sampler.tick()
            if profiler is not None:
                profiler.tick()
            if not args.conversions and not rows_at_start and time.time() >= measure_from:
                rows_at_start.append(count_rows(url, "events"))

        with phase(f"load: {load_mode}, {args.warmup:.0f} s warm-up + {args.duration:.0f} s measured"):
            stats = run_load(specs, tick)
        sampler.tick()
        print()
        label = {"single-event": "POST /api/v1/events (1 event/request)",
                 "batch": f"POST /api/v1/events ({args.batch} events/request)",
                 "conversions": "POST /api/v1/conversions (attribution computed inline)"}[mode]
        figures = summary(label, stats, args.duration)
        if args.conversions and stats.events_accepted:
            print(f"  attribution complete: {stats.complete}/{stats.events_accepted}; mean sessions analyzed "
                  f"{stats.sessions_analyzed / stats.events_accepted:.1f}")
        if args.queued and not args.drain_workers:
            print("  no drain workers: the edge alone was measured (the log keeps what it accepted)")
        elif not args.conversions:
            _check_rows(args, url, stats, rows_at_start[0] if rows_at_start else 0, measure_from, stop_at)
        print(f"  worker RSS: {sampler.report()}")
        if server_errors(stats):
            print(f"  gunicorn log (last lines):\n{server.log_tail(40)}")
        if profiler is not None:
            profiler.report()
        if args.p99_at and figures["rps"]:
            _at_fraction(args, server, key, load_mode, conv_keys, figures["rps"], label, sampler)

        if args.baseline:
            _baseline(args, env, workdir, key, servers, figures["rps"])
        return 0
    finally:
        _clean_up(args, servers, drainers, url, fresh, workdir)


if __name__ == "__main__":
    sys.exit(main())
