"""Flask gateway: the edge that authenticates, validates and normalizes input into core commands."""

from __future__ import annotations

from typing import Any

from flask import Flask

from gateway.config import Settings


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    from connectors.sgtm.endpoint import ORDER_LINKED
    from connectors.sgtm.endpoint import bp as sgtm_bp
    from connectors.shopify.embedded import bp as shopify_embedded_bp
    from connectors.shopify.oauth import bp as shopify_oauth_bp
    from connectors.shopify.pixel import bp as shopify_pixel_bp
    from connectors.shopify.sweep import rerun_order
    from connectors.shopify.webhooks import bp as shopify_webhooks_bp
    from gateway import dashboard, errors, ratelimit
    from gateway.api.data import bp as data_bp
    from gateway.api.openapi import bp as openapi_bp
    from gateway.api.views import bp as api_bp
    from gateway.cli import cli
    from gateway.services import Services

    settings = settings or Settings.from_env(**overrides)
    app = Flask(__name__, template_folder="../templates")
    app.config["SECRET_KEY"] = settings.secret_key
    app.config["MAX_CONTENT_LENGTH"] = None
    app.config["MBUZZ"] = Services.build(settings)
    app.register_blueprint(api_bp)
    app.register_blueprint(data_bp)  # api.md §8.6 data API
    app.register_blueprint(openapi_bp)
    app.register_blueprint(sgtm_bp)
    app.register_blueprint(shopify_webhooks_bp)
    app.register_blueprint(shopify_pixel_bp)
    app.register_blueprint(shopify_oauth_bp)
    app.register_blueprint(shopify_embedded_bp)
    app.extensions[ORDER_LINKED] = rerun_order  # SHP-52: an sGTM link lets a parked Shopify order link at once
    dashboard.init_app(app, settings.public_url)
    ratelimit.init_app(app, settings)
    errors.init_app(app)
    app.cli.add_command(cli)
    app.wsgi_app = _strip_api_trailing_slash(app.wsgi_app)  # type: ignore[method-assign]
    return app


def _strip_api_trailing_slash(wsgi: Any) -> Any:
    """API-1: ``/api/v1/events/`` is the same path as ``/api/v1/events``, without a redirect."""

    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/api/") and len(path) > 1 and path.endswith("/"):
            environ["PATH_INFO"] = path.rstrip("/")
        return wsgi(environ, start_response)

    return middleware
