"""A connector's part of the worker process (issue 18 item 1): the RQ queues it serves and what it starts.

The app keeps the connectors' parts under ``app.extensions[WORKER_PARTS]``; ``flask mbuzz worker`` listens to
their queues as well as the core's and starts each part (``burst`` is the worker's ``--burst``). Plain data, so
the core names no connector and the worker names none either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

WORKER_PARTS = "mbuzz.worker_parts"


@dataclass(frozen=True)
class WorkerPart:
    queues: tuple[str, ...]
    start: Callable[[bool], None]
