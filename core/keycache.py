"""Cache of API key lookups in Redis (api.md API-13).

Per-process caches are forbidden because revocation must be immediate everywhere; Redis is shared by every
process, and revocation deletes the entry in the same call that revokes the key, so the next request anywhere
reads the database and is refused. Entries expire after a minute, which also bounds how often ``last_used_at``
is written (API-11) and how long an account suspension takes to reach the gateway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import orjson

from core.accounts import KeyLookup
from core.queue import PREFIX, RedisClient

TTL_S = 60


def _key(digest: str) -> str:
    return f"{PREFIX}:apikey:{digest}"


def cached(client: RedisClient, digest: str) -> KeyLookup | None:
    raw = client.get(_key(digest))
    if raw is None:
        return None
    return KeyLookup(**orjson.loads(raw))


def remember(client: RedisClient, digest: str, found: KeyLookup) -> None:
    if found.problem is None:  # only valid keys: a refusal must always come from the database
        client.set(_key(digest), orjson.dumps(dataclasses.asdict(found)), ex=TTL_S)


def forget(client: RedisClient, digests: Iterable[str]) -> None:
    keys = [_key(d) for d in digests]
    if keys:
        client.delete(*keys)
