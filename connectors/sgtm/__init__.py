"""The server-side Google Tag Manager connector (sgtm.md): the collect endpoint and the tag template.
:func:`init_app` plugs it into a Flask app; the connector imports no gateway module (issue 18)."""

from __future__ import annotations

from typing import Any

from flask import Flask


def init_app(app: Flask) -> None:
    """Registers the collect endpoint and its per-key limit (SGTM-20)."""
    from connectors.sgtm.endpoint import bp
    from edge.limits import add_limits

    app.register_blueprint(bp)
    add_limits(app, _limit_collect)


def _limit_collect(app: Flask, limiter: Any, settings: Any) -> None:
    app.view_functions["sgtm_v1.collect"] = limiter.limit(lambda: settings.ratelimit_sgtm)(
        app.view_functions["sgtm_v1.collect"])
