"""Dashboard login, sessions and CSRF (dashboard.md DSH-2..DSH-5).

The session is Flask's signed cookie: it holds the user id, the account id, the chosen environment and the CSRF
token. Logging in replaces the whole session (rotation), so a cookie planted before login is worth nothing
after it. Every POST of the dashboard carries the session's CSRF token; one that does not is refused with 400
before any view runs. Failed logins are limited per e-mail and per IP, and the answer never says which of the
two was wrong or whether the e-mail exists.

Sessions end on the server too (DSH-2-D1, issue 15 item 11): the cookie also carries the user's session epoch
and a keyed mark of their password hash, and every request compares both with the user's row. Logging out
bumps the epoch, so a copy of the cookie (taken before the logout, on any device) answers as logged out; a
password change alters the hash and ends every session the same way.

The login limit counts the client IP chosen by the API's rule (API-141, `MBUZZ_TRUSTED_PROXIES`), so behind a
proxy one client's failures do not lock out everyone behind it; its keys are digests under
`MBUZZ_REDIS_PREFIX` (gateway.ratelimit), never a raw e-mail or address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any

import sqlalchemy as sa
from flask import Response, abort, current_app, g, redirect, request, session, url_for
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from core.accounts import hash_password, verify_password
from core.storage.models import Account, DashboardUser
from core.storage.tenancy import all_tenants
from core.tenant import Tenant
from edge.http import client_ip

__all__ = ["CSRF_FIELD", "Viewer", "csrf_token", "log_in", "log_out", "login_required", "viewer"]

CSRF_FIELD = "csrf_token"
LIFETIME = timedelta(days=14)
LOGIN_LIMIT = "10 per 15 minutes"  # DSH-4: per e-mail and per IP
ENVIRONMENTS = ("live", "test")
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))  # verify against it when the e-mail is unknown


@dataclass(frozen=True)
class Viewer:
    """The logged-in user and what every query is scoped by (DSH-5)."""

    user_id: str
    email: str
    account_id: str
    account_name: str
    environment: str

    @property
    def tenant(self) -> Tenant:
        return Tenant(self.account_id, self.environment)


def csrf_token() -> str:
    token = session.get(CSRF_FIELD)
    if not token:
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf() -> Response | None:
    """DSH-3: a POST without the session's token changes nothing."""
    if request.method != "POST":
        return None
    sent = request.form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token") or ""
    expected = session.get(CSRF_FIELD) or ""
    if not expected or not secrets.compare_digest(str(sent), str(expected)):
        return Response("The form expired or did not come from this site (CSRF check failed). Reload the page "
                        "and try again.", status=400, mimetype="text/plain")
    return None


class LoginLimiter:
    """DSH-4 with the `limits` package (Flask-Limiter's engine): shared through Redis when configured.

    Counted per e-mail and per client IP, each as a keyed digest (`address_key`), under the Redis prefix."""

    def __init__(self, storage_uri: str, secret_key: str, limit: str = LOGIN_LIMIT) -> None:
        from gateway.ratelimit import storage_options

        self._limit = parse(limit)
        self._window = MovingWindowRateLimiter(storage_from_string(storage_uri, **storage_options()))
        self._secret_key = secret_key

    def _parts(self, email: str, ip: str) -> tuple[str, str]:
        from edge.limits import address_key

        return address_key(self._secret_key, "email", email), address_key(self._secret_key, "ip", ip)

    def allowed(self, email: str, ip: str) -> bool:
        return all(self._window.test(self._limit, "login", part) for part in self._parts(email, ip))

    def failed(self, email: str, ip: str) -> None:
        for part in self._parts(email, ip):
            self._window.hit(self._limit, "login", part)


def _limiter() -> LoginLimiter:
    found = current_app.extensions.get("mbuzz.login_limiter")
    if found is None:
        settings = current_app.config["MBUZZ"].settings
        found = current_app.extensions["mbuzz.login_limiter"] = LoginLimiter(
            settings.redis_url or "memory://", settings.secret_key)
    return found


def _password_mark(password_hash: str) -> str:
    """DSH-2-D1: changes whenever the password does; keyed, so the (readable) cookie says nothing about the hash."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, b"dashboard-session:" + password_hash.encode(), hashlib.sha256).hexdigest()[:32]


def log_in(email: str, password: str) -> str | None:
    """The error to show, or None once the session belongs to the user.

    The limit counts `client_ip()` (API-141's rule, `MBUZZ_TRUSTED_PROXIES`): the socket peer alone is the
    proxy's address for every client behind a proxy."""
    address = client_ip()
    email = email.strip().lower()
    limiter = _limiter()
    try:
        allowed = limiter.allowed(email, address)
    except Exception:  # the limit store is down: refuse nothing, count nothing
        allowed = True
    if not allowed:
        return "Too many login attempts. Wait 15 minutes and try again."
    services = current_app.config["MBUZZ"]
    with services.sessions() as db:
        user = db.scalars(sa.select(DashboardUser).where(DashboardUser.email == email)
                          .execution_options(**all_tenants("the e-mail finds its account"))).first()
        account = db.get(Account, user.account_id) if user is not None else None
        ok = verify_password(password, user.password_hash if user is not None else _DUMMY_HASH)
        if user is None or account is None or not ok or account.status != "active":
            try:
                limiter.failed(email, address)
            except Exception:
                pass
            return "Wrong e-mail or password."
        user_id, account_id = user.id, user.account_id
        epoch, mark = user.session_epoch, _password_mark(user.password_hash)
    session.clear()  # DSH-2: rotated on login
    session.permanent = True
    session.update(user_id=user_id, account_id=account_id, environment="live", epoch=epoch, pw=mark)
    csrf_token()
    g.pop("viewer", None)
    return None


def log_out() -> None:
    """DSH-2-D1: ends this session and every other session of the user (copies of the cookie included)."""
    who = viewer()
    if who is not None:  # only a live session's logout bumps the epoch: a stale copy cannot end a newer session
        with current_app.config["MBUZZ"].sessions.begin() as db:
            db.execute(sa.update(DashboardUser).where(
                DashboardUser.account_id == who.account_id, DashboardUser.id == who.user_id,
                DashboardUser.session_epoch == session.get("epoch"),
            ).values(session_epoch=DashboardUser.session_epoch + 1))
    session.clear()
    g.pop("viewer", None)


def logged_in() -> Viewer:
    """The viewer of a ``login_required`` view (which has already sent anyone else to the login page)."""
    who = viewer()
    assert who is not None, "logged_in() outside a login_required view"
    return who


def viewer() -> Viewer | None:
    """The logged-in user of this request, read once; None when the session names nobody (any more)."""
    if "viewer" in g:
        return g.viewer  # type: ignore[no-any-return]
    found: Viewer | None = None
    user_id, account_id = session.get("user_id"), session.get("account_id")
    if user_id and account_id:
        with current_app.config["MBUZZ"].sessions() as db:
            user = db.get(DashboardUser, (account_id, user_id))
            account = db.get(Account, account_id)
            if user is not None and account is not None and account.status == "active" and _current(user):
                environment = session.get("environment")
                found = Viewer(user.id, user.email, account.id, account.name,
                               environment if environment in ENVIRONMENTS else "live")
    g.viewer = found
    return found


def _current(user: DashboardUser) -> bool:
    """DSH-2-D1: the cookie was issued for the user's present epoch and password (a cookie without them is old)."""
    epoch, mark = session.get("epoch"), session.get("pw")
    return (isinstance(epoch, int) and epoch == user.session_epoch and isinstance(mark, str)
            and hmac.compare_digest(mark, _password_mark(user.password_hash)))


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if viewer() is None:
            if request.method != "GET":
                abort(401)
            return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped
