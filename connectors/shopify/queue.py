"""The connector's background work (shopify.md SHP-27, SHP-37, SHP-54): RQ jobs on `<prefix>-shopify`.

With Redis configured, work is an RQ job (delayed work through RQ's scheduler, which the worker runs);
without Redis, or when Redis is down, the caller runs the work inline or leaves it to the sweep, so nothing
depends on the queue being reachable. Jobs receive ids only and read the source of truth from the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import cache
from typing import Any

import redis

from core.queue import PREFIX
from edge.services import AppServices

__all__ = ["SHOPIFY_QUEUE", "enqueue", "worker_services"]

log = logging.getLogger("mbuzz.shopify")

SHOPIFY_QUEUE = f"{PREFIX}-shopify"


def enqueue(services: AppServices, function: str, *args: Any, delay: timedelta | None = None,
            retries: Sequence[int] = ()) -> bool:
    """Queue `function` (a dotted path) with `args`, retried after `retries` seconds when it raises; False when
    there is no reachable Redis."""
    if services.redis is None:
        return False
    from rq import Queue, Retry

    queue = Queue(SHOPIFY_QUEUE, connection=services.redis)
    options: dict[str, Any] = {"job_timeout": 600, "result_ttl": 0, "failure_ttl": 7 * 86400}
    if retries:
        options["retry"] = Retry(max=len(retries), interval=list(retries))
    try:
        if delay is None:
            queue.enqueue(function, *args, **options)
        else:
            queue.enqueue_in(delay, function, *args, **options)
    except redis.RedisError:
        log.warning("Redis unavailable: %s runs from the sweep instead", function)
        return False
    return True


_services_factory: list[Callable[[], AppServices]] = []  # set by the app (connectors.shopify.init_app)


def provide_services(factory: Callable[[], AppServices]) -> None:
    """How this process builds its services for the connector's jobs (the app knows; the connector does not)."""
    _services_factory[:] = [factory]


@cache
def worker_services() -> AppServices:
    """The services of the worker process, built once, as the app said (``provide_services``)."""
    if not _services_factory:
        raise RuntimeError("the Shopify connector has no services: create the app first (connectors.shopify.init_app)")
    return _services_factory[0]()
