"""What every edge's rate limits share (api.md API-140, API-141; shopify.md SHP-71; sgtm.md SGTM-20).

- No raw IP address or e-mail is a limit key: :func:`address_key` is a keyed digest.
- A connector limits its own views: it hands :func:`add_limits` a function that the app calls with its Flask-Limiter
  once the limiter exists (``gateway.ratelimit``), so the app never names a connector's views.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from flask import Flask

LIMITS = "mbuzz.connector_limits"  # app.extensions: the connectors' limit functions, in registration order
ConnectorLimits = Callable[[Flask, Any, Any], None]  # (app, Flask-Limiter's Limiter, the app's settings)


def address_key(secret_key: str, kind: str, value: str) -> str:
    """A limit key for an address or e-mail that never holds it in the clear: HMAC-SHA256 under SECRET_KEY."""
    digest = hmac.new(secret_key.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
    return f"{kind}:{digest[:32]}"


def add_limits(app: Flask, limits: ConnectorLimits) -> None:
    app.extensions.setdefault(LIMITS, []).append(limits)


def apply_limits(app: Flask, limiter: Any, settings: Any) -> None:
    """Called by the app once its limiter exists: every connector decorates its own views."""
    for limits in app.extensions.get(LIMITS, []):
        limits(app, limiter, settings)
