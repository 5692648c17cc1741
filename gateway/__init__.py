"""Flask gateway: the edge that authenticates, validates and normalizes input into core commands.

Request bodies are capped while they are read (quality.md Q-8, api.md API-30, shopify.md SHP-32/SHP-69, sgtm.md
SGTM-20; docs/api.md API-30-D1): a WSGI middleware in front of every route reads a chunked body (no
``Content-Length``) only up to the route's cap plus one byte, and refuses a declared length above the cap without
reading it, so no handler can ever pull a whole 300 MB body into memory. The refusal itself is answered by
:mod:`gateway.errors` (413, JSON, naming the limit, before any other check).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from gateway.config import Settings

BODY_TOO_LARGE = "mbuzz.body_too_large"  # WSGI environ key: (bytes declared or read, the route's cap)
_READ_STEP = 65_536


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    import connectors.sgtm
    import connectors.shopify
    from connectors.sgtm.endpoint import ORDER_LINKED
    from connectors.shopify.sweep import rerun_order
    from gateway import dashboard, errors, ratelimit
    from gateway.api.data import bp as data_bp
    from gateway.api.lean import LeanEvents
    from gateway.api.openapi import bp as openapi_bp
    from gateway.api.views import bp as api_bp
    from gateway.cli import cli
    from gateway.services import Services

    settings = settings or Settings.from_env(**overrides)
    app = Flask(__name__, template_folder="../templates")
    app.config["SECRET_KEY"] = settings.secret_key
    caps = _route_caps()
    app.config["MAX_CONTENT_LENGTH"] = caps[-1][1]  # the largest body any route takes (API-30-D1), belt and braces
    app.config["MBUZZ"] = Services.build(settings)
    app.register_blueprint(api_bp)
    app.register_blueprint(data_bp)  # api.md §8.6 data API
    app.register_blueprint(openapi_bp)
    connectors.sgtm.init_app(app)
    connectors.shopify.init_app(app, lambda: Services.build(settings), cli)  # its RQ jobs' services, same settings
    app.extensions[ORDER_LINKED] = rerun_order  # SHP-52: an sGTM link lets a parked Shopify order link at once
    dashboard.init_app(app, settings.public_url)
    ratelimit.init_app(app, settings)
    errors.init_app(app)
    app.cli.add_command(cli)
    app.session_interface = _NoSessionOnTheApi()
    app.wsgi_app = LeanEvents(app, _strip_api_trailing_slash(_cap_body(app.wsgi_app, caps)))  # type: ignore[method-assign]
    return app


class _NoSessionOnTheApi(SecureCookieSessionInterface):
    """`/api/` answers never read or set the dashboard's session cookie (keys authenticate them, API-10), so they
    skip building its signer: part of a single-event request's cost (docs/performance.md, issue 17)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith("/api/"):
            return self.make_null_session(app)
        return super().open_session(app, request)


def _route_caps() -> list[tuple[str, int]]:
    """(path prefix, byte cap) in match order; the last, ``""``, is every other route with the largest cap
    of all, so the global cap is decided by the largest body the product accepts (SHP-32's 5 MiB webhooks)."""
    from connectors.sgtm.endpoint import MAX_BODY as SGTM_LIMIT
    from connectors.shopify.pixel import MAX_BODY as PIXEL_LIMIT
    from connectors.shopify.webhooks import MAX_BODY as WEBHOOK_LIMIT
    from gateway.api.views import EVENTS_LIMIT, OTHER_LIMIT

    routes = [("/api/v1/events", EVENTS_LIMIT), ("/api/", OTHER_LIMIT), ("/shopify/webhooks", WEBHOOK_LIMIT),
              ("/shopify/pixel/", PIXEL_LIMIT), ("/sgtm/", SGTM_LIMIT)]
    return [*routes, ("", max(cap for _, cap in routes))]


def body_cap(caps: list[tuple[str, int]], path: str) -> int:
    """The cap of ``path``: ``/api/v1/events`` exactly (and with a trailing slash), otherwise the first prefix."""
    for prefix, cap in caps:
        if prefix == "/api/v1/events":
            if path.rstrip("/") == prefix:
                return cap
        elif path.startswith(prefix):
            return cap
    return caps[-1][1]


def _read_within(stream: Any, cap: int) -> bytes | int:
    """The whole body when it is at most ``cap`` bytes; otherwise the number of bytes read to find out it is not
    (``cap + 1``; what was read is dropped). Each read asks for no more than is missing to reach ``cap + 1``, so
    at most ``cap + 1`` bytes are ever held, however long the body."""
    pieces: list[bytes] = []
    size = 0
    while size <= cap:
        piece = stream.read(min(_READ_STEP, cap + 1 - size))
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)
        size += len(piece)
    return size


def _declared_length(environ: dict[str, Any]) -> int | None:
    raw = environ.get("CONTENT_LENGTH") or ""
    return int(raw) if raw.strip().isdigit() else None


def _cap_body(wsgi: Any, caps: list[tuple[str, int]]) -> Callable[[dict[str, Any], Any], Any]:
    """Q-8 / API-30-D1: enforce the route's cap while reading.

    A chunked body is read here up to cap + 1 bytes: within the cap it is handed on as a plain body with its
    length; beyond it, and for a declared ``Content-Length`` above the cap (never read), the route sees an
    empty body and ``environ[BODY_TOO_LARGE]``, which :mod:`gateway.errors` answers with 413. Bodies within
    the cap with a ``Content-Length`` are left alone (werkzeug reads no further than the declared length).
    """

    def refuse(environ: dict[str, Any], size: int, cap: int) -> None:
        environ[BODY_TOO_LARGE] = (size, cap)
        environ["wsgi.input"] = io.BytesIO(b"")
        environ["CONTENT_LENGTH"] = "0"
        environ.pop("HTTP_TRANSFER_ENCODING", None)

    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        cap = body_cap(caps, environ.get("PATH_INFO", ""))
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            data = _read_within(environ["wsgi.input"], cap)
            if isinstance(data, int):
                refuse(environ, data, cap)
            else:
                environ["wsgi.input"] = io.BytesIO(data)
                environ["CONTENT_LENGTH"] = str(len(data))
                environ.pop("HTTP_TRANSFER_ENCODING", None)
        else:
            declared = _declared_length(environ)
            if declared is not None and declared > cap:
                refuse(environ, declared, cap)
        return wsgi(environ, start_response)

    return middleware


def _strip_api_trailing_slash(wsgi: Any) -> Any:
    """API-1: ``/api/v1/events/`` is the same path as ``/api/v1/events``, without a redirect."""

    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/api/") and len(path) > 1 and path.endswith("/"):
            environ["PATH_INFO"] = path.rstrip("/")
        return wsgi(environ, start_response)

    return middleware
