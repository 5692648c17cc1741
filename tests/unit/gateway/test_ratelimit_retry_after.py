"""One retry figure per 429 (api.md API-140, API-141; issue 15 item 11 (d)).

The answer's `Retry-After` header and its body's `retry_after` are the same whole number of seconds: the body is
computed once and the header copies it after Flask-Limiter has written its own (flooring) value.
"""

from __future__ import annotations

from flask.testing import FlaskClient

from gateway import create_app
from tests.conftest import make_settings, new_account

UNKNOWN_KEY = "sk_test_" + "0" * 32  # well-formed, so it is looked up and counted as a failure (API-141)


def _same_figure(client: FlaskClient, path: str, headers: dict[str, str]) -> int:
    resp = client.get(path, headers=headers)
    assert resp.status_code == 429, resp.get_json()
    body = resp.get_json()
    assert body["error"] == "Rate limit exceeded"
    assert resp.headers["Retry-After"] == str(body["retry_after"]), (resp.headers["Retry-After"], body)
    assert body["retry_after"] >= 1
    return int(body["retry_after"])


def test_API141_retry_after_header_equals_the_body_on_failed_authentication_limits(database_url: str) -> None:
    app = create_app(make_settings(database_url, ratelimit_auth_failures="1 per minute"))
    client = app.test_client()
    bad = {"Authorization": f"Bearer {UNKNOWN_KEY}"}
    assert client.get("/api/v1/validate", headers=bad).status_code == 401
    for path in ("/api/v1/validate", "/api/v1/data/events", "/api/v1/data/conversions"):
        assert 1 <= _same_figure(client, path, bad) <= 61


def test_API140_retry_after_header_equals_the_body_on_key_limits(database_url: str) -> None:
    app = create_app(make_settings(database_url, ratelimit_data="1 per minute", ratelimit_validate="1 per minute"))
    keys = new_account(app)
    client = app.test_client()
    for path in ("/api/v1/data/events", "/api/v1/validate"):
        assert client.get(path, headers=keys.headers()).status_code == 200
        assert 1 <= _same_figure(client, path, keys.headers()) <= 61
