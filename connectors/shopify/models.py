"""The Shopify connector's own tables (shopify.md), declared next to its code on the shared declarative base
(issue 18 item 2; one Alembic history still: `core/storage/migrations`, whose environment loads these models).

The Shopify tables the core's rules read stay in `core.storage.models`: `installations` (the sGTM connector asks
whether a tenant sells through Shopify, SGTM-30), `shopify_orders` (SGTM-31 matches sGTM purchases against them)
and `visitor_aliases`. Tenant tables carry `account_id` first in every key (docs/scale-out.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.storage.models import ENV, ID, KEY, AccountKey, Base, InEnvironment
from core.storage.types import JSONType

__all__ = ["ShopifyCheckoutLink", "ShopifyConnectCode", "ShopifyCustomer", "ShopifyDataRequest", "ShopifyOAuthState",
           "ShopifySettingsAudit", "ShopifyWebhookDelivery"]


class ShopifyWebhookDelivery(Base):
    """shopify.md SHP-8: the webhook ledger (global); a delivery is answered 200 only once its row is stored."""

    __tablename__ = "shopify_webhook_deliveries"
    __table_args__ = (
        sa.Index("ux_deliveries_event", "shop_domain", "topic", "event_id", unique=True,
                 postgresql_where=sa.text("event_id IS NOT NULL"), sqlite_where=sa.text("event_id IS NOT NULL")),
        # docs/shopify.md SHP-33-D1: a webhook id is unique within the shop a delivery was accepted for, so a copy
        # sent under another shop's header never makes the genuine delivery a duplicate.
        sa.Index("ux_deliveries_webhook", "shop_domain", "webhook_id", unique=True),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    webhook_id: Mapped[str] = mapped_column(KEY)
    event_id: Mapped[str | None] = mapped_column(KEY, nullable=True)
    topic: Mapped[str] = mapped_column(sa.String(64))
    shop_domain: Mapped[str] = mapped_column(KEY)
    api_version: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    triggered_at: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    received_at: Mapped[datetime]
    body_sha256: Mapped[str] = mapped_column(sa.String(64))
    body_enc: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    customer_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    order_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    redeliveries: Mapped[int] = mapped_column(default=0)
    processed_at: Mapped[datetime | None] = mapped_column(nullable=True)



class ShopifyCheckoutLink(AccountKey, InEnvironment, Base):
    """shopify.md SHP-10: a checkout token seen by the pixel, with its visitor; the installation's environment."""

    __tablename__ = "shopify_checkout_links"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "installation_id", "checkout_token"),
        sa.Index("ix_checkout_links_order", "installation_id", "order_id"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    installation_id: Mapped[str] = mapped_column(ID)
    checkout_token: Mapped[str] = mapped_column(KEY)
    order_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    visitor_id: Mapped[str] = mapped_column(KEY)
    shopify_client_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    is_first_order: Mapped[bool | None] = mapped_column(nullable=True)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]



class ShopifyCustomer(AccountKey, InEnvironment, Base):
    """shopify.md SHP-12/SHP-38: the newest customer payload time seen, so stale updates emit nothing."""

    __tablename__ = "shopify_customers"
    installation_id: Mapped[str] = mapped_column(ID, primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    updated_at_source: Mapped[datetime]



class ShopifyOAuthState(Base):
    """shopify.md SHP-22: an OAuth state nonce, stored only as its SHA-256; single use, 600 s."""

    __tablename__ = "shopify_oauth_states"
    nonce_sha256: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    shop_domain: Mapped[str] = mapped_column(KEY)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]



class ShopifyConnectCode(Base):
    """shopify.md SHP-28: a one-time `MBZ-XXXX-XXXX` code binding an installation to an account, hashed."""

    __tablename__ = "shopify_connect_codes"
    code_sha256: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ID)
    environment: Mapped[str] = mapped_column(ENV)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]



class ShopifyDataRequest(Base):
    """shopify.md SHP-87: a customer data request and its encrypted export, kept 30 days."""

    __tablename__ = "shopify_data_requests"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    shop_domain: Mapped[str] = mapped_column(KEY, index=True)
    data_request_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    customer_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    status: Mapped[str] = mapped_column(sa.String(8))  # queued | ready | expired
    export_enc: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime]
    ready_at: Mapped[datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)



class ShopifySettingsAudit(Base):
    """shopify.md SHP-82: one row per changed installation setting, with the staff user of the session token."""

    __tablename__ = "shopify_settings_audit"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    installation_id: Mapped[str] = mapped_column(ID, index=True)
    staff_user_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    field: Mapped[str] = mapped_column(sa.String(32))
    old: Mapped[Any] = mapped_column(JSONType, nullable=True)
    new: Mapped[Any] = mapped_column(JSONType, nullable=True)
    at: Mapped[datetime]
