"""Per-key rate limits (api.md API-140) with Flask-Limiter.

Keys are limited by the digest of the presented token so no database read is needed; storage is Redis when
configured, else per-process memory, and a Redis outage falls back to memory instead of failing requests.
Each app gets its own Limiter, so two apps in one process (tests, benchmarks) never share limits.
"""

from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter

from connectors.shopify.pixel import pixel_key_for_limits
from gateway.api.auth import client_ip, token_digest
from gateway.config import Settings


def init_app(app: Flask, settings: Settings) -> Limiter:
    app.config["RATELIMIT_STORAGE_URI"] = settings.redis_url or "memory://"
    limiter = Limiter(
        key_func=token_digest,
        app=app,
        headers_enabled=True,
        strategy="moving-window",
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    views = app.view_functions
    ingest = limiter.shared_limit(lambda: settings.ratelimit_ingest, scope="ingest")
    sync = limiter.shared_limit(lambda: settings.ratelimit_sync, scope="sync")
    data = limiter.shared_limit(lambda: settings.ratelimit_data, scope="data")  # API-140: GET /data/*
    for name, decorator in (
        *((f"api_v1_data.{view}", data) for view in ("conversions", "conversion", "events", "sessions",
                                                       "attribution")),
        ("api_v1.events", ingest),
        ("api_v1.sessions", ingest),
        ("api_v1.conversions", sync),
        ("api_v1.identify", sync),
        ("api_v1.validate", limiter.limit(lambda: settings.ratelimit_validate)),
        ("sgtm_v1.collect", limiter.limit(lambda: settings.ratelimit_sgtm)),  # sgtm.md SGTM-20
    ):
        views[name] = decorator(views[name])
    # shopify.md SHP-71: per pixel key and per shopper IP (the pixel is called by browsers).
    pixel = views["shopify_pixel.events"]
    pixel = limiter.limit(lambda: settings.ratelimit_pixel_key, key_func=pixel_key_for_limits)(pixel)
    by_ip = limiter.limit(lambda: settings.ratelimit_pixel_ip, key_func=lambda: "ip:" + client_ip(),
                          exempt_when=lambda: request.method == "OPTIONS")
    views["shopify_pixel.events"] = by_ip(pixel)
    limiter.exempt(views["api_v1.health"])
    limiter.exempt(views["api_v1_openapi.openapi"])
    app.extensions["mbuzz_limiter"] = limiter
    return limiter
