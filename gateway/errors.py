"""Error answers for everything no view handled (api.md API-20, API-23): always the JSON envelope."""

from __future__ import annotations

import logging
import math
import time
import uuid

from flask import Flask, Response, current_app, g, request
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException

from gateway.api.views import json_response

log = logging.getLogger("mbuzz.gateway")


def init_app(app: Flask) -> None:
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
        return json_response({"error": "Internal server error", "request_id": request_id}, 500)
