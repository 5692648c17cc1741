"""Small helpers for the HTTP-level tests."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from tests.conftest import SHARED, AccountKeys

FIXTURES = SHARED / "fixtures" / "api"
SERVER_ID = re.compile(r"^(evt|conv|sess|idt|acct)_[0-9A-HJKMNP-TV-Z]{26}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ago(**kw: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kw)


def post(client: FlaskClient, acct: AccountKeys, path: str, body: Any, env: str = "test", **headers: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(f"/api/v1{path}", data=data, headers=acct.headers(env, **headers))


def touch(
    client: FlaskClient, acct: AccountKeys, visitor: str, url: str, at: datetime, referrer: str | None = None,
    session_id: str | None = None, env: str = "test", **extra: Any,
) -> Any:
    body = {"visitor_id": visitor, "session_id": session_id or f"s-{at.timestamp()}", "url": url,
            "referrer": referrer, "started_at": iso(at), **extra}
    resp = post(client, acct, "/sessions", {"session": body}, env)
    assert resp.status_code == 202, resp.get_json()
    return resp.get_json()


def subset_match(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Fixture comparison (api.md §13): server ids and times by format, everything else by value."""
    problems: list[str] = []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected object, got {actual!r}"]
        for key, value in expected.items():
            problems += subset_match(value, actual.get(key), f"{path}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {len(expected)} items, got {actual!r}"]
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            problems += subset_match(e, a, f"{path}[{i}]")
        return problems
    if isinstance(expected, str) and SERVER_ID.match(expected):
        if not (isinstance(actual, str) and SERVER_ID.match(actual) and actual[:4] == expected[:4]):
            problems.append(f"{path}: expected a server id like {expected}, got {actual!r}")
        return problems
    if isinstance(expected, str) and RFC3339.match(expected) and path.endswith(("_at", "converted_at")):
        if not (isinstance(actual, str) and RFC3339.match(actual)):
            problems.append(f"{path}: expected an RFC 3339 time, got {actual!r}")
        return problems
    if expected != actual:
        problems.append(f"{path}: expected {expected!r}, got {actual!r}")
    return problems


__all__ = ["Path", "ago", "fixture", "fixture_bytes", "iso", "post", "subset_match", "touch"]
