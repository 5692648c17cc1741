"""The cyclic garbage collector paused while a batch is processed (issue 16).

A drain batch allocates thousands of container objects that live until the batch ends (commands, plain rows,
result records), so the collector's allocation thresholds keep firing while nearly nothing is garbage yet: in the
drain benchmark four full collections of the process's heap cost a tenth of the drain's time. Reference counting
still frees everything acyclic at once; cyclic garbage made during the batch waits for the collector, which runs
again as soon as the batch is done.

The drain pauses it around each batch's transaction (``core.jobs``): a worker processes one batch at a time. The
gateway's inline requests do not pause it: overlapping requests on its threads could keep it off for good, and
cyclic garbage would then only grow. The pause is counted all the same (the first to start pauses the collector,
if it was enabled at all, the last to finish resumes it), so it stays correct if threads ever use it.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_active = 0
_resume = False  # the collector was enabled when the first of the active batches paused it


@contextmanager
def collector_paused() -> Iterator[None]:
    global _active, _resume
    with _lock:
        if _active == 0:
            _resume = gc.isenabled()
            gc.disable()
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _resume:
                gc.enable()
