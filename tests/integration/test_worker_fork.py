"""Q-20: a forked child never holds, nor ends, a PostgreSQL session of its parent (issue 15 item 1).

The RQ scheduler is a forked child of the worker. At fork time another thread of the worker (the crash-recovery
sweeper) may have a connection checked out, inside a transaction that holds a visitor's advisory lock. The child
must neither keep that session alive after `kill -9` of the worker (its socket would stay open, the transaction
"idle in transaction", the lock held and the partition stalled) nor end it while the worker lives (a Terminate
or ROLLBACK sent by the child on the shared socket). Real processes and a real PostgreSQL; the server's
idle-in-transaction timeout is switched off in the parent's session so that only the fork handling is tested.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.integration.processes import ROOT, wait_until

pytestmark = pytest.mark.postgres

PATIENCE = 120.0  # generous: a wait returns as soon as its condition holds

# The worker stand-in: a "sweeper" connection is checked out, mid-transaction, holding an advisory lock, when the
# process forks its "scheduler". The child then does what any child may do with inherited objects: it closes
# them (psycopg sends a Terminate, SQLAlchemy a ROLLBACK) and collects garbage; and it lives on.
SCRIPT = r"""
import gc, multiprocessing, os, sys, time
import sqlalchemy as sa
from core.storage.db import make_engine

engine = make_engine(sys.argv[1])
conn = engine.connect()
conn.execute(sa.text("SET idle_in_transaction_session_timeout = 0"))  # no server backstop: only the fork counts
conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(sys.argv[2])})
backend = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()


def scheduler(done):
    for closing in (lambda: conn.connection.dbapi_connection.close(), conn.close, engine.dispose):
        try:
            closing()
        except Exception:
            pass
    gc.collect()
    with engine.connect() as own:  # the child's own work gets fresh connections
        assert own.execute(sa.text("SELECT pg_backend_pid()")).scalar() != backend
    done.set()
    time.sleep(3600)


ctx = multiprocessing.get_context("fork")
done = ctx.Event()
child = ctx.Process(target=scheduler, args=(done,), daemon=True)  # a failing parent exits at once
child.start()
assert done.wait(120), "the child did not finish"
held = conn.execute(sa.text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")).scalar()
print(f"READY backend={backend} child={child.pid} held={held}", flush=True)
time.sleep(3600)
"""


def _session_alive(database_url: str, backend: int) -> bool:
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return bool(conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"),
                                     {"p": backend}).scalar())
    finally:
        engine.dispose()


def test_Q20_forked_child_neither_keeps_nor_ends_a_checked_out_session(database_url: str, is_postgres: bool,
                                                                       tmp_path: Path) -> None:
    if not is_postgres:
        pytest.skip("advisory locks and the fork handling are PostgreSQL's")
    out = tmp_path / "stdout.log"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, database_url, "424242"], cwd=ROOT, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    child = 0
    try:
        assert wait_until(lambda: b"READY" in out.read_bytes() or b"Traceback" in out.read_bytes(), PATIENCE, 0.1)
        line = out.read_text()
        assert "READY" in line, line
        fields = dict(item.split("=") for item in line.split("READY", 1)[1].split())
        backend, child = int(fields["backend"]), int(fields["child"])
        # The child closed everything it inherited: the parent's transaction and its lock are intact.
        assert fields["held"] == "1", line
        os.kill(proc.pid, signal.SIGKILL)  # the worker dies; its scheduler child lives on
        proc.wait(10)
        os.kill(child, 0)
        # The server sees the socket close at once and ends the session, releasing the lock.
        assert wait_until(lambda: not _session_alive(database_url, backend), PATIENCE, 0.2), \
            "the killed parent's session stayed open: the forked child still holds its socket"
        os.kill(child, 0)  # still alive: the session ended although the child lives on
    finally:
        for pid in (proc.pid, child):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        proc.wait(10)


# A thread is opening a connection (its socket exists, libpq is still talking to the server) when another thread
# forks. The child must not inherit a live socket of it: opening a connection and forking exclude each other.
CONNECTING_SCRIPT = r"""
import os, sys, threading, time
import psycopg
from core.storage.db import make_engine

engine = make_engine(sys.argv[1])
real_connect = psycopg.connect
opened = threading.Event()


def slow_connect(*args, **kwargs):
    conn = real_connect(*args, **kwargs)  # the socket is open ...
    opened.set()
    time.sleep(1.0)  # ... and the connection not yet handed to the pool
    return conn


psycopg.connect = slow_connect
thread = threading.Thread(target=lambda: engine.raw_connection().close())
thread.start()
assert opened.wait(60)
pid = os.fork()
if pid == 0:
    sockets = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:  # the fd listdir itself used
            pass
    print(f"CHILD sockets={sockets}", flush=True)
    os._exit(0)
os.waitpid(pid, 0)
thread.join()
"""


def test_Q20_a_connection_being_opened_at_fork_time_is_not_inherited_live(database_url: str,
                                                                          is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("the fork handling is PostgreSQL's")
    done = subprocess.run([sys.executable, "-c", CONNECTING_SCRIPT, database_url], cwd=ROOT, capture_output=True,
                          text=True, timeout=PATIENCE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CHILD sockets=0" in done.stdout, done.stdout + done.stderr
