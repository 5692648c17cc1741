"""The web dashboard (dashboard.md): server-rendered pages under `/dashboard`, for logged-in users only.

Reads go through `core.reports` and `core.reads`; writes through the same core services the CLI uses. Every
POST is CSRF-checked before its view runs (DSH-3).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import Blueprint, Flask, Response, redirect, url_for

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")


@bp.before_request
def _csrf() -> Response | None:
    from gateway.dashboard.auth import check_csrf

    return check_csrf()


@bp.after_request
def _no_store(response: Response) -> Response:
    """Dashboard pages show account data: never cached by a shared proxy, never framed by another site."""
    response.headers.setdefault("Cache-Control", "private, no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _number(value: Any, places: int | None = None) -> str:
    """Thousands separators; `places` fixes the decimals (credits), money strings keep theirs."""
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        try:
            value = Decimal(value)
        except ArithmeticError:
            return str(value)
    if places is not None:
        return f"{Decimal(value):,.{places}f}"
    return f"{value:,}"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "–"


def _money(minor: int | None, currency: str | None) -> str:
    from core.reads import money

    return _number(money(minor, currency or "USD"))


def _key_hint(who: Any) -> str:
    """DSH-21: the start of the viewer's own key, so an empty state's example can be pasted as it is."""
    import sqlalchemy as sa
    from flask import current_app

    from core.storage.models import ApiKey

    with current_app.config["MBUZZ"].sessions() as db:
        prefix = db.scalar(sa.select(ApiKey.key_prefix).where(
            ApiKey.account_id == who.account_id, ApiKey.environment == who.environment, ApiKey.kind == "secret",
            ApiKey.revoked_at.is_(None)).order_by(ApiKey.created_at.desc()).limit(1))
    return str(prefix) if prefix else f"sk_{who.environment}_"


def init_app(app: Flask, public_url: str) -> None:
    from gateway.dashboard import manage, pages  # noqa: F401  (routes)
    from gateway.dashboard.auth import csrf_token
    from gateway.dashboard.charts import channel_colour

    app.register_blueprint(bp)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=public_url.startswith("https://"),
                      PERMANENT_SESSION_LIFETIME=14 * 24 * 3600)
    app.jinja_env.globals.update(csrf_token=csrf_token, channel_colour=channel_colour, key_hint=_key_hint)
    app.jinja_env.filters.update(number=_number, when=_when, money=_money)
    app.add_url_rule("/", "root", lambda: redirect(url_for("dashboard.overview")))
