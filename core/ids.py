"""Server ids: ``<prefix>_<ULID>`` (API-5), time-sortable so journey order ties follow creation order."""

from __future__ import annotations

from datetime import datetime

from ulid import ULID

PREFIXES = frozenset({"evt", "conv", "sess", "idt", "acct", "vis", "key", "lnk", "usr", "rej", "cmd"})


def id_time(id: str) -> datetime:
    """The creation instant embedded in a server id (ULID, millisecond precision, UTC); ValueError if none."""
    return ULID.from_str(id.rpartition("_")[2].upper()).datetime


def new_id(prefix: str, at: datetime | None = None) -> str:
    ulid = ULID.from_datetime(at) if at is not None else ULID()
    return f"{prefix}_{ulid}"
