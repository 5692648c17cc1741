"""Real processes for the reliability tests: gunicorn, RQ drain workers, and TCP proxies that can be cut.

A proxy stands between one process and PostgreSQL or Redis, so a test can take the service away from that
process alone (the real servers keep serving the other tests running in parallel).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: object, timeout: float = 30.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False


class Proxy:
    """A TCP forwarder; ``cut()`` drops every connection and refuses new ones until ``restore()``."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._up = True
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(256)
        self._server.settimeout(0.2)
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            if not self._up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self._up = False
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._conns.clear()

    def restore(self) -> None:
        self._up = True

    def close(self) -> None:
        self._stop = True
        self.cut()
        self._server.close()


def queued_redis_url(worker_id: str, is_postgres: bool) -> str:
    """One Redis database per xdist worker (10 + index) for tests of the queued pipeline, which needs
    PostgreSQL; skipped without Redis, except in CI."""
    import pytest
    import redis

    if not is_postgres:
        pytest.skip("the queued pipeline runs on PostgreSQL")
    index = 0 if worker_id == "master" else int(worker_id.removeprefix("gw"))
    url = f"redis://127.0.0.1:6379/{10 + index}"
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            pytest.fail("CI: Redis is required on 127.0.0.1:6379")
        pytest.skip("Redis not reachable")
    return url


def env_for(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MBUZZ_TEST", "PYTEST"))}
    env.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "SECRET_KEY": "t", "PYTHONUNBUFFERED": "1",
                "MBUZZ_DRAIN_LOCK_MS": "3000", "MBUZZ_RATELIMIT_AUTH_FAILURES": "100000 per minute",
                # The longest sync wait (API-62): tests that expect 201 check behaviour, not how fast a loaded
                # machine drains; a test of the pending answer sets its own short wait.
                "MBUZZ_SYNC_WAIT_MS": "10000"})
    env.update(extra)
    return env


@contextmanager
def gunicorn(
    env: dict[str, str], workers: int = 2, log: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    out = open(log or os.devnull, "ab")
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "--workers", str(workers), "--threads", "8",
         "--graceful-timeout", "20", "--bind", f"127.0.0.1:{port}", "gateway:create_app()"],
        cwd=ROOT, env=env, stdout=out, stderr=out,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(url + "/api/v1/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        assert wait_until(up, 30), "gunicorn did not start"
        yield url, proc
    finally:
        stop(proc)
        out.close()


WORKER_READY = b"*** Listening on"  # what an RQ worker prints once it takes jobs
WORKER_START_TIMEOUT = 180.0  # a loaded 2-core machine can take long to import the app; speed is not under test


def start_worker(env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """An RQ drain worker process, returned once it listens: tests that expect a prompt answer (201 rather than
    202 pending) must not race the worker's start-up, which on a loaded machine takes seconds."""
    if log is None:
        log = Path(tempfile.mkdtemp(prefix="mbuzz-worker-")) / "worker.log"
    start = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(BIN / "flask"), "--app", "gateway", "mbuzz", "worker"], cwd=ROOT, env=env,
                                stdout=out, stderr=out, start_new_session=True)  # its own group: see kill_group

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the worker exited with {proc.returncode}; see {log}")
        with open(log, "rb") as text:
            text.seek(start)
            return WORKER_READY in text.read()

    assert wait_until(listening, WORKER_START_TIMEOUT, 0.1), f"the worker did not start listening; see {log}"
    return proc


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker's whole process group: after `kill -9` of the worker its forked RQ scheduler lives on as an
    orphan, which must not outlive the test."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
