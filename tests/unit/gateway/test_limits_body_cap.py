"""The body cap middleware (quality.md Q-8, api.md API-30, shopify.md SHP-32/SHP-69, sgtm.md SGTM-20;
docs/api.md API-30-D1), through the WSGI app with streams that count what was read.

The real-server drill (50 MB chunked to a gunicorn worker, its memory read from /proc) is
tests/integration/test_limits_gunicorn.py; here the same rules are checked byte for byte: a chunked body is read
no further than the route's cap plus one byte, a declared length above the cap is never read, and the 413 comes
first, in each route's own shape.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder, run_wsgi_app

from gateway import _route_caps, body_cap
from tests.conftest import AccountKeys

EVENTS, OTHER, WEBHOOKS, PIXEL, SGTM = 524_288, 32_768, 5 * 1024 * 1024, 64 * 1024, 32 * 1024


class Endless(io.RawIOBase):
    """A body that never ends (a client streaming forever), counting the bytes anyone read from it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = len(buffer)
        buffer[:n] = b"x" * n
        self.read_bytes += n
        return n


def chunked(app: Flask, path: str, stream: Any, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """POST with ``Transfer-Encoding: chunked`` and no Content-Length, as a server hands it to the app."""
    environ = EnvironBuilder(path=path, method="POST", headers={**(headers or {}),
                                                                 "Transfer-Encoding": "chunked"}).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = stream
    environ["wsgi.input_terminated"] = True
    body, status, answer_headers = run_wsgi_app(app, environ, buffered=True)
    return int(status.split()[0]), answer_headers, b"".join(body)


@pytest.mark.parametrize(("path", "cap", "expected"), [
    ("/api/v1/events", EVENTS, {"error": f"Request body too large: {EVENTS + 1} bytes (maximum {EVENTS})"}),
    ("/api/v1/events/", EVENTS, {"error": f"Request body too large: {EVENTS + 1} bytes (maximum {EVENTS})"}),
    ("/api/v1/conversions", OTHER, {"error": f"Request body too large: {OTHER + 1} bytes (maximum {OTHER})"}),
    ("/api/v1/identify", OTHER, {"error": f"Request body too large: {OTHER + 1} bytes (maximum {OTHER})"}),
    ("/shopify/webhooks", WEBHOOKS, {"error": "payload_too_large"}),
    ("/shopify/webhooks/m/some-token", WEBHOOKS, {"error": "payload_too_large"}),
    ("/shopify/pixel/v1/events", PIXEL, {"error": "payload_too_large"}),
    ("/sgtm/v1/collect", SGTM, {"error": "payload_too_large"}),
    ("/dashboard/login", WEBHOOKS, {"error": f"Request body too large: {WEBHOOKS + 1} bytes (maximum {WEBHOOKS})"}),
    ("/no/such/route", WEBHOOKS, {"error": f"Request body too large: {WEBHOOKS + 1} bytes (maximum {WEBHOOKS})"}),
])
def test_Q8_API30_an_endless_chunked_body_is_read_to_the_cap_plus_one_byte(app: Flask, path: str, cap: int,
                                                                        expected: dict[str, str]) -> None:
    stream = Endless()
    status, headers, body = chunked(app, path, stream, {"X-Request-Id": "cap-test-1"})
    assert (status, json.loads(body)) == (413, expected)
    assert stream.read_bytes == cap + 1  # not a byte more: the rest of the body is never read
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["X-Request-Id"] == "cap-test-1"  # API-4: echoed on this answer too
    if path.startswith("/shopify/pixel/"):
        assert headers["Access-Control-Allow-Origin"] == "*"  # SHP-68


def test_Q8_API30_the_413_comes_before_authentication(app: Flask) -> None:
    """Nothing about the request is looked at once its body is known to be too large: no key is needed to learn
    that, and none is looked up."""
    status, _, body = chunked(app, "/api/v1/events", Endless())
    assert (status, json.loads(body)["error"]) == (413, f"Request body too large: {EVENTS + 1} bytes "
                                                        f"(maximum {EVENTS})")


class Refusing(io.RawIOBase):
    """A body nobody may read: a declared length above the cap is refused without reading."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the body was read")


@pytest.mark.parametrize(("path", "cap"), [("/api/v1/events", EVENTS), ("/api/v1/sessions", OTHER),
                                           ("/shopify/pixel/v1/events", PIXEL), ("/sgtm/v1/collect", SGTM),
                                           ("/shopify/webhooks", WEBHOOKS)])
def test_Q8_API30_a_declared_length_over_the_cap_is_never_read(app: Flask, path: str, cap: int) -> None:
    environ = EnvironBuilder(path=path, method="POST").get_environ()
    environ["CONTENT_LENGTH"] = str(300 * 1024 * 1024)
    environ["wsgi.input"] = Refusing()
    body, status, _ = run_wsgi_app(app, environ, buffered=True)
    answer = json.loads(b"".join(body))
    assert status.startswith("413")
    if path.startswith("/api/"):
        assert answer == {"error": f"Request body too large: {300 * 1024 * 1024} bytes (maximum {cap})"}
    else:
        assert answer == {"error": "payload_too_large"}


def test_Q8_API30_a_chunked_body_within_the_cap_reaches_the_route_whole(app: Flask, acct: AccountKeys) -> None:
    events = [{"event_type": "page_view", "visitor_id": "v-chunked", "properties": {"i": i, "pad": "p" * 900}}
              for i in range(400)]
    raw = json.dumps({"events": events}).encode()
    assert OTHER < len(raw) <= EVENTS
    status, _, body = chunked(app, "/api/v1/events", io.BytesIO(raw), acct.headers())
    assert status == 202 and json.loads(body)["accepted"] == 400
    exact = json.dumps({"events": events[:1], "pad": "q" * (EVENTS - 2000)}).encode()
    exact += b" " * (EVENTS - len(exact))  # exactly at the cap: still accepted
    assert len(exact) == EVENTS
    status, _, body = chunked(app, "/api/v1/events", io.BytesIO(exact), acct.headers())
    assert status == 202, body[:300]


def test_Q8_API30_route_caps_come_from_the_routes_own_limits() -> None:
    caps = _route_caps()
    assert [body_cap(caps, p) for p in ("/api/v1/events", "/api/v1/events/", "/api/v1/events/x", "/api/v1/data/events",
                                         "/shopify/webhooks", "/shopify/pixel/v1/events", "/sgtm/v1/collect",
                                         "/shopify/api/settings", "/")] == [
        EVENTS, EVENTS, OTHER, OTHER, WEBHOOKS, PIXEL, SGTM, WEBHOOKS, WEBHOOKS]
    assert caps[-1] == ("", max(cap for _, cap in caps))  # the global cap is the largest body any route takes


def test_Q8_requests_without_a_body_are_untouched(app: Flask, acct: AccountKeys) -> None:
    assert app.test_client().get("/api/v1/health").status_code == 200
    assert app.test_client().get("/api/v1/data/events", headers=acct.headers()).status_code == 200
