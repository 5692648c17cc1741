"""Visitor aliases (sgtm.md SGTM-23): a GA4 client id remembered for the visitor cookie it first came with.

The sGTM template derives the visitor from the client id when the browser has no `_mbuzz_vid` cookie yet; once
a request with the cookie is seen, the alias maps later cookie-less requests of the same client back to it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.processors.context import insert_ignore
from core.storage.models import VisitorAlias
from core.tenant import Tenant

__all__ = ["GA_CLIENT", "derived_visitor", "visitor_for_ga_client"]

GA_CLIENT = "ga_client"


def derived_visitor(ga_client_id: str) -> str:
    return hashlib.sha256(("ga:" + ga_client_id).encode()).hexdigest()


def visitor_for_ga_client(db: Session, tenant: Tenant, ga_client_id: str, sent: str, at: datetime) -> str:
    """The visitor to use for a request carrying ``ga_client_id`` and visitor ``sent`` (SGTM-23)."""
    derived = derived_visitor(ga_client_id)
    known = db.scalar(sa.select(VisitorAlias.visitor_key).where(
        VisitorAlias.account_id == tenant.account_id, VisitorAlias.environment == tenant.environment,
        VisitorAlias.namespace == GA_CLIENT, VisitorAlias.alias == ga_client_id))
    if known is not None:
        return known if known != sent and sent == derived else sent
    if sent != derived:
        insert_ignore(db, VisitorAlias, {"account_id": tenant.account_id, "environment": tenant.environment,
                                         "namespace": GA_CLIENT, "alias": ga_client_id, "visitor_key": sent,
                                         "created_at": at})
    return sent
