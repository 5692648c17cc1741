"""Error answers for everything no view handled (api.md API-4, API-20, API-23): always the JSON envelope.

That includes a body refused by the cap middleware of :mod:`gateway` (quality.md Q-8, docs/api.md API-30-D1):
413 before any other check, in the shape of the route's own 413 (api.md API-30 on ``/api``, ``payload_too_large``
on the Shopify and sGTM routes, shopify.md SHP-32, SHP-69, sgtm.md SGTM-20). Errors gunicorn answers itself,
before the app sees a request, are JSON too: see ``gunicorn.conf.py`` (API-4-D1).
"""

from __future__ import annotations

import logging
import math
import time
import uuid

from flask import Flask, Response, current_app, g, request
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException

from edge.http import json_response
from gateway.api.views import DEFECT, _request_id

log = logging.getLogger("mbuzz.gateway")


def too_large_answer(path: str, size: int, cap: int) -> Response:
    """The 413 of a body over its route's cap (API-30-D1), named as each route's specification names it."""
    if path.startswith(("/shopify/", "/sgtm/")):  # SHP-32, SHP-69, SGTM-20
        resp = json_response({"error": "payload_too_large"}, 413)  # the exact body those specifications fix
        if path.startswith("/shopify/pixel/"):
            resp.headers["Access-Control-Allow-Origin"] = "*"  # SHP-68: errors too
        return resp
    return json_response({"error": f"Request body too large: {size} bytes (maximum {cap})"}, 413)


def _body_too_large() -> Response | None:
    """First of all request hooks: a body refused while it was read is answered before authentication, rate
    limits or forms look at the (emptied) body."""
    from gateway import BODY_TOO_LARGE

    refused = request.environ.get(BODY_TOO_LARGE)
    if refused is None:
        return None
    _request_id()  # the caller's X-Request-Id is echoed on this answer too (API-4)
    size, cap = refused
    return too_large_answer(request.path, size, cap)


def init_app(app: Flask) -> None:
    app.before_request_funcs.setdefault(None, []).insert(0, _body_too_large)

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(exc: RateLimitExceeded) -> Response:
        current = current_app.extensions["mbuzz_limiter"].current_limit
        retry = 1
        if current is not None:
            retry = max(1, math.ceil(current.reset_at - time.time()))
        if request.path.startswith(("/sgtm/", "/shopify/")):  # sgtm.md SGTM-20, shopify.md SHP-71
            resp = json_response({"error": "rate_limited"}, 429)
            if request.path.startswith("/shopify/pixel/"):
                resp.headers["Access-Control-Allow-Origin"] = "*"  # SHP-68: errors too
        else:
            resp = json_response({"error": "Rate limit exceeded", "retry_after": retry}, 429)
        resp.headers["Retry-After"] = str(retry)
        g.retry_after = str(retry)  # Flask-Limiter rewrites the header after us and may round down to 0
        return resp

    @app.errorhandler(404)
    def _not_found(_exc: HTTPException) -> Response:
        return json_response({"error": "Not found"}, 404)

    @app.errorhandler(405)
    def _not_allowed(exc: HTTPException) -> Response:
        resp = json_response({"error": "Method not allowed"}, 405)
        allowed = exc.get_response().headers.get("Allow")
        if allowed:
            resp.headers["Allow"] = allowed
        return resp

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return json_response({"error": exc.description or exc.name}, exc.code or 500)

    @app.errorhandler(Exception)
    def _defect(exc: Exception) -> Response:
        request_id = g.get("request_id") or str(uuid.uuid4())
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path, request_id)
        return json_response({"error": DEFECT, "request_id": request_id}, 500)
