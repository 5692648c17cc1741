"""No input makes the server answer 5xx, and every answer matches the OpenAPI document (quality.md Q-60, Q-63;
api.md API-23, API-161).

Schemathesis drives every operation of ``/api/v1/openapi.json`` in-process (WSGI) with a fixed seed and a fixed
number of examples (positive and negative data, plus its coverage phase); then a set of hand-written hostile
bodies checks the exact whole-body 400/413/415 messages of api.md §3/§4 and the per-field ones of API-22.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, seed, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.test import TestResponse

from gateway import create_app
from gateway.api import schemas
from gateway.api.openapi import bp as openapi_bp
from tests.conftest import AccountKeys, make_settings, new_account

SEED = 60
MAX_EXAMPLES = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
V = "65dabef8d611f332d5bb88f5d6870c733d89f962594575b66f0e1de1ede1ebf0"
WRITE_PATHS = ("/sessions", "/events", "/conversions", "/identify")

MSG_INVALID_JSON = "Request body must be valid JSON"
MSG_NOT_UTF8 = "Request body must be UTF-8 encoded JSON"
MSG_NUMBER_RANGE = "Request body contains a number outside the supported range"
MSG_TOO_DEEP = "Request body nesting exceeds maximum depth of 32"
MSG_NOT_OBJECT = "Request body must be a JSON object"

STATS: Counter[tuple[str, int]] = Counter()


@pytest.fixture(scope="module")
def st_app(database_url: str) -> Flask:
    """The run's database; GET /validate (10/s by default) is unthrottled so examples reach the view."""
    return create_app(make_settings(database_url, ratelimit_validate="1000000 per second"))


def _document_app() -> Flask:
    """Only the gateway's own OpenAPI blueprint: the document exactly as ``GET /api/v1/openapi.json`` serves it,
    loadable at collection time without a database. Requests then go to the real app (``app=`` below).

    (``schemathesis.pytest.from_fixture`` would load it from the ``app`` fixture instead, but in schemathesis
    4.32.5 it fails under pytest 9.2: ``'Function' object has no attribute '_nodeid'``.)
    """
    app = Flask("openapi-document")
    app.register_blueprint(openapi_bp)
    return app


schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", _document_app())


@pytest.fixture(scope="module", autouse=True)
def _report_stats() -> Iterator[None]:
    yield
    if STATS:  # visible with -rA / -s: the numbers of a run, not an assertion
        lines = [f"  {op} -> {status}: {n}" for (op, status), n in sorted(STATS.items())]
        print(f"\nschemathesis: {sum(STATS.values())} requests\n" + "\n".join(lines), file=sys.stderr)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)
@seed(SEED)
def test_Q60_schemathesis_no_5xx_and_responses_match_schema(case: Case, st_app: Flask) -> None:
    account = new_account(st_app, "Schemathesis")  # a fresh key per request: see _post below
    response = case.call_and_validate(app=st_app, headers=account.headers("test"), checks=CHECKS)
    STATS[(f"{case.method} {case.path}", response.status_code)] += 1


def test_Q60_harness_fails_on_a_server_error(database_url: str) -> None:
    """The check set really fails the run on a 5xx (here: a view that raises)."""
    app = create_app(make_settings(database_url))

    def broken() -> None:
        raise RuntimeError("defect")

    app.view_functions["api_v1.health"] = broken
    operation = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)["/health"]["GET"]
    with pytest.raises((Failure, FailureGroup), match="Server error"):
        operation.Case().call_and_validate(checks=CHECKS)


# ------------------------------------------------------------------------------------ hostile bodies


def _post(client: FlaskClient, acct: AccountKeys, path: str, data: bytes | str, **headers: str) -> TestResponse:
    """Each request under a fresh key: rate limits are per key, and Flask-Limiter's limits are process-global, so
    a limit another test's app set (e.g. ``ratelimit_ingest="3 per minute"``) also applies here (see report)."""
    del acct
    fresh = new_account(client.application, "Hostile")
    resp = client.post(f"/api/v1{path}", data=data, headers=fresh.headers("test", **headers))
    assert resp.status_code < 500, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    return resp


def _error(resp: TestResponse, status: int, message: str) -> None:
    assert (resp.status_code, resp.get_json()) == (status, {"error": message})
    schemas.ErrorOut.model_validate(resp.get_json())


def _unprocessable(resp: TestResponse, *errors: str) -> None:
    assert resp.status_code == 422, resp.get_json()
    schemas.UnprocessableOut.model_validate(resp.get_json())
    assert resp.get_json()["errors"] == list(errors)


def _event(**extra: Any) -> dict[str, Any]:
    return {"event_type": "page_view", "visitor_id": V, **extra}


def _rejected(resp: TestResponse, *errors: str) -> None:
    assert resp.status_code == 202, resp.get_json()
    body = schemas.EventsOut.model_validate(resp.get_json())
    assert body.accepted == 0 and [r.errors for r in body.rejected] == [list(errors)]


def _valid_bodies() -> dict[str, dict[str, Any]]:
    return {
        "/sessions": {"visitor_id": V, "session_id": "s-hostile", "url": "https://acme.test/"},
        "/events": _event(),
        "/conversions": {"conversion_type": "purchase", "visitor_id": V},
        "/identify": {"user_id": "u-hostile", "visitor_id": V},
    }


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize("path", WRITE_PATHS)
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b'{"event_type": "\xff\xfe", "visitor_id": "v"}', MSG_NOT_UTF8, id="invalid-utf8"),
        pytest.param(b'{"event_type": "\xed\xa0\x80", "visitor_id": "v"}', MSG_NOT_UTF8, id="cesu-surrogate"),
        pytest.param(b'{"event_type": "\\ud800", "visitor_id": "v"}', MSG_NOT_UTF8, id="lone-surrogate"),
        pytest.param(b'{"event_type": "x\\udc00y", "visitor_id": "v"}', MSG_NOT_UTF8, id="lone-low-surrogate"),
        pytest.param('{"event_type": "é", "visitor_id": "v"}'.encode("latin-1"), MSG_NOT_UTF8, id="latin-1"),
        pytest.param(b'{"event_type": "x", "visitor_id": "v", "n": NaN}', MSG_INVALID_JSON, id="NaN"),
        pytest.param(b'{"event_type": "x", "visitor_id": "v", "n": Infinity}', MSG_INVALID_JSON, id="Infinity"),
        pytest.param(b'{"event_type": "x", "visitor_id": "v", "n": -Infinity}', MSG_INVALID_JSON, id="-Infinity"),
        pytest.param(b'{"event_type": "x", "visitor_id": "v", "n": 1e400}', MSG_NUMBER_RANGE, id="1e400"),
        pytest.param(b'{"event_type": "x", "visitor_id": "v", "n": -1e400}', MSG_NUMBER_RANGE, id="-1e400"),
        pytest.param(f'{{"event_type": "x", "visitor_id": "v", "n": {2**70}}}'.encode(), MSG_NUMBER_RANGE,
                     id="2**70"),
        pytest.param(f'{{"event_type": "x", "visitor_id": "v", "n": {2**63}}}'.encode(), MSG_NUMBER_RANGE,
                     id="2**63"),
        pytest.param(f'{{"event_type": "x", "visitor_id": "v", "n": {-(2**63) - 1}}}'.encode(), MSG_NUMBER_RANGE,
                     id="-2**63-1"),
        pytest.param(b'{"n": ' + b"9" * 5000 + b"}", MSG_NUMBER_RANGE, id="5000-digits"),
        pytest.param(json.dumps({"event_type": "x", "deep": _nested(40)}).encode(), MSG_TOO_DEEP, id="depth-40"),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, MSG_TOO_DEEP, id="depth-10000"),
        pytest.param(b"", MSG_INVALID_JSON, id="empty"),
        pytest.param(b"event_type=x&visitor_id=v", MSG_INVALID_JSON, id="form-encoded"),
        pytest.param(b"<event><event_type>x</event_type></event>", MSG_INVALID_JSON, id="xml"),
        pytest.param(b'{"event_type": "x",', MSG_INVALID_JSON, id="truncated"),
        pytest.param(b'"just a string"', MSG_NOT_OBJECT, id="string-top-level"),
        pytest.param(b"42", MSG_NOT_OBJECT, id="number-top-level"),
    ],
)
def test_Q63_hostile_body_is_a_400_with_the_documented_message(
    client: FlaskClient, acct: AccountKeys, path: str, raw: bytes, message: str
) -> None:
    _error(_post(client, acct, path, raw), 400, message)


def test_Q63_largest_accepted_integers_and_depth_32(client: FlaskClient, acct: AccountKeys) -> None:
    body = _event(properties={"max": 2**63 - 1, "min": -(2**63), "big": 1.7976931348623157e308})
    resp = _post(client, acct, "/events", json.dumps(body))
    assert resp.status_code == 202 and resp.get_json()["accepted"] == 1
    # depth 32 passes the whole-body check; the event itself is then over the properties depth of 5
    deep32 = json.dumps([_event(properties=_nested(30))])
    assert deep32.count("{") + 1 == 32
    _rejected(_post(client, acct, "/events", deep32), "properties nesting exceeds maximum depth of 5")
    _error(_post(client, acct, "/events", json.dumps([[_event(properties=_nested(31))]])), 400, MSG_TOO_DEEP)


@pytest.mark.parametrize(("path", "limit"), [("/events", 524_288), ("/sessions", 32_768), ("/conversions", 32_768),
                                             ("/identify", 32_768)])
def test_Q63_gzip_bomb_is_cut_at_the_limit(client: FlaskClient, acct: AccountKeys, path: str, limit: int) -> None:
    bomb = gzip.compress(b'{"event_type": "x", "pad": "' + b" " * (5 * 1024 * 1024) + b'"}')
    assert len(bomb) < 10_000
    resp = _post(client, acct, path, bomb, **{"Content-Encoding": "gzip"})
    _error(resp, 413, f"Request body too large: {limit + 1} bytes (maximum {limit})")


@pytest.mark.parametrize(("path", "limit"), [("/events", 524_288), ("/conversions", 32_768)])
def test_Q63_oversized_plain_body_is_413(client: FlaskClient, acct: AccountKeys, path: str, limit: int) -> None:
    raw = json.dumps(_event(pad="x" * limit)).encode()
    _error(_post(client, acct, path, raw), 413, f"Request body too large: {len(raw)} bytes (maximum {limit})")


def test_Q63_gzip_bodies_and_bad_encodings(client: FlaskClient, acct: AccountKeys) -> None:
    ok = gzip.compress(json.dumps(_event()).encode())
    assert _post(client, acct, "/events", ok, **{"Content-Encoding": "gzip"}).status_code == 202
    assert _post(client, acct, "/events", ok, **{"Content-Encoding": "x-gzip"}).status_code == 202
    _error(_post(client, acct, "/events", ok[:-8], **{"Content-Encoding": "gzip"}), 400, MSG_INVALID_JSON)
    _error(_post(client, acct, "/events", b"not gzip", **{"Content-Encoding": "gzip"}), 400, MSG_INVALID_JSON)
    for coding in ("br", "deflate", "gzip, zstd"):
        _error(_post(client, acct, "/events", ok, **{"Content-Encoding": coding}), 415,
               f"Unsupported Content-Encoding: {coding}")


def test_Q63_too_many_events(client: FlaskClient, acct: AccountKeys) -> None:
    _error(_post(client, acct, "/events", json.dumps([_event()] * 501)), 413,
           "Too many events in one request: 501 (maximum 500)")
    resp = _post(client, acct, "/events", json.dumps({"events": [_event()] * 500}))
    assert resp.status_code == 202 and resp.get_json()["accepted"] == 500
    _error(_post(client, acct, "/events", b"[]"), 400, "events must contain at least one event")
    _error(_post(client, acct, "/events", b'{"events": 5}'), 400, "events must be an array of event objects")


def test_Q63_oversized_event_is_rejected_alone(client: FlaskClient, acct: AccountKeys) -> None:
    big = _event(properties={"pad": "x" * 33_000})
    size = len(orjson.dumps(big))
    resp = _post(client, acct, "/events", json.dumps([big, _event()]))
    assert resp.status_code == 202
    body = schemas.EventsOut.model_validate(resp.get_json())
    assert body.accepted == 1 and body.events[0].index == 1
    assert body.rejected[0].errors == [f"event is {size} bytes; the maximum is 32768 bytes"]


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml",
     "application/json; charset=latin-1", "image/png"],
)
@pytest.mark.parametrize("path", WRITE_PATHS)
def test_API2_wrong_content_type_is_still_read_as_json(
    client: FlaskClient, acct: AccountKeys, path: str, content_type: str | None
) -> None:
    body = json.dumps(_valid_bodies()[path]).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    resp = _post(client, acct, path, body, **headers)
    assert 200 <= resp.status_code < 300, resp.get_json()


def test_Q63_nan_and_huge_revenue_strings(client: FlaskClient, acct: AccountKeys) -> None:
    def conv(revenue: Any) -> TestResponse:
        return _post(client, acct, "/conversions", json.dumps({"conversion_type": "p", "visitor_id": V,
                                                                "revenue": revenue}))

    for text in ("NaN", "Infinity", "-1", "abc"):
        _unprocessable(conv(text), f"revenue must be a number >= 0, got '{text}'")
    _unprocessable(conv("1e400"), "revenue must be at most 999999999999.99, got '1e400'")
    _unprocessable(conv(1e300), "revenue must be at most 999999999999.99, got 1e+300")
    _unprocessable(conv(2**62), f"revenue must be at most 999999999999.99, got {2**62}")
    assert conv("0.4999e2").status_code == 201


def _future(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    "value",
    ["9999-12-31T23:59:59Z", "9999-12-31T23:59:59-23:59", 10**15, 1e18, 99_999_999_999, "FUTURE-1h"],
)
def test_Q63_far_future_timestamps_are_rejected(client: FlaskClient, acct: AccountKeys, value: Any) -> None:
    if value == "FUTURE-1h":
        value = _future(timedelta(hours=1))
    shown = f"'{value}'" if isinstance(value, str) else orjson.dumps(value).decode()
    msg = "{} is more than 5 minutes in the future, got " + shown
    _rejected(_post(client, acct, "/events", json.dumps(_event(timestamp=value))), msg.format("timestamp"))
    sess = {"visitor_id": V, "session_id": "s-future", "started_at": value}
    _unprocessable(_post(client, acct, "/sessions", json.dumps({"session": sess})), msg.format("started_at"))
    conv = {"conversion_type": "p", "visitor_id": V, "converted_at": value}
    _unprocessable(_post(client, acct, "/conversions", json.dumps(conv)), msg.format("timestamp"))
    _unprocessable(_post(client, acct, "/identify", json.dumps({"user_id": "u", "timestamp": value})),
                   msg.format("timestamp"))


def test_API43_near_future_timestamp_is_clamped(client: FlaskClient, acct: AccountKeys) -> None:
    resp = _post(client, acct, "/events", json.dumps(_event(timestamp=_future(timedelta(minutes=2)))))
    assert resp.status_code == 202
    assert resp.get_json()["events"][0]["warnings"] == ["timestamp was in the future; recorded at receive time"]


def test_Q63_properties_nested_six_deep(client: FlaskClient, acct: AccountKeys) -> None:
    five, six = _nested(5), _nested(6)  # a flat object is depth 1 (API-34)
    assert _post(client, acct, "/events", json.dumps(_event(properties=five))).get_json()["accepted"] == 1
    _rejected(_post(client, acct, "/events", json.dumps(_event(properties=six))),
              "properties nesting exceeds maximum depth of 5")
    _rejected(_post(client, acct, "/events", json.dumps(_event(properties={"properties": six}))),
              "properties nesting exceeds maximum depth of 5")
    conv = {"conversion_type": "p", "visitor_id": V, "properties": six}
    _unprocessable(_post(client, acct, "/conversions", json.dumps(conv)),
                   "properties nesting exceeds maximum depth of 5")
    _unprocessable(_post(client, acct, "/identify", json.dumps({"user_id": "u", "traits": six})),
                   "traits nesting exceeds maximum depth of 5")
    ok = _post(client, acct, "/identify", json.dumps({"user_id": "u", "traits": five}))
    assert ok.status_code == 200


def test_API3_nul_and_bom(client: FlaskClient, acct: AccountKeys) -> None:
    resp = _post(client, acct, "/events", b'{"event_type": "pa\\u0000ge", "visitor_id": "v"}')
    assert resp.status_code == 202
    event = resp.get_json()["events"][0]
    assert event["event_type"] == "page" and event["warnings"] == ["removed NUL characters"]
    assert _post(client, acct, "/events", b"\xef\xbb\xbf" + json.dumps(_event()).encode()).status_code == 202


@pytest.mark.parametrize("path", ["/sessions", "/conversions", "/identify"])
@pytest.mark.parametrize("wrapped", [[], "x", 5, True])
def test_API70_wrapper_key_must_hold_an_object(
    client: FlaskClient, acct: AccountKeys, path: str, wrapped: Any
) -> None:
    key = {"/sessions": "session", "/conversions": "conversion", "/identify": "identify"}[path]
    resp = _post(client, acct, path, json.dumps({key: wrapped, **_valid_bodies()[path]}))
    _error(resp, 400, f"{key} must be an object")


@pytest.mark.parametrize("path", WRITE_PATHS)
@pytest.mark.parametrize(
    "value",
    [None, True, 0, -1, 1.5, "", " ", "\u202e", "\U0001f600" * 300, [], [None], {}, {"": {"": None}}, "x" * 300],
)
def test_Q60_any_json_value_in_any_field_is_never_a_5xx(
    client: FlaskClient, acct: AccountKeys, path: str, value: Any
) -> None:
    """A small deterministic sweep next to schemathesis: each known field set to odd JSON values."""
    base = _valid_bodies()[path]
    model = {"/sessions": schemas.SessionIn, "/events": schemas.EventIn, "/conversions": schemas.ConversionIn,
             "/identify": schemas.IdentifyIn}[path]
    for name in model.model_fields:
        if name in ("url", "referrer") and value == "x" * 300:
            continue  # an over-long host: test_Q60_overlong_host_is_not_a_5xx
        resp = _post(client, acct, path, json.dumps({**base, name: value}))
        assert resp.status_code in (200, 201, 202, 400, 422), (name, resp.get_json())


LONG_HOST = "https://" + "a" * 300 + ".example/"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/sessions", {"visitor_id": "long-host-1", "session_id": "s1", "url": "https://shop.test/",
                       "referrer": LONG_HOST}),
        ("/sessions", {"visitor_id": "long-host-2", "session_id": "s1", "url": LONG_HOST}),
        ("/events", {"event_type": "x", "visitor_id": "long-host-3", "referrer": LONG_HOST}),
        ("/events", {"event_type": "x", "visitor_id": "long-host-4", "url": LONG_HOST}),
        ("/events", {"events": [{"event_type": "ok", "visitor_id": "long-host-5"},
                                {"event_type": "x", "visitor_id": "long-host-6",
                                 "properties": {"referrer": LONG_HOST}}]}),
    ],
    ids=["session-referrer", "session-url", "event-referrer", "event-url", "batch-property-referrer"],
)
def test_Q60_overlong_host_is_not_a_5xx(
    client: FlaskClient, acct: AccountKeys, path: str, body: dict[str, Any]
) -> None:
    """URLs are never an error (API-36/46), whatever their host; SQLite does not enforce VARCHAR(255)."""
    resp = _post(client, acct, path, json.dumps(body))
    assert resp.status_code == 202, resp.get_data(as_text=True)
