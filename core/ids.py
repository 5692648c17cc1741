"""Server ids: ``<prefix>_<ULID>`` (API-5), time-sortable so journey order ties follow creation order.

Ids are generated here rather than by ``python-ulid``'s ``ULID()``: a drain batch creates thousands of session
and visitor ids, and the library's per-id objects, lock and ``os.urandom`` call were 7 % of a drain (issue 16).
The ids are the same ULIDs (48-bit millisecond time, 80 random bits, Crockford base32, 26 characters) under the
same rule as the library's default (strict monotonic): an id in the same millisecond as the previous one takes
the previous randomness plus one, so ids of one process made in one millisecond sort in creation order.
Randomness is drawn from ``os.urandom`` in blocks; a forked child (RQ work horses) starts with neither the
parent's block nor its last id, so two children never hand out the same bits. ``id_time`` still reads ids with
the library.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime

from ulid import ULID

PREFIXES = frozenset({"evt", "conv", "sess", "idt", "acct", "vis", "key", "lnk", "usr", "rej", "cmd"})

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)  # 10 bits -> two base32 characters
_MAX_TIME = (1 << 48) - 1
_MAX_RANDOM = (1 << 80) - 1
_BLOCK = 10 * 256  # random bytes drawn per os.urandom call: 256 ids


class _Generator:
    """The process's ULID state: the last millisecond and randomness, and a block of unused random bytes."""

    __slots__ = ("_block", "_lock", "_offset", "_prev_ms", "_prev_random")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._offset = 0
        self._prev_ms = 0
        self._prev_random = 0

    def reset(self) -> None:
        """Forget the block and the last id (called in a forked child)."""
        self._lock = threading.Lock()
        self._block, self._offset, self._prev_ms, self._prev_random = b"", 0, 0, 0

    def ulid(self, ms: int) -> str:
        if not 0 <= ms <= _MAX_TIME:
            raise ValueError("Value exceeds maximum possible timestamp")
        with self._lock:
            if ms == self._prev_ms:
                random = self._prev_random + 1
                if random > _MAX_RANDOM:
                    raise ValueError("Randomness within same millisecond exhausted")
            else:
                offset = self._offset
                if offset + 10 > len(self._block):
                    self._block, offset = os.urandom(_BLOCK), 0
                random = int.from_bytes(self._block[offset:offset + 10], "big")
                self._offset = offset + 10
            self._prev_ms, self._prev_random = ms, random
        return encode(ms, random)


def encode(ms: int, random: int) -> str:
    """The 26-character Crockford base32 text of a ULID (130 bits, the top two zero), ten bits at a time."""
    v = (ms << 80) | random
    p = _PAIRS
    return (p[v >> 120] + p[(v >> 110) & 1023] + p[(v >> 100) & 1023] + p[(v >> 90) & 1023] + p[(v >> 80) & 1023]
            + p[(v >> 70) & 1023] + p[(v >> 60) & 1023] + p[(v >> 50) & 1023] + p[(v >> 40) & 1023]
            + p[(v >> 30) & 1023] + p[(v >> 20) & 1023] + p[(v >> 10) & 1023] + p[v & 1023])


_generator = _Generator()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_generator.reset)


def id_time(id: str) -> datetime:
    """The creation instant embedded in a server id (ULID, millisecond precision, UTC); ValueError if none."""
    return ULID.from_str(id.rpartition("_")[2].upper()).datetime


def new_id(prefix: str, at: datetime | None = None) -> str:
    """A new id; ``at`` sets its embedded time (millisecond, truncated as ``ULID.from_datetime`` does)."""
    ms = int(at.timestamp() * 1000) if at is not None else time.time_ns() // 1_000_000
    return f"{prefix}_{_generator.ulid(ms)}"
