"""The server-side Google Tag Manager connector (sgtm.md): the collect endpoint and the tag template.
:func:`init_app` plugs it into a Flask app; the connector imports no gateway module (issue 18)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from connectors.sgtm.endpoint import bp

    app.register_blueprint(bp)
