"""Server ids: ``<prefix>_<ULID>`` (API-5), time-sortable so journey order ties follow creation order.

Ids come from the ``python-ulid`` library's generator (strictly monotonic within a millisecond). Its default
entropy is one ``os.urandom`` system call per id, which was a tenth of a drained event's cost (issue 16: a batch
creates thousands of session and visitor ids), so this module's generator draws the same bytes from the kernel
in blocks. A forked child gets a fresh generator and an empty block: it never repeats its parent's bytes, nor
continues its parent's monotonic sequence.
"""

from __future__ import annotations

import os
from datetime import datetime

from ulid import ULID, ULIDGenerator

PREFIXES = frozenset({"evt", "conv", "sess", "idt", "acct", "vis", "key", "lnk", "usr", "rej", "cmd"})
RANDOMNESS_LEN = 10  # 80 bits (the ULID specification)


class BlockEntropy:
    """``os.urandom`` read 409 ids' worth at a time. Called only under the generator's lock."""

    BLOCK = RANDOMNESS_LEN * 409

    def __init__(self) -> None:
        self._block = b""
        self._at = 0

    def __call__(self, _timestamp: int) -> bytes:
        if self._at + RANDOMNESS_LEN > len(self._block):
            self._block, self._at = os.urandom(self.BLOCK), 0
        self._at += RANDOMNESS_LEN
        return self._block[self._at - RANDOMNESS_LEN:self._at]


_generator = ULIDGenerator(randomness=BlockEntropy())


def _fresh_generator() -> None:
    global _generator
    _generator = ULIDGenerator(randomness=BlockEntropy())


os.register_at_fork(after_in_child=_fresh_generator)


def id_time(id: str) -> datetime:
    """The creation instant embedded in a server id (ULID, millisecond precision, UTC); ValueError if none."""
    return ULID.from_str(id.rpartition("_")[2].upper()).datetime


def new_id(prefix: str, at: datetime | None = None) -> str:
    return f"{prefix}_{_generator.generate(at)}"
