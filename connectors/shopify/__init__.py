"""The Shopify connector (shopify.md): webhooks, the Web Pixel endpoint, OAuth and the embedded app, with their
RQ jobs. :func:`init_app` plugs it into a Flask app; the connector imports no gateway module (issue 18)."""

from __future__ import annotations

from collections.abc import Callable

import click
from flask import Flask

from edge.services import AppServices


def init_app(app: Flask, worker_services: Callable[[], AppServices], commands: click.Group) -> None:
    """Registers the connector's blueprints, its limits (edge.limits), its operator commands (in ``commands``)
    and its part of the worker (core.worker_parts); ``worker_services`` builds the services its RQ jobs use in a
    worker process (called once per process, on the first job)."""
    from connectors.shopify.cli import COMMANDS, worker_part
    from connectors.shopify.embedded import bp as embedded
    from connectors.shopify.oauth import bp as oauth
    from connectors.shopify.pixel import bp as pixel
    from connectors.shopify.pixel import limit_pixel
    from connectors.shopify.queue import provide_services
    from connectors.shopify.webhooks import bp as webhooks
    from core.worker_parts import WORKER_PARTS
    from edge.limits import add_limits

    for blueprint in (webhooks, pixel, oauth, embedded):
        app.register_blueprint(blueprint)
    add_limits(app, limit_pixel)
    provide_services(worker_services)
    for command in COMMANDS:
        commands.add_command(command)
    app.extensions.setdefault(WORKER_PARTS, []).append(worker_part())
