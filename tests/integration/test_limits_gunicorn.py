"""Limits enforced by the real server (issue 15 items 8 and 9): bodies capped while they are read (quality.md Q-8,
docs/api.md API-30-D1) and gunicorn's own refusals answered as JSON (api.md API-4, docs/api.md API-4-D1).

One gunicorn with one gthread worker, started with the repository's gunicorn.conf.py exactly as the Procfile
starts it (tests/integration/processes.py). Requests go over raw sockets, so the framing is what the test says:
a chunked body without Content-Length, a request line of 8 KB, 200 header fields. Memory is the worker's peak
RSS (VmHWM in /proc/<worker>/status, reset first): a body read whole and freed again would leave RSS where it
was, but not the peak. The bound is generous (a body of 50 MB must not raise the peak by 20 MB); nothing is
timed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from tests.conftest import new_account
from tests.integration.processes import env_for, gunicorn

SECRET = "limits-app-secret"
STREAMED = 50 * 1024 * 1024  # far beyond every cap (the largest, the webhooks', is 5 MiB)
PIECE = 64 * 1024
RSS_BOUND_KB = 20 * 1024


@dataclass
class Server:
    port: int
    master: int
    auth: str


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@pytest.fixture(scope="module")
def server(app: Flask, database_url: str) -> Iterator[Server]:
    keys = new_account(app, "Limits")
    env = env_for(database_url, "", SHOPIFY_API_SECRET=SECRET, SHOPIFY_API_KEY="limits-api-key")
    with gunicorn(env, workers=1) as (url, proc):
        yield Server(int(url.rsplit(":", 1)[1]), proc.pid, f"Bearer {keys.test_key}")


def _worker(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children  # one worker: every request below lands on it
    return int(children[0])


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def _reset_peak(pid: int) -> None:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _peak_growth_kb(pid: int, baseline: int) -> int:
    """How far the worker's RSS rose above ``baseline`` at its peak since the reset: a body read whole and freed
    again leaves RSS where it was, but not the peak."""
    return _status_kb(pid, "VmHWM") - baseline


def _read_answer(conn: socket.socket) -> Answer:
    """Everything the server sent until it closed (every answer here ends the connection or says its length)."""
    data = b""
    while True:
        try:
            piece = conn.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not piece:
            break
        data += piece
        head, sep, body = data.partition(b"\r\n\r\n")
        length = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        if sep and length and len(body) >= int(length[0]):
            break
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, "no answer"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return Answer(int(status_line.split()[1]), headers, body)


def _head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def stream_chunked(port: int, path: str, total: int, headers: dict[str, str], body: bytes | None = None) -> Answer:
    """POST ``body`` (or ``total`` bytes of filler) with ``Transfer-Encoding: chunked`` and no Content-Length.

    Sending stops as soon as an answer is readable (a server that refuses early answers while the client is
    still sending) or the server stops reading; the answer is then read."""
    payload = memoryview(body) if body is not None else None
    filler = b"x" * PIECE
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(_head(path, {**headers, "Transfer-Encoding": "chunked"}))
        sent, size = 0, len(payload) if payload is not None else total
        try:
            while sent < size:
                if select.select([conn], [], [], 0)[0]:
                    break  # the server has answered
                piece = bytes(payload[sent:sent + PIECE]) if payload is not None else filler[: size - sent]
                conn.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                sent += len(piece)
            else:
                conn.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the server closed its side after answering: the answer is still in our buffer
        return _read_answer(conn)


def exchange(port: int, raw: bytes) -> Answer:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(raw)
        return _read_answer(conn)


def _signed(body: bytes) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()


def _batch_near(limit: int) -> bytes:
    """A valid batch of 480 events (API-31 allows 500) a little under ``limit`` bytes."""
    count = 480
    event = {"event_type": "page_view", "visitor_id": "limits-v", "properties": {"pad": ""}}
    pad = (limit - 100) // count - len(json.dumps(event, separators=(",", ":")).encode()) - 1
    event["properties"] = {"pad": "p" * pad}
    body = json.dumps({"events": [event] * count}, separators=(",", ":")).encode()
    assert limit - 2048 < len(body) <= limit, len(body)
    return body


def _pixel_near(limit: int) -> bytes:
    body = {"v": 1, "ingest_key": "pk_px_" + "0" * 32, "account_id": "acct_x", "shop_domain": "x.myshopify.com",
            "visitor_id": "ab" * 32, "events": [{"name": "page_viewed"}], "pad": ""}
    body["pad"] = "p" * (limit - len(json.dumps(body).encode()) - 10)
    return json.dumps(body).encode()


ROUTES = [
    ("/api/v1/events", {"error": "Request body too large: 524289 bytes (maximum 524288)"}),
    ("/shopify/webhooks", {"error": "payload_too_large"}),
    ("/shopify/pixel/v1/events", {"error": "payload_too_large"}),
]


@pytest.mark.parametrize(("path", "expected"), ROUTES, ids=[path for path, _ in ROUTES])
def test_Q8_API30_chunked_bodies_are_cut_at_the_cap_and_memory_stays_flat(
    server: Server, path: str, expected: dict[str, str]
) -> None:
    """Issue 15 item 8: 50 MB chunked, no Content-Length -> 413 early, and the worker's peak RSS barely moves."""
    worker = _worker(server.master)
    warm = exchange(server.port, _head(path, {"Content-Length": "2", "Content-Type": "text/plain"}) + b"{}")
    assert warm.status < 500  # imports and pools of the route are loaded before the baseline
    _reset_peak(worker)
    before = _status_kb(worker, "VmRSS")
    headers = {"Content-Type": "text/plain"}
    if path.startswith("/api/"):
        headers["Authorization"] = server.auth  # the drill's client was a real one: its key is valid
    answer = stream_chunked(server.port, path, STREAMED, headers)
    assert answer.status == 413, answer
    grown = _peak_growth_kb(worker, before)
    assert grown < RSS_BOUND_KB, f"the worker's RSS peaked {grown} kB higher for a {STREAMED} byte body"
    assert answer.json() == expected  # the cap is named; cap + 1 bytes were read, no more
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    if path.startswith("/shopify/pixel/"):
        assert answer.headers["access-control-allow-origin"] == "*"  # SHP-68: errors too
    assert _worker(server.master) == worker  # the same worker is still serving: nothing crashed


def test_Q8_API30_declared_length_over_the_cap_is_refused_before_reading(server: Server) -> None:
    for path, expected in [("/api/v1/conversions", {"error": "Request body too large: 52428800 bytes "
                                                             "(maximum 32768)"}),
                           ("/sgtm/v1/collect", {"error": "payload_too_large"}),
                           ("/dashboard/login", {"error": "Request body too large: 52428800 bytes "
                                                          "(maximum 5242880)"})]:
        answer = exchange(server.port, _head(path, {"Content-Length": str(STREAMED)}) + b"x" * 1000)
        assert (answer.status, answer.json()) == (413, expected), path


def test_Q8_API30_bodies_just_under_the_cap_still_pass(server: Server) -> None:
    batch = _batch_near(524_288)
    answer = stream_chunked(server.port, "/api/v1/events", 0, {"Authorization": server.auth}, batch)
    assert answer.status == 202, answer.body[:300]
    assert answer.json()["accepted"] == len(json.loads(batch)["events"])  # type: ignore[index]

    order = json.dumps({"id": 1, "pad": "o" * (5 * 1024 * 1024 - 200)}).encode()
    assert len(order) <= 5 * 1024 * 1024
    answer = stream_chunked(server.port, "/shopify/webhooks", 0, {
        "X-Shopify-Hmac-Sha256": _signed(order), "X-Shopify-Shop-Domain": "not a shop", "X-Shopify-Topic":
            "orders/create", "Content-Type": "application/json"}, order)
    # the signature of the whole body verified (a cut body would be invalid_hmac); the shop check refuses
    assert (answer.status, answer.json()) == (401, {"error": "invalid_shop_domain"})

    pixel = _pixel_near(64 * 1024)
    assert 60 * 1024 < len(pixel) <= 64 * 1024
    answer = stream_chunked(server.port, "/shopify/pixel/v1/events", 0, {"Content-Type": "text/plain"}, pixel)
    # the whole body was parsed as JSON (a cut one is invalid_json); the made-up key is then refused
    assert (answer.status, answer.json()) == (401, {"error": "invalid_ingest_key"})


# ------------------------------------------------------------------------ item 9: gunicorn's own answers


def _get(extra: bytes = b"", target: bytes = b"/api/v1/health") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n"


@pytest.mark.parametrize(("raw", "status", "message"), [
    pytest.param(_get(target=b"/api/v1/" + b"a" * 8192), 414, "Request line too long (maximum 4094 bytes)",
                 id="8KB-request-line"),
    pytest.param(_get(b"".join(b"X-Header-%d: v\r\n" % i for i in range(200))), 431,
                 "Too many request header fields (maximum 100)", id="200-headers"),
    pytest.param(_get(b"X-Big: " + b"v" * 10240 + b"\r\n"), 431,
                 "Request header field too large (maximum 8190 bytes per field)", id="10KB-header"),
    pytest.param(_get(b"X-B\x01d: v\r\n"), 400, None, id="control-character-in-a-name"),
    pytest.param(_get(b"X-Bad: a\x00b\r\n"), 400, None, id="NUL-in-a-value"),
    pytest.param(_get(b"X Bad: v\r\n"), 400, None, id="space-in-a-name"),
])
def test_API4_gunicorn_refusals_are_json(server: Server, raw: bytes, status: int, message: str | None) -> None:
    """Issue 15 item 9: what gunicorn refuses before the app runs is still the API's JSON error envelope."""
    answer = exchange(server.port, raw)
    assert answer.status == status
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    assert "x-request-id" not in answer.headers  # API-4-D1: the server's own refusal, not an app answer
    body = answer.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    if message is not None:
        assert body == {"error": message}
    else:
        assert "header" in body["error"].lower(), body
    assert exchange(server.port, _get(b"Connection: close\r\n")).status == 200  # the worker is fine
