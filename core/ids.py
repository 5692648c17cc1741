"""Server ids: ``<prefix>_<ULID>`` (API-5), time-sortable so journey order ties follow creation order."""

from __future__ import annotations

from datetime import UTC, datetime

from ulid import ULID

PREFIXES = frozenset({"evt", "conv", "sess", "idt", "acct", "vis", "key", "lnk", "usr", "rej", "cmd"})


def new_id(prefix: str, at: datetime | None = None) -> str:
    ulid = ULID.from_datetime(at) if at is not None else ULID()
    return f"{prefix}_{ulid}"


def id_time(server_id: str) -> datetime | None:
    """The instant embedded in a server id, or None when it is not one."""
    _, _, body = server_id.partition("_")
    try:
        return ULID.from_str(body.upper()).datetime.astimezone(UTC)
    except ValueError:
        return None
