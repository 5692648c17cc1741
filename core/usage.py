"""Monthly usage and the event quota (api.md API-33), read by the edge before it accepts events and shown
read-only on the dashboard's Settings page (dashboard.md DSH-18)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.storage.models import Account, UsageCounter


def month_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


@dataclass(frozen=True)
class MonthlyUsage:
    """One account's calendar month (UTC): events and session touches counted against ``quota``.

    Counting happens only while the account has a quota (batch.py charges nothing otherwise), so ``events`` of an
    account without one is 0 and says nothing about its traffic.
    """

    month: str
    events: int
    quota: int | None

    @property
    def percent(self) -> float | None:
        """Share of the quota used, unbounded (a batch accepted just under the quota can pass it); a quota of 0
        is used up from the start (API-33: reached once usage >= quota)."""
        if self.quota is None:
            return None
        return 100.0 if self.quota == 0 else self.events * 100 / self.quota


def _used(db: Session, account_id: str, month: str) -> int:
    used = db.scalar(
        sa.select(UsageCounter.events).where(UsageCounter.account_id == account_id, UsageCounter.month == month)
    )
    return int(used or 0)


def quota_reached(db: Session, account_id: str, quota: int | None, at: datetime) -> bool:
    if quota is None:
        return False
    return _used(db, account_id, month_of(at)) >= quota


def monthly_usage(db: Session, account_id: str, at: datetime) -> MonthlyUsage:
    """The month of ``at``; the quota is the operator-set ``accounts.monthly_event_quota`` (None = unlimited)."""
    month = month_of(at)
    quota = db.scalar(sa.select(Account.monthly_event_quota).where(Account.id == account_id))
    return MonthlyUsage(month=month, events=_used(db, account_id, month), quota=quota)
