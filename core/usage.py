"""Monthly usage and the event quota (api.md API-33), read by the edge before it accepts events."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.storage.models import UsageCounter


def month_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


def quota_reached(db: Session, account_id: str, quota: int | None, at: datetime) -> bool:
    if quota is None:
        return False
    used = db.scalar(
        sa.select(UsageCounter.events).where(UsageCounter.account_id == account_id, UsageCounter.month == month_of(at))
    )
    return (used or 0) >= quota
