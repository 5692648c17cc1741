"""Dashboard login, sessions and CSRF (dashboard.md DSH-2..DSH-5).

The session is Flask's signed cookie: it holds the user id, the account id, the chosen environment and the CSRF
token. Logging in replaces the whole session (rotation), so a cookie planted before login is worth nothing
after it. Every POST of the dashboard carries the session's CSRF token; one that does not is refused with 400
before any view runs. Failed logins are limited per e-mail and per IP, and the answer never says which of the
two was wrong or whether the e-mail exists.
"""

from __future__ import annotations

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
from core.tenant import Tenant

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
    """DSH-4 with the `limits` package (Flask-Limiter's engine): shared through Redis when configured."""

    def __init__(self, storage_uri: str, limit: str = LOGIN_LIMIT) -> None:
        self._limit = parse(limit)
        self._window = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def allowed(self, email: str, ip: str) -> bool:
        return all(self._window.test(self._limit, "login", part) for part in (f"email:{email}", f"ip:{ip}"))

    def failed(self, email: str, ip: str) -> None:
        for part in (f"email:{email}", f"ip:{ip}"):
            self._window.hit(self._limit, "login", part)


def _limiter() -> LoginLimiter:
    found = current_app.extensions.get("mbuzz.login_limiter")
    if found is None:
        uri = current_app.config["MBUZZ"].settings.redis_url or "memory://"
        found = current_app.extensions["mbuzz.login_limiter"] = LoginLimiter(uri)
    return found  # type: ignore[no-any-return]


def log_in(email: str, password: str, ip: str) -> str | None:
    """The error to show, or None once the session belongs to the user."""
    email = email.strip().lower()
    limiter = _limiter()
    try:
        allowed = limiter.allowed(email, ip)
    except Exception:  # the limit store is down: refuse nothing, count nothing
        allowed = True
    if not allowed:
        return "Too many login attempts. Wait 15 minutes and try again."
    services = current_app.config["MBUZZ"]
    with services.sessions() as db:
        user = db.scalars(sa.select(DashboardUser).where(DashboardUser.email == email)).first()
        account = db.get(Account, user.account_id) if user is not None else None
        ok = verify_password(password, user.password_hash if user is not None else _DUMMY_HASH)
        if user is None or account is None or not ok or account.status != "active":
            try:
                limiter.failed(email, ip)
            except Exception:
                pass
            return "Wrong e-mail or password."
        user_id, account_id = user.id, user.account_id
    session.clear()  # DSH-2: rotated on login
    session.permanent = True
    session.update(user_id=user_id, account_id=account_id, environment="live")
    csrf_token()
    return None


def log_out() -> None:
    session.clear()


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
            if user is not None and account is not None and account.status == "active":
                environment = session.get("environment")
                found = Viewer(user.id, user.email, account.id, account.name,
                               environment if environment in ENVIRONMENTS else "live")
    g.viewer = found
    return found


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if viewer() is None:
            if request.method != "GET":
                abort(401)
            return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped
