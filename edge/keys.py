"""The API key lookup behind every edge that takes keys (api.md API-13; docs/api.md API-13-D1, API-13-D2)."""

from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError

from core import keycache
from core.accounts import KeyLookup, key_digest, lookup_key
from edge.services import AppServices

log = logging.getLogger("mbuzz.auth")


def cached_lookup(services: AppServices, token: str) -> KeyLookup:
    """API-13: valid keys are cached in Redis; revocation marks them there. The database decides every other
    refusal, and only its unavailability lets a stale entry (the key's last good answer) stand in (Q-22)."""
    digest = key_digest(token)
    entry = _cached(services, digest)
    if entry is not None and entry.fresh:
        return entry.lookup
    try:
        with services.sessions.begin() as db:
            found = lookup_key(db, token)
    except OperationalError:
        if entry is None:
            raise  # a key never seen cannot be verified: 503
        log.warning("database unavailable; key %s served from its last good cache entry", entry.lookup.key_prefix)
        return entry.lookup
    if services.redis is not None and (found.problem is None or entry is not None):
        try:
            keycache.remember(services.redis, digest, found)
        except Exception:
            pass
    return found


def _cached(services: AppServices, digest: str) -> keycache.Cached | None:
    if services.redis is None:
        return None
    try:
        return keycache.cached(services.redis, digest, services.settings.key_cache_ttl_s)
    except Exception:  # Redis trouble: the database answers
        return None
