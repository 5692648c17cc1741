"""Hostile header bytes written raw on a socket to real servers (issue 14, item 7; shopify.md SHP-32, SHP-33,
SHP-78).

The test client (`test_hostile_signatures.py`) takes header values as text and refuses CR and LF, so here every
byte 0x00-0xFF goes on the wire, to gunicorn (the production server of the Procfile) and to werkzeug's server
(the fixture runner's). A server may refuse the framing itself: gunicorn answers 400 to control characters
and 431 to a field over 8 KiB, without X-Request-Id because the app never saw the request. Whatever reaches
the app is answered 401 (or, for a correctly signed delivery, 200/400 as SHP-33 says), never 500, and a
refused request changes nothing in the database.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from werkzeug.serving import make_server

from tests.integration.processes import gunicorn
from tests.unit.connectors.sgtm.test_normalize import SEED
from tests.unit.connectors.shopify.install_env import AURORA, SECRET
from tests.unit.connectors.shopify.test_hostile_signatures import (
    BODY,
    CORRECT,
    MANUAL_CORRECT,
    MANUAL_SHOP,
    SIGNING_KEY,
    Stage,
    own_database,
    sign,
    stage,
)

__all__ = ["own_database", "stage"]

HEADERS = (b"X-Shopify-Shop-Domain", b"X-Shopify-Topic", b"X-Shopify-Webhook-Id", b"X-Shopify-Event-Id",
           b"X-Shopify-Triggered-At", b"X-Shopify-API-Version")
CONTROLS = bytes(b for b in [*range(0x20), 0x7F] if b not in (0x0A, 0x0D))
# Each hostile value once in each of the other headers.
OTHER_VALUES = (b"\x00", bytes(range(0x80, 0x100)), CONTROLS, b"\xff" * 10240)
_ids = itertools.count()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def from_app(self) -> bool:
        """Every answer of the app carries X-Request-Id; a server's own refusal does not."""
        return "x-request-id" in self.headers

    def json(self) -> object:
        return json.loads(self.body)


def exchange(port: int, raw: bytes) -> Answer:
    """One request on its own connection, bytes as given; the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(raw)
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return Answer(int(status_line.split()[1]), headers, body)


def request(path: str, headers: dict[bytes, bytes], body: bytes = BODY) -> bytes:
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Content-Type: application/json",
             b"Content-Length: %d" % len(body), b"Connection: close", *(k + b": " + v for k, v in headers.items())]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def base_headers(shop: str, signature: str) -> dict[bytes, bytes]:
    unique = next(_ids)
    return {b"X-Shopify-Shop-Domain": shop.encode(), b"X-Shopify-Topic": b"orders/create",
            b"X-Shopify-Webhook-Id": b"w-live-%d" % unique, b"X-Shopify-Event-Id": b"e-live-%d" % unique,
            b"X-Shopify-Triggered-At": b"2026-05-20T03:14:07.512Z", b"X-Shopify-API-Version": b"2025-10",
            b"X-Shopify-Hmac-Sha256": signature.encode()}


@pytest.fixture(scope="module", params=["werkzeug", "gunicorn"])
def port(request: pytest.FixtureRequest, stage: Stage, own_database: str) -> Iterator[int]:
    """The module's seeded app behind a real server, on the module's database."""
    if request.param == "werkzeug":
        quiet = logging.getLogger("werkzeug")
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # a log line per request would cost more than the request
        server = make_server("127.0.0.1", 0, stage.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.server_port
        server.shutdown()
        thread.join(timeout=5)
        quiet.setLevel(level)
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MBUZZ_TEST", "PYTEST"))}
    for name in ("REDIS_URL", "MBUZZ_ENCRYPTION_KEYS", "SHOPIFY_API_SECRET_PREVIOUS"):
        env.pop(name, None)  # inline mode, and the keys the module's app encrypted with (from SECRET_KEY)
    env.update({"DATABASE_URL": own_database, "SECRET_KEY": "test-secret", "SHOPIFY_API_SECRET": SECRET,
                "SHOPIFY_API_KEY": SEED["config"]["SHOPIFY_API_KEY"]})
    with gunicorn(env, workers=1) as (url, _proc):
        yield int(url.rsplit(":", 1)[1])


def refused(port: int, raw: bytes, errors: set[str]) -> None:
    """The app answers 401 with one of `errors`, or the server refuses the framing (the callers check that the
    database is unchanged after each sweep: one snapshot per request would cost more than the requests)."""
    answer = exchange(port, raw)
    if answer.from_app:
        assert answer.status == 401 and answer.json() in [{"error": e} for e in errors], (raw[-300:], answer)
    else:
        assert answer.status in (400, 431), (raw[-300:], answer)


ROUTES = [("/shopify/webhooks", AURORA, CORRECT), ("manual", MANUAL_SHOP, MANUAL_CORRECT)]


def signature_values(correct: str, every_byte: bool) -> list[bytes]:
    """Each byte alone (a signature's length of it) and as junk after the right signature; or, where the path
    after verification is the same code, the bytes in three groups."""
    groups = [bytes([b]) for b in range(0x100)] if every_byte else \
        [CONTROLS, bytes(range(0x80, 0x100)), bytes(b for b in range(0x100) if b not in b"\r\n")]
    values = [group * (44 // len(group) or 1) for group in groups]
    # Space and tab around a value are not part of it (RFC 9110 OWS); CR and LF end the line, so the value
    # would then be the right signature.
    values += [correct.encode() + group for group in groups if group.strip(b" \t\r\n")]
    return [*values, b"\xff" * 10240, b"\x00" + correct.encode()]


@pytest.mark.parametrize(("route", "shop", "correct"), ROUTES, ids=["app", "manual"])
def test_SHP33_SHP78_every_byte_in_the_signature_header_is_401_over_a_socket(
        stage: Stage, port: int, route: str, shop: str, correct: str) -> None:
    """App mode gets every byte one by one; the manual URL (same comparison, SHP-78) gets them grouped."""
    path = stage.manual_path if route == "manual" else route
    before = stage.snapshot()
    for value in signature_values(correct, every_byte=route != "manual"):
        headers = {**base_headers(shop, ""), b"X-Shopify-Hmac-Sha256": value}
        refused(port, request(path, headers), {"missing_hmac", "invalid_hmac"})
    assert stage.snapshot() == before


@pytest.mark.parametrize(("route", "shop", "correct"), ROUTES, ids=["app", "manual"])
def test_SHP33_SHP78_hostile_other_headers_over_a_socket(stage: Stage, port: int, route: str, shop: str,
                                                        correct: str) -> None:
    """With a wrong signature every hostile header is a 401 that changes nothing; with the right one a hostile
    shop is 401 (SHP-33 (3), SHP-78 `shop_mismatch`) and hostile ids and times are stored or refused with 400,
    never a 500."""
    path = stage.manual_path if route == "manual" else route
    shop_error = "shop_mismatch" if route == "manual" else "invalid_shop_domain"
    before = stage.snapshot()
    for name, value in itertools.product(HEADERS, OTHER_VALUES):
        refused(port, request(path, {**base_headers(shop, "x" + correct), name: value}), {"invalid_hmac"})
    for value in OTHER_VALUES:
        refused(port, request(path, {**base_headers(shop, correct), b"X-Shopify-Shop-Domain": value}), {shop_error})
    assert stage.snapshot() == before
    for name, value in itertools.product(HEADERS[1:], OTHER_VALUES):
        body = json.dumps({"id": next(_ids), "note": "verified, hostile header"}).encode()
        signature = sign(body, SIGNING_KEY if route == "manual" else SECRET)
        answer = exchange(port, request(path, {**base_headers(shop, signature), name: value}, body))
        assert answer.status in ((200, 400) if answer.from_app else (400, 431)), (name, value[:20], answer)
