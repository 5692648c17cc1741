"""``flask --app gateway mbuzz ...``: operator commands."""

from __future__ import annotations

import logging
import secrets
import sys
from typing import Any

import click
import redis
from flask import current_app
from flask.cli import AppGroup

from core import accounts, demo
from core.storage.db import migrate
from core.tenant import Tenant
from core.worker_parts import WORKER_PARTS, WorkerPart
from gateway.services import Services, services

cli = AppGroup("mbuzz", help="Multibuzz operator commands.")
_log = logging.getLogger("mbuzz.worker")


def _services() -> Services:
    return services()


@cli.command("migrate")
def migrate_command() -> None:
    """Alembic upgrade head on DATABASE_URL."""
    migrate(_services().settings.database_url)
    click.echo("database is at the latest migration")


def _print_keys(test_key: accounts.CreatedKey, live_key: accounts.CreatedKey) -> None:
    click.echo(f"test API key: {test_key.plaintext}")
    click.echo(f"live API key: {live_key.plaintext}")
    click.echo("(keys are shown once; only their digests are stored)")


@cli.command("create-account")
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.option("--password-stdin", is_flag=True, help="read the dashboard password from standard input")
def create_account_command(name: str, email: str, password_stdin: bool) -> None:
    """Create an account with a dashboard login and one test and one live key."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else secrets.token_urlsafe(12)
    with _services().sessions.begin() as db:
        account, test_key, live_key = accounts.create_account(db, name, email, password)
    click.echo(f"account: {account.id} ({name})")
    click.echo(f"dashboard login: {email}")
    if not password_stdin:
        click.echo(f"dashboard password: {password}")
    _print_keys(test_key, live_key)


@cli.command("create-api-key")
@click.option("--account", "account_id", required=True)
@click.option("--environment", type=click.Choice(["test", "live"]), required=True)
@click.option("--name", default=None)
@click.option("--kind", type=click.Choice(["secret", "sgtm"]), default="secret", show_default=True,
              help="sgtm: a write-only key for /sgtm/v1/collect (pk_sgtm_...)")
def create_api_key_command(account_id: str, environment: str, name: str | None, kind: str) -> None:
    """Create an API key; it is printed once."""
    from core.storage.models import Account

    with _services().sessions.begin() as db:
        if db.get(Account, account_id) is None:
            raise click.ClickException(f"no account {account_id}")
        key = accounts.create_api_key(db, account_id, environment, name=name, kind=kind)
    click.echo(key.plaintext)


@cli.command("revoke-api-key")
@click.argument("prefix")
def revoke_api_key_command(prefix: str) -> None:
    """Revoke the key with this display prefix (e.g. sk_test_3f9a) or key id; refused from the next request."""
    services = _services()
    try:
        with services.sessions.begin() as db:
            digests = accounts.revoke_api_key(db, prefix)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if not digests:
        raise click.ClickException(f"no active key with prefix {prefix}")
    services.forget_keys(digests)
    click.echo(f"revoked {len(digests)} key(s)")


@cli.command("bootstrap-demo")
@click.option("--visitors", type=click.IntRange(min=1), default=demo.DEFAULT_VISITORS, show_default=True,
              help="size of the seeded demo")
@click.option("--days", type=click.IntRange(demo.MIN_DAYS, 365), default=demo.DEFAULT_DAYS, show_default=True)
def bootstrap_demo_command(visitors: int, days: int) -> None:
    """Create the demo account when the database has none, seed its live environment, print its login and keys."""
    with _services().sessions.begin() as db:
        if accounts.account_count(db) > 0:
            click.echo("accounts exist already; keys are shown only when created (use mbuzz create-api-key)")
            return
        password = secrets.token_urlsafe(12)
        account, test_key, live_key = accounts.create_account(db, "Demo", "demo@example.com", password)
    click.echo(f"seeding the demo's live environment ({visitors:,} visitors over {days} days) ...")
    click.echo(_seed(Tenant(account.id, "live"), visitors, days).describe())
    click.echo("=" * 72)
    click.echo(f"demo account {account.id}")
    click.echo(f"dashboard login: {demo.DEMO_EMAIL}")
    click.echo(f"dashboard password: {password}")
    _print_keys(test_key, live_key)
    click.echo("=" * 72)


def _seed(tenant: Tenant, visitors: int = demo.DEFAULT_VISITORS, days: int = demo.DEFAULT_DAYS,
          seed: int = 42) -> demo.DemoSummary:
    from core import rollups
    from core.settings import load_config

    services = _services()
    with _ProgressBar("commands") as bar:
        summary = demo.seed_demo(services.log, tenant, services.now(), visitors, days, seed,
                                 sessions=services.sessions, progress=bar.update)
    with services.sessions() as db:  # the reports' rollups, so the first dashboard page does not build them
        rollups.refresh(db, tenant, load_config(db, tenant.account_id).timezone)
    return summary


class _ProgressBar:
    """A click progress bar whose total is learnt from the first update (``update(done, total)``)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.shown = 0

    def __enter__(self) -> _ProgressBar:
        return self

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr, show_pos=True)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


@cli.command("build-rollups")
@click.option("--account", "account_id", default=None, help="one account (default: every account)")
def build_rollups_command(account_id: str | None) -> None:
    """Build or bring up to date the report rollups (docs/dashboard.md DSH-22-D1). Run it after upgrading a
    database with many conversions, so the first dashboard read does not build them."""
    import time

    import sqlalchemy as sa

    from core import rollups
    from core.settings import load_config
    from core.storage.models import Conversion

    sessions = _services().sessions
    with sessions() as db:
        query = sa.select(Conversion.account_id, Conversion.environment).distinct()
        if account_id:
            query = query.where(Conversion.account_id == account_id)
        tenants = sorted((str(a), str(e)) for a, e in db.execute(query))
    for account, environment in tenants:
        began = time.perf_counter()
        with sessions() as db:
            days = rollups.refresh(db, Tenant(account, environment), load_config(db, account).timezone)
        click.echo(f"{account} {environment}: {days} day(s) recomputed in {time.perf_counter() - began:.1f} s")


@cli.command("seed-demo")
@click.option("--account", "account_id", default=None, help="account id (default: the demo login's account)")
@click.option("--environment", type=click.Choice(["test", "live"]), default="live", show_default=True)
@click.option("--visitors", type=click.IntRange(min=1), default=demo.DEFAULT_VISITORS, show_default=True)
@click.option("--days", type=click.IntRange(demo.MIN_DAYS, 365), default=demo.DEFAULT_DAYS, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
def seed_demo_command(account_id: str | None, environment: str, visitors: int, days: int, seed: int) -> None:
    """Push a realistic demo (visitors, sessions over every channel, identities, conversions) through the real
    command path; running it again changes nothing."""
    from core.storage.models import Account

    with _services().sessions() as db:
        account_id = account_id or demo.demo_account_id(db)
        if account_id is None or db.get(Account, account_id) is None:
            raise click.ClickException("no such account: pass --account <id> (or run bootstrap-demo first)")
    click.echo(_seed(Tenant(account_id, environment), visitors, days, seed).describe())


def _redis() -> redis.Redis:
    url = _services().settings.redis_url
    if not url:
        raise click.ClickException("REDIS_URL is not set: the command log is inline, there is nothing to drain")
    return redis.Redis.from_url(url)


WORKER_MAX_PAUSE_S = 60.0  # the longest pause before the RQ worker loop is started again
SCHEDULER_CHECK_S = 60  # how often a worker without a live scheduler tries to start one (RQ maintenance)


@cli.command("worker")
@click.option("--burst", is_flag=True, help="stop when the queue is empty (tests, one-off catch-up)")
def worker_command(burst: bool) -> None:
    """Run an RQ worker (non-forking) for drain, fit and reattribution jobs, with the crash-recovery sweeper.

    It outlives Redis and database outages (quality.md Q-21, docs/pipeline.md Q-21-D1): the RQ loop, its
    scheduler and both sweeper threads retry with backoff. Run it under a supervisor that restarts it anyway."""

    import redis

    from core import jobs
    from core.fitting.tasks import FITS_QUEUE
    from core.reattribution.tasks import ATTRIBUTION_QUEUE

    settings = _services().settings
    _redis()  # refuses to run without REDIS_URL
    client = redis.Redis.from_url(settings.redis_url or "", socket_connect_timeout=10, socket_keepalive=True,
                                  health_check_interval=30)
    jobs.use_settings(settings)  # the drain jobs run with the settings this process read once
    parts: list[WorkerPart] = current_app.extensions.get(WORKER_PARTS, [])  # the connectors' (core.worker_parts)
    for part in parts:
        part.start(burst)
    if burst:
        jobs.sweep(client)
    else:  # the sweeper's first round runs at once
        jobs.start_sweeper()
    # The scheduler runs delayed work: attribution retries (ATT-45), the connectors' (Shopify order retries, SHP-54).
    _work(client, [jobs.QUEUE, ATTRIBUTION_QUEUE, FITS_QUEUE, *(q for part in parts for q in part.queues)], burst)


def _work(client: Any, queue_names: list[str], burst: bool) -> None:
    """RQ's loop quits on an error it does not expect (a Redis outage in the middle of a job): start it again,
    after a doubling pause, until a stop is asked for (SIGTERM/SIGINT) or, in burst mode, the queues are empty."""
    import threading
    import time

    from rq.exceptions import StopRequested

    stopping = threading.Event()
    worker_class = _worker_class()
    pause = 1.0
    try:
        while True:
            began = time.monotonic()
            worker = None
            try:
                worker = worker_class(queue_names, connection=client, maintenance_interval=SCHEDULER_CHECK_S)
                worker.stopping = stopping
                worker.work(burst=burst, with_scheduler=not burst)
            except Exception:  # Redis unreachable when the worker registers or tears down
                if burst:
                    raise
                _log.exception("the RQ worker loop failed")
                if worker is not None:
                    _unsubscribe(worker)
            if burst or stopping.is_set():
                return
            pause = 1.0 if time.monotonic() - began > WORKER_MAX_PAUSE_S else pause
            _log.warning("the RQ worker loop stopped (Redis unreachable?); starting it again in %.0f s", pause)
            if stopping.wait(pause):
                return
            pause = min(WORKER_MAX_PAUSE_S, pause * 2)
    except StopRequested:  # RQ's signal handler, when the stop comes between two loops
        return


def _unsubscribe(worker: Any) -> None:
    """Stop the pubsub thread of a worker whose teardown could not reach Redis, so restarts leak no thread."""
    try:
        worker.unsubscribe()
    except Exception:
        if worker.pubsub_thread is not None:
            worker.pubsub_thread.stop()


def _worker_class() -> Any:
    """RQ's SimpleWorker with a scheduler that survives Redis outages and a stop flag shared across restarts."""
    import threading
    import time

    import redis
    from rq import SimpleWorker
    from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
    from rq.scheduler import RQScheduler

    class Scheduler(RQScheduler):
        """Runs in the forked scheduler process: a Redis error pauses it (doubling, at most 60 s), never ends it."""

        stop_asked = False

        def request_stop(self, signum: Any = None, frame: Any = None) -> None:
            self.stop_asked = True
            super().request_stop(signum, frame)  # type: ignore[no-untyped-call]  # rq is untyped here

        def work(self) -> None:
            pause = 1.0
            while not self.stop_asked:
                began = time.monotonic()
                try:
                    super().work()  # type: ignore[no-untyped-call]  # returns once a stop was asked for
                    return
                except redis.RedisError as exc:
                    pause = 1.0 if time.monotonic() - began > WORKER_MAX_PAUSE_S else pause
                    self.log.warning("scheduler: Redis unavailable (%s); retrying in %.0f s", exc, pause)
                    deadline = time.monotonic() + pause
                    while not self.stop_asked and time.monotonic() < deadline:
                        time.sleep(0.2)
                    pause = min(WORKER_MAX_PAUSE_S, pause * 2)

    class Worker(SimpleWorker):
        stopping: threading.Event

        def request_stop(self, signum: Any, frame: Any) -> None:
            self.stopping.set()
            super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

        def _start_scheduler(self, burst: bool = False, logging_level: Any = "INFO",
                             date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
                             log_format: str = DEFAULT_LOGGING_FORMAT) -> None:
            if burst:
                super()._start_scheduler(burst, logging_level, date_format, log_format)
                return
            self.scheduler = Scheduler(self.queues, connection=self.connection, date_format=date_format,
                                       logging_level=self.log.level if logging_level is None else logging_level,
                                       log_format=log_format, serializer=self.serializer)
            self.scheduler.acquire_locks(auto_start=True)  # type: ignore[no-untyped-call]  # forks the scheduler when it holds a queue's lock

    return Worker


@cli.group("dead-letters")
def dead_letters_group() -> None:
    """Commands that failed processing permanently, with their errors."""


@dead_letters_group.command("list")
def dead_letters_list() -> None:
    from core import jobs

    entries = jobs.dead_letters(_redis())
    for entry in entries:
        last = entry["error"].strip().splitlines()[-1] if entry["error"].strip() else ""
        click.echo(f"{entry['partition']}/{entry['id']}  {entry['failed_at']}  {last}")
    click.echo(f"{len(entries)} dead letter(s)")


@dead_letters_group.command("replay")
@click.argument("entries", nargs=-1)
@click.option("--all", "replay_all", is_flag=True)
def dead_letters_replay(entries: tuple[str, ...], replay_all: bool) -> None:
    """Put dead letters back on their log (PARTITION/ENTRY_ID as listed, or --all)."""
    from core import jobs

    client = _redis()
    if replay_all:
        targets = [(e["partition"], e["id"]) for e in jobs.dead_letters(client)]
    else:
        targets = [(item.rsplit("/", 1)[0], item.rsplit("/", 1)[-1]) for item in entries]
    done = sum(1 for partition, entry_id in targets if jobs.replay_dead_letter(client, partition, entry_id))
    click.echo(f"replayed {done} of {len(targets)}")


@cli.command("migrate-redis-keys")
def migrate_redis_keys_command() -> None:
    """After upgrading from a version without hash tags (docs/scale-out.md, "Upgrading"): move the log's dead
    letters, waiting conversions and idempotency reservations to their new names, delete drained old streams
    and schedule drains of old streams that still hold entries. Idempotent; run it until nothing is left."""
    from core import jobs, rediskeys

    client = _redis()
    report = rediskeys.migrate_legacy(client)
    scheduled = jobs.sweep(client)
    click.echo(f"moved {report.dead_letters} dead letter(s), {report.waiting} waiting conversion(s), "
               f"{report.idempotency} idempotency reservation(s); deleted {report.streams_dropped} drained old "
               f"stream(s); {report.entries_left} entrie(s) left in old streams ({scheduled} drain(s) scheduled)")


@cli.command("check-vectors")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def check_vectors_command(paths: tuple[str, ...]) -> None:
    """Evaluate attribution vector files (JSON lines, attribution.md ATT-66); exit 0 only if every case matches."""
    import orjson

    from core.attribution.vectors import check_case

    cases = failed = 0
    for path in paths:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                cases += 1
                case: dict[str, object] = {}
                try:
                    case = orjson.loads(line)
                    problems = check_case(case)
                except Exception as exc:  # a malformed case is a failure to report, not a crash
                    problems = [f"cannot evaluate: {type(exc).__name__}: {exc}"]
                if problems:
                    failed += 1
                    for problem in problems:
                        click.echo(f"{path}:{number} {case.get('id', '?')}: {problem}")
    click.echo(f"{cases - failed} of {cases} vectors match")
    if failed or not cases:
        sys.exit(1)


def _start_batches(batches: list[tuple[str, str, str]]) -> None:
    from core.reattribution.tasks import start_batch
    from core.tenant import Tenant

    services = _services()
    for account_id, environment, batch_id in batches:
        start_batch(services.sessions, services.redis, Tenant(account_id, environment), batch_id)
        click.echo(f"batch {batch_id} ({environment}) {'enqueued' if services.redis else 'completed'}")


@cli.command("settings")
@click.argument("account_id")
@click.argument("changes", nargs=-1, required=True)
def settings_command(account_id: str, changes: tuple[str, ...]) -> None:
    """Change attribution settings (KEY=VALUE, values as JSON) and reattribute what they affect (ATT-51)."""
    import orjson

    from core.reattribution.service import apply_settings_change
    from core.settings import SettingsError

    parsed: dict[str, object] = {}
    for item in changes:
        key, sep, raw = item.partition("=")
        if not sep:
            raise click.UsageError(f"expected KEY=VALUE, got {item!r}")
        try:
            parsed[key] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed[key] = raw  # a bare word: a string
    try:
        with _services().sessions.begin() as db:
            batches = [(b.account_id, b.environment, b.id) for b in apply_settings_change(db, account_id, parsed)]
    except SettingsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo("settings saved" + ("" if batches else "; no credits change"))
    _start_batches(batches)


@cli.command("recalculate")
@click.argument("account_id")
@click.option("--environment", type=click.Choice(["test", "live"]), default="live", show_default=True)
def recalculate_command(account_id: str, environment: str) -> None:
    """Reattribute every conversion of a tenant with the current fit (ATT-51 "Recalculate")."""
    from core.attribution import DATA_DRIVEN
    from core.reattribution.service import create_batch, recalculate_scope
    from core.tenant import Tenant

    with _services().sessions.begin() as db:
        batch = create_batch(db, Tenant(account_id, environment), "recalculate", DATA_DRIVEN, recalculate_scope())
        target = (batch.account_id, batch.environment, batch.id)
    _start_batches([target])


@cli.command("batches")
@click.argument("account_id")
@click.option("--environment", type=click.Choice(["test", "live"]), default="live", show_default=True)
def batches_command(account_id: str, environment: str) -> None:
    """Pending and running reattribution batches with their progress (ATT-54)."""
    from core.reattribution.service import active_batches
    from core.tenant import Tenant

    with _services().sessions() as db:
        active = active_batches(db, Tenant(account_id, environment))
    for p in active:
        click.echo(f"{p.id}  {p.trigger}  {p.status}  {p.processed}/{p.total if p.total is not None else '?'}"
                   f"  failed {p.failed_count}")
    click.echo(f"{len(active)} active batch(es)")
