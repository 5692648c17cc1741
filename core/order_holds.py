"""Held sGTM purchases whose Shopify order never came (sgtm.md SGTM-31).

A held purchase is a sale the merchant's Shopify webhooks should have reported within ``hold_until``; when they
did not (an order outside Shopify, webhooks not subscribed, a transaction id the shop does not know), the
purchase is recorded after all, as the conversion it would have been. It is appended to the command log like
any other conversion, so it is deduplicated by its key and processed exactly once.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.envelope import command_from_envelope
from core.log import CommandLog
from core.processors.order_links import merge_into_order
from core.storage.models import SgtmOrderLink
from core.storage.tenancy import all_tenants
from core.tenant import Tenant

__all__ = ["release_due_holds"]


def release_due_holds(sessions: sessionmaker[Session], log: CommandLog, now: datetime, limit: int = 100) -> int:
    """Emit the conversion of every pending link whose hold has passed; returns how many were released.

    A link whose order row exists by now is merged instead: the Shopify connector stores the row before it
    appends the order's conversion, so an order being processed at this moment is seen here, and one
    processed after this commit finds the link `converted` and cancels the sGTM conversion (SGTM-32). The link
    stays locked while its conversion is appended, and the append comes before the status change: a crash in
    between appends the same key again, which the core answers as a duplicate.
    """
    released = 0
    with sessions() as db:
        # Which links are due is read across tenants without a lock; each is then locked by a query naming its
        # account (docs/scale-out.md: Citus locks rows only in a query routed to one tenant's shard). A link another
        # sweeper holds is skipped, one released meanwhile is no longer pending.
        due = db.execute(sa.select(SgtmOrderLink.account_id, SgtmOrderLink.id).where(
            SgtmOrderLink.status == "pending", SgtmOrderLink.hold_until <= now,
        ).order_by(SgtmOrderLink.hold_until).limit(limit)
            .execution_options(**all_tenants("every tenant's due sGTM holds (SGTM-31)"))).all()
        for account_id, link_id in due:
            link = db.scalars(sa.select(SgtmOrderLink).where(
                SgtmOrderLink.account_id == account_id, SgtmOrderLink.id == link_id, SgtmOrderLink.status == "pending",
            ).with_for_update(skip_locked=True)).first()
            if link is None or merge_into_order(db, link, now) is not None:
                continue
            log.append(Tenant(link.account_id, link.environment), [command_from_envelope(link.data, now)], wait=False)
            link.status, link.updated_at = "converted", now
            released += 1
        db.commit()
    return released
