"""Per-key rate limits (api.md API-140) with Flask-Limiter, and what every limit of the gateway shares.

Keys are limited by the digest of the presented token so no database read is needed; storage is Redis when
configured, else per-process memory, and a Redis outage falls back to memory instead of failing requests.
Each app gets its own Limiter, so two apps in one process (tests, benchmarks) never share limits.

Shared by every limit (issue 15 item 11):
- Keys live under `MBUZZ_REDIS_PREFIX` (`<prefix>:limits:`, as core.queue's streams and queues do), so two
  deployments sharing one Redis never share limits (`storage_options`, also used by the dashboard's login limit).
- No raw IP address is a key: per-address limits count `address_key(...)`, a keyed digest (no raw IP or e-mail
  stored anywhere).
- One retry figure per 429: an answer whose JSON body carries `retry_after` gets exactly that number as its
  `Retry-After` header (API-140, API-141), after Flask-Limiter has written its own, floored, value.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask_limiter import Limiter

from core.queue import PREFIX
from edge.limits import apply_limits
from gateway.api.auth import token_digest
from gateway.config import Settings

KEY_PREFIX = f"{PREFIX}:limits"


def storage_options() -> dict[str, str | int]:
    """Options of every `limits` storage: Redis keys start with `<MBUZZ_REDIS_PREFIX>:limits:` (memory ignores it)."""
    return {"key_prefix": KEY_PREFIX}


def one_retry_after(response: Response) -> Response:
    """API-140/API-141: `Retry-After` is the body's `retry_after` (one computation for both)."""
    if response.status_code not in (429, 503) or not response.is_json or response.direct_passthrough:
        return response
    body = response.get_json(silent=True)
    retry = body.get("retry_after") if isinstance(body, dict) else None
    if isinstance(retry, int) and not isinstance(retry, bool) and retry >= 1:
        response.headers["Retry-After"] = str(retry)
    return response


# Limited by their append's admission (gateway.api.admission, docs/api.md API-140-D1), not by Flask-Limiter.
ADMITTED_BY_APPEND = frozenset({"api_v1.events", "api_v1.sessions", "api_v1.conversions", "api_v1.identify"})


def _not_on(app: Flask, limiter: Limiter, endpoints: frozenset[str]) -> None:
    """Flask-Limiter's per-request check does not run at all for ``endpoints`` (an exemption still costs a
    single-event request 7 % of its time: docs/performance.md). Raises if Flask-Limiter stops hooking in as
    ``before_request(_check_request_limit)``, so an upgrade cannot silently limit them twice."""
    hooks = app.before_request_funcs[None]
    check = limiter._check_request_limit
    position = hooks.index(check)

    def check_unless_admitted_by_append() -> None:
        if request.endpoint not in endpoints:
            check()

    hooks[position] = check_unless_admitted_by_append


def init_app(app: Flask, settings: Settings) -> Limiter:
    # Registered before the Limiter's own after-request hook, so it runs after it (Flask runs them in reverse).
    app.after_request(one_retry_after)
    app.config["RATELIMIT_STORAGE_URI"] = settings.redis_url or "memory://"
    limiter = Limiter(
        key_func=token_digest,
        app=app,
        headers_enabled=True,
        strategy="moving-window",
        swallow_errors=True,
        in_memory_fallback_enabled=True,
        storage_options=storage_options(),
    )
    views: dict[str, Any] = app.view_functions  # Flask-Limiter's decorators return their own callable types
    _not_on(app, limiter, ADMITTED_BY_APPEND)
    data = limiter.shared_limit(lambda: settings.ratelimit_data, scope="data")  # API-140: GET /data/*
    for name, decorator in (
        *((f"api_v1_data.{view}", data) for view in ("conversions", "conversion", "events", "sessions",
                                                       "attribution")),
        ("api_v1.validate", limiter.limit(lambda: settings.ratelimit_validate)),
    ):
        views[name] = decorator(views[name])
    apply_limits(app, limiter, settings)  # the connectors' own (sgtm.md SGTM-20, shopify.md SHP-71)
    limiter.exempt(views["api_v1.health"])
    limiter.exempt(views["api_v1_openapi.openapi"])
    app.extensions["mbuzz_limiter"] = limiter
    return limiter
