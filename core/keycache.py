"""Cache of API key lookups in Redis (api.md API-13; quality.md Q-22; docs/api.md API-13-D1, API-13-D2).

Per-process caches are forbidden because revocation must be immediate everywhere; Redis is shared by every process.
A valid key's entry is *fresh* for ``ttl_s`` (``CoreSettings.key_cache_ttl_s``, 60 s by default, which also bounds
how often ``last_used_at`` is written, API-11, and how long an account suspension takes to reach the gateway);
after that the database is asked again. The entry itself is kept as the key's *last good* answer for
``LAST_GOOD_S``: while the database is unreachable a known key keeps working from it (Q-22), and a never-seen key
cannot be verified (503).

Refusals found by a lookup are never cached; a lookup that finds one deletes the last good entry. Revocation is
the one cached refusal, because it is permanent: ``forget`` deletes the entry and writes a revocation mark in
the same call, and the mark wins over any entry (also over one a concurrent lookup writes just after), so a
revoked key is refused at once, with or without the database. Keys are stored by digest, never in the clear.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from core.accounts import KeyLookup
from core.queue import PREFIX, RedisClient

LAST_GOOD_S = 7 * 86400  # how long a last good answer may stand in for an unreachable database
REVOKED_S = 30 * 86400  # after that the database answers "revoked" again, as it always can


def entry_key(digest: str) -> str:
    return f"{PREFIX}:apikey:{digest}"


def revoked_key(digest: str) -> str:
    return f"{PREFIX}:apikey-revoked:{digest}"


@dataclass(frozen=True)
class Cached:
    lookup: KeyLookup
    fresh: bool  # False: a last good answer, to use only when the database cannot be asked


def cached(client: RedisClient, digest: str, ttl_s: float) -> Cached | None:
    """One round trip: the entry and the revocation mark together; an entry older than ``ttl_s`` is not fresh."""
    raw, revoked = client.mget([entry_key(digest), revoked_key(digest)])
    if revoked is not None:
        return Cached(KeyLookup(problem="revoked"), fresh=True)
    if raw is None:
        return None
    data = orjson.loads(raw)
    checked_at = float(data.pop("checked_at", 0.0))
    return Cached(KeyLookup(**data), fresh=time.time() - checked_at < ttl_s)


def remember(client: RedisClient, digest: str, found: KeyLookup) -> None:
    """A valid key: a fresh entry. A refusal from the database: no entry, not even a last good one."""
    if found.problem is None:
        entry = {**dataclasses.asdict(found), "checked_at": time.time()}
        client.set(entry_key(digest), orjson.dumps(entry), ex=LAST_GOOD_S)
    else:
        client.delete(entry_key(digest))


def forget(client: RedisClient, digests: Iterable[str]) -> None:
    """Revocation (API-13): called in the same command that revokes the keys."""
    wanted = list(digests)
    if not wanted:
        return
    pipe = client.pipeline(transaction=True)
    for digest in wanted:
        pipe.delete(entry_key(digest))
        pipe.set(revoked_key(digest), b"1", ex=REVOKED_S)
    pipe.execute()
