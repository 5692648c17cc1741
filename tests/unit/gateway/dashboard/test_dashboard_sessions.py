"""Dashboard sessions and the login limit (dashboard.md DSH-2, DSH-4; api.md API-141; issue 15 item 11).

- DSH-4 + API-141: the login limit counts the client IP chosen by the API's rule (`MBUZZ_TRUSTED_PROXIES`), so
  behind a proxy one client's failures lock out that client, not everyone behind the same proxy; without trusted
  hops a forwarded header is ignored and the socket peer counts.
- DSH-2-D1: logging out ends the session on the server: a copy of the cookie taken before the logout answers as
  logged out (the per-user session epoch in the signed cookie no longer matches); a password change does the same.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from core.accounts import hash_password
from core.storage import models as m
from gateway import create_app
from tests.conftest import make_settings
from tests.unit.gateway.dashboard.test_dashboard import PASSWORD, _account, _log_in, _login_token

PROXY = "10.0.0.1"  # the socket peer of every request that came through the reverse proxy


def _behind_proxy(app: Flask, forwarded_for: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = PROXY
    client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client


def _attempt(client: FlaskClient, email: str, password: str, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    resp = client.post("/dashboard/login", headers=headers,
                       data={"email": email, "password": password, "csrf_token": _login_token(client)})
    return resp.status_code


def _fail_ten_times(client: FlaskClient, spoofed: bool) -> None:
    """Ten failures of one client (DSH-4's limit is 10 per 15 minutes), each with another unknown e-mail so only
    the per-IP count can lock anyone out; `spoofed` prepends a different made-up hop to X-Forwarded-For each time."""
    for i in range(10):
        forwarded = f"192.0.2.{i + 1}, 203.0.113.7" if spoofed else None
        assert _attempt(client, f"nobody-{uuid.uuid4().hex[:8]}@example.com", "wrong", forwarded) == 401


def test_DSH4_API141_login_limit_counts_the_forwarded_client_behind_a_trusted_proxy(database_url: str) -> None:
    app = create_app(make_settings(database_url, trusted_proxies=1))
    _, email = _account(app, "Proxied")
    attacker = _behind_proxy(app, "203.0.113.7")
    _fail_ten_times(attacker, spoofed=True)  # the proxy's own hop is the last one: a made-up first hop changes nothing
    assert _attempt(attacker, email, PASSWORD) == 429
    colleague = _behind_proxy(app, "198.51.100.9")  # same proxy, another client
    assert _attempt(colleague, email, PASSWORD) == 302


def test_DSH4_API141_without_trusted_proxies_a_forwarded_header_is_ignored(database_url: str) -> None:
    app = create_app(make_settings(database_url, trusted_proxies=0))
    _, email = _account(app, "Direct")
    attacker = _behind_proxy(app, "203.0.113.7")
    _fail_ten_times(attacker, spoofed=True)
    other_claim = _behind_proxy(app, "198.51.100.9")  # same socket peer, another made-up forwarded address
    assert _attempt(other_claim, email, PASSWORD) == 429


def _copy_session(app: Flask, source: FlaskClient) -> FlaskClient:
    cookie = source.get_cookie("session")
    assert cookie is not None
    copy = app.test_client()
    copy.set_cookie("session", cookie.value)
    return copy


def _is_logged_out(client: FlaskClient) -> bool:
    resp = client.get("/dashboard/keys")
    return resp.status_code == 302 and "/dashboard/login" in resp.headers["Location"]


def test_DSH2_a_copied_cookie_answers_as_logged_out_after_logout(app: Flask) -> None:
    login = _log_in(app)
    copy = _copy_session(app, login.client)
    assert copy.get("/dashboard/keys").status_code == 200  # the copy works while the session lives
    token = login.csrf()
    resp = login.client.post("/dashboard/logout", data={"csrf_token": token})
    assert resp.status_code == 302
    assert _is_logged_out(copy) and _is_logged_out(login.client)
    with app.config["MBUZZ"].sessions() as db:
        keys_before = db.scalar(sa.select(sa.func.count()).select_from(m.ApiKey).where(
            m.ApiKey.account_id == login.keys.account_id))
    # A write with the copy and its own CSRF token is refused and changes nothing.
    refused = copy.post("/dashboard/keys", data={"csrf_token": token, "environment": "live", "name": "stolen"})
    assert refused.status_code == 401
    with app.config["MBUZZ"].sessions() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(m.ApiKey).where(
            m.ApiKey.account_id == login.keys.account_id)) == keys_before
    # Logging in again works, and the new session is not the old one.
    again = app.test_client()
    assert _attempt(again, login.email, PASSWORD) == 302
    assert again.get("/dashboard/keys").status_code == 200
    assert _is_logged_out(copy)


def test_DSH2_logout_ends_the_users_other_sessions_too(app: Flask) -> None:
    """The epoch is per user: logging out on one device ends the sessions of every device (documented)."""
    login = _log_in(app)
    laptop = app.test_client()
    assert _attempt(laptop, login.email, PASSWORD) == 302
    login.client.post("/dashboard/logout", data={"csrf_token": login.csrf()})
    assert _is_logged_out(laptop)


def test_DSH2_a_password_change_ends_existing_sessions(app: Flask) -> None:
    login = _log_in(app)
    copy = _copy_session(app, login.client)
    with app.config["MBUZZ"].sessions.begin() as db:
        db.execute(sa.update(m.DashboardUser).where(m.DashboardUser.email == login.email)
                   .values(password_hash=hash_password("a new password, long enough")))
    assert _is_logged_out(copy) and _is_logged_out(login.client)
    assert _attempt(app.test_client(), login.email, "a new password, long enough") == 302


def test_DSH2_a_stale_cookie_cannot_log_the_user_out(app: Flask) -> None:
    """Only a live session's logout ends sessions: replaying an old cookie's logout leaves the new one alone."""
    login = _log_in(app)
    old = _copy_session(app, login.client)
    old_token = login.csrf()
    login.client.post("/dashboard/logout", data={"csrf_token": old_token})
    fresh = app.test_client()
    assert _attempt(fresh, login.email, PASSWORD) == 302
    old.post("/dashboard/logout", data={"csrf_token": old_token})
    assert fresh.get("/dashboard/keys").status_code == 200
