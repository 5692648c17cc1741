"""The lean path of plain event posts (issue 17 item 1; docs/api.md API-80-D1) against the Flask path.

Against real PostgreSQL and Redis. The same requests are sent to an app with the lean path and to one without it
(its Flask path alone): statuses, bodies, headers and the commands in the log must be the same, ids and clocks
aside. What the lean path does not take — a first request of a key, a rejected event, a bad body, an unknown key,
a key with a quota — must reach Flask, which answers as it always has (API-24, API-33, API-12).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from flask import Flask, request_started

from core.log import LogUnavailable
from core.queue import stream_key
from core.tenant import Tenant
from gateway import create_app
from gateway.api.lean import LeanEvents
from tests.conftest import AccountKeys, make_settings, new_account

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SDK_UA = "mbuzz-python/0.3.1"
SGTM_UA = "mbuzz-sgtm/1.2.0"
_VARIES = {"X-Request-Id", "X-RateLimit-Remaining", "X-RateLimit-Reset"}  # a fresh id, the clock, the count


def _pair(database_url: str, redis_url: str) -> tuple[Flask, Flask]:
    """Two apps on one database and Redis: the first with the lean path, the second with Flask's path alone."""
    lean = create_app(make_settings(database_url, redis_url=redis_url))
    plain = create_app(make_settings(database_url, redis_url=redis_url))
    assert isinstance(plain.wsgi_app, LeanEvents)
    plain.wsgi_app = plain.wsgi_app.flask_path  # type: ignore[method-assign]
    return lean, plain


@pytest.fixture()
def flask_requests() -> Iterator[list[str]]:
    """The paths of the requests Flask dispatched."""
    seen: list[str] = []

    def count(_sender: Any, **_extra: Any) -> None:
        from flask import request

        seen.append(request.path)

    request_started.connect(count)
    yield seen
    request_started.disconnect(count)


def _send(app: Flask, keys: AccountKeys, body: Any, path: str = "/api/v1/events", **headers: str) -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return app.test_client().post(path, data=data, headers={**keys.headers(), **headers})


def _logged(app: Flask, keys: AccountKeys) -> list[dict[str, Any]]:
    """The commands in the tenant's log, without what differs between two sends of one request."""
    entries = app.config["MBUZZ"].redis.xrange(stream_key(Tenant(keys.account_id, "test")))
    commands = [orjson.loads(fields[b"c"]) for _, fields in entries if b"c" in fields]
    for command in commands:
        for varying in ("id", "received_at", "occurred_at"):  # a fresh id; the clock, for events sent without time
            command.pop(varying, None)
    return commands


def _comparable(resp: Any) -> tuple[int, Any, dict[str, str]]:
    body = resp.get_json()
    for entry in body.get("events", []) if isinstance(body, dict) else []:
        assert entry["id"].startswith("evt_")
        entry["id"] = "evt_"
    headers = {name: value for name, value in resp.headers.items() if name not in _VARIES}
    return resp.status_code, body, headers


REQUESTS: list[tuple[str, Any, dict[str, str]]] = [
    ("/api/v1/events", {"event_type": "page_view", "visitor_id": "v-1",
                        "properties": {"url": "https://a.example/?utm_source=x"}}, {}),
    ("/api/v1/events", {"events": [{"event_type": "signup", "visitor_id": "v-2", "message_id": "m-1"},
                                   {"event_type": "page_view", "visitor_id": "v-2", "session_id": "s-9"}]},
     {"User-Agent": SDK_UA}),
    ("/api/v1/events", {"events": [{"event_type": "signup", "visitor_id": "v-2", "message_id": "m-1"}]}, {}),
    ("/api/v1/events/", [{"event_type": "add_to_cart", "visitor_id": "v-3", "session_id": "s-3"}],
     {"User-Agent": SGTM_UA, "X-Request-Id": "req-given-1"}),
    ("/api/v1/events", {"event": {"event_type": "note", "visitor_id": "v-4", "properties": {"text": "a\\u0000b"}}},
     {"X-Idempotency-Key": "idem-1"}),
    ("/api/v1/events", {"event": {"event_type": "later", "visitor_id": "v-4"}}, {"X-Idempotency-Key": "idem-1"}),
    ("/api/v1/events", {"event_type": "page_view", "visitor_id": "v-5", "timestamp": "2026-12-07T10:00:00Z",
                        "ip": "203.0.113.9", "user_agent": "Mozilla/5.0"}, {"X-Request-Id": "bad id!"}),
]


def test_API80_D1_the_lean_path_answers_and_logs_what_flask_does(
        database_url: str, redis_url: str, flask_requests: list[str]) -> None:
    lean, plain = _pair(database_url, redis_url)
    lean_keys, plain_keys = new_account(lean, "Lean"), new_account(plain, "Plain")
    for app, keys in ((lean, lean_keys), (plain, plain_keys)):  # each key verified once, the slow way
        assert _send(app, keys, {"event_type": "warm", "visitor_id": "v-0"}).status_code == 202
    flask_requests.clear()
    for path, body, headers in REQUESTS:
        data = orjson.dumps(body).replace(b"\\\\u0000", b"\\u0000")
        by_lean = _send(lean, lean_keys, data, path, **headers)
        by_flask = _send(plain, plain_keys, data, path, **headers)
        assert by_lean.status_code == 202, by_lean.get_json()
        assert _comparable(by_lean) == _comparable(by_flask), path
        if "X-Request-Id" in headers and headers["X-Request-Id"] == "req-given-1":
            assert by_lean.headers["X-Request-Id"] == "req-given-1"
        assert by_lean.headers["X-Request-Id"] != "bad id!"
    assert len(flask_requests) == len(REQUESTS)  # each went through Flask on the plain app only
    assert _logged(lean, lean_keys) == _logged(plain, plain_keys)
    duplicate = _send(lean, lean_keys, REQUESTS[2][1]).get_json()["events"][0]
    assert duplicate["duplicate"] is True  # API-51 across both paths: the message id was taken by the lean one


@pytest.mark.parametrize(("label", "body", "status"), [
    ("a rejected event (API-24)", {"events": [{"event_type": "ok", "visitor_id": "v"}, {"visitor_id": "v"}]}, 202),
    ("a body that is not JSON", b"{not json", 400),
    ("no events", {"events": []}, 400),
])
def test_API80_D1_what_the_lean_path_does_not_take_reaches_flask(
        database_url: str, redis_url: str, flask_requests: list[str], label: str, body: Any, status: int) -> None:
    lean, plain = _pair(database_url, redis_url)
    lean_keys, plain_keys = new_account(lean, "Lean"), new_account(plain, "Plain")
    for app, keys in ((lean, lean_keys), (plain, plain_keys)):
        assert _send(app, keys, {"event_type": "warm", "visitor_id": "v-0"}).status_code == 202
    flask_requests.clear()
    by_lean, by_flask = _send(lean, lean_keys, body), _send(plain, plain_keys, body)
    assert flask_requests == ["/api/v1/events", "/api/v1/events"], label
    assert by_lean.status_code == status, by_lean.get_json()
    assert _comparable(by_lean) == _comparable(by_flask)
    assert _logged(lean, lean_keys) == _logged(plain, plain_keys)


def test_API12_first_request_unknown_key_and_quota_accounts_go_through_flask(
        database_url: str, redis_url: str, flask_requests: list[str]) -> None:
    lean, _ = _pair(database_url, redis_url)
    keys = new_account(lean)
    event = {"event_type": "page_view", "visitor_id": "v"}
    assert _send(lean, keys, event).status_code == 202
    other_ending = "0000" if keys.test_key[-4:] != "0000" else "ffff"
    unknown = AccountKeys(keys.account_id, keys.test_key[:-4] + other_ending, keys.live_key)
    resp = _send(lean, unknown, event)
    assert (resp.status_code, resp.get_json()) == (401, {"error": "Invalid or expired API key"})
    assert flask_requests == ["/api/v1/events"] * 2
    assert _send(lean, keys, event).status_code == 202 and len(flask_requests) == 2  # now remembered: lean
    quota = new_account(lean, "Quota")
    with lean.config["MBUZZ"].sessions.begin() as db:
        from core.storage import models as m

        db.get(m.Account, quota.account_id).monthly_event_quota = 1_000_000  # type: ignore[union-attr]
    for _ in range(2):  # API-33 reads the database: never the lean path
        assert _send(lean, quota, event).status_code == 202
    assert len(flask_requests) == 4


def test_API66_a_log_that_fails_after_admission_answers_503_as_flask_does(
        database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lean, plain = _pair(database_url, redis_url)
    lean_keys, plain_keys = new_account(lean, "Lean"), new_account(plain, "Plain")
    event = {"event_type": "page_view", "visitor_id": "v"}
    for app, keys in ((lean, lean_keys), (plain, plain_keys)):
        assert _send(app, keys, event).status_code == 202

    def fails(*_args: Any, **_kwargs: Any) -> None:
        raise LogUnavailable("the log cannot take it")

    for app in (lean, plain):
        monkeypatch.setattr(app.config["MBUZZ"].log, "append", fails)
    by_lean, by_flask = _send(lean, lean_keys, event), _send(plain, plain_keys, event)
    assert by_lean.status_code == 503 and by_lean.headers["Retry-After"] == "5"
    assert _comparable(by_lean) == _comparable(by_flask)


def test_API4_a_defect_before_the_append_hands_the_request_to_flask_once(
        database_url: str, redis_url: str, flask_requests: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    lean, _ = _pair(database_url, redis_url)
    keys = new_account(lean)
    event = {"event_type": "page_view", "visitor_id": "v"}
    assert _send(lean, keys, event).status_code == 202
    flask_requests.clear()

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("a defect in the lean path")

    monkeypatch.setattr("gateway.api.lean.event_batch", broken)
    resp = _send(lean, keys, event)
    assert resp.status_code == 202 and resp.get_json()["accepted"] == 1  # Flask answered it, as before
    assert flask_requests == ["/api/v1/events"]
    assert len(_logged(lean, keys)) == 2  # the warm-up and this one: appended once
