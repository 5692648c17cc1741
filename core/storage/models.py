"""SQLAlchemy models: one table per domain object.

Every tenant table carries ``account_id`` and ``environment``; ``account_id`` leads every primary and unique
key so the schema can later be distributed by account (spec README, Storage). Server ids are prefixed ULIDs
assigned at the edge, so rows can be written without a round trip for a sequence.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import cache
from importlib.metadata import entry_points
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.storage.types import JSONType, UTCDateTime

ID = sa.String(40)
KEY = sa.String(255)
ENV = sa.String(8)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}


class AccountKey:
    """The account that owns a tenant row, first in its primary key (quality.md Q-40; docs/scale-out.md): declared
    once here for every tenant table (issue 18 item 7)."""

    account_id: Mapped[str] = mapped_column(ID, primary_key=True, sort_order=-2)


class InEnvironment:
    """The environment (`live` / `test`) a tenant row belongs to, when it is not part of the key."""

    environment: Mapped[str] = mapped_column(ENV)


class EnvironmentKey:
    """The environment as the second part of the key, right after the account."""

    environment: Mapped[str] = mapped_column(ENV, primary_key=True, sort_order=-1)


TABLE_MODULES = "mbuzz.tables"  # entry-point group of the packages that declare their own tables (pyproject.toml)


@cache
def every_table() -> sa.MetaData:
    """The shared metadata with every package's tables: the connectors declare theirs next to their code and
    register the module under the ``mbuzz.tables`` entry points (issue 18 item 2), loaded here once."""
    for entry in entry_points(group=TABLE_MODULES):
        entry.load()
    return Base.metadata


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(16), default="active")  # active | suspended | closed
    monthly_event_quota: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    created_at: Mapped[datetime]


class AccountSettings(AccountKey, Base):
    """ATT-1 settings plus sessions.md account settings; one row per account, shared by both environments."""

    __tablename__ = "account_settings"
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    config_versions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime]


class DashboardUser(AccountKey, Base):
    __tablename__ = "dashboard_users"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime]
    # docs/dashboard.md DSH-2-D1: held in the signed session cookie; logging out bumps it, ending every copy.
    session_epoch: Mapped[int] = mapped_column(default=0, server_default=sa.text("0"))


class ApiKey(AccountKey, InEnvironment, Base):
    """API-11: only the digest and a display prefix are kept; the plaintext is shown once."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default="secret")
    key_digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(sa.String(16), index=True)
    name: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    installation_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Visitor(AccountKey, InEnvironment, Base):
    __tablename__ = "visitors"
    __table_args__ = (sa.UniqueConstraint("account_id", "environment", "visitor_key"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    visitor_key: Mapped[str] = mapped_column(KEY)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    created_at: Mapped[datetime]


class User(AccountKey, InEnvironment, Base):
    """A known person (identity). ``user_key`` is null for provisional users (ID-9)."""

    __tablename__ = "users"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "environment", "user_key"),
        sa.Index("ix_users_email", "account_id", "environment", "email_sha256"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_key: Mapped[str | None] = mapped_column(KEY, nullable=True)
    email_sha256: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    phone_sha256: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    origin: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)  # the connector that created it
    first_identified_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_identified_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]


class VisitorLink(AccountKey, InEnvironment, Base):
    """ID-2: a visitor belongs to a user over ``[valid_from, valid_to)``; null bounds are open.

    A visitor's first link has ``valid_from`` null so it covers the history before the link.
    """

    __tablename__ = "visitor_links"
    __table_args__ = (
        sa.Index("ix_links_visitor", "account_id", "environment", "visitor_id"),
        sa.Index("ix_links_user", "account_id", "environment", "user_id"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    visitor_id: Mapped[str] = mapped_column(ID)
    user_id: Mapped[str] = mapped_column(ID)
    linked_at: Mapped[datetime]
    valid_from: Mapped[datetime | None] = mapped_column(nullable=True)
    valid_to: Mapped[datetime | None] = mapped_column(nullable=True)


class Session(AccountKey, InEnvironment, Base):
    __tablename__ = "sessions"
    __table_args__ = (
        sa.Index("ix_sessions_visitor", "account_id", "environment", "visitor_id", "started_at"),
        sa.Index("ix_sessions_activity", "account_id", "environment", "visitor_id", "last_activity_at"),
        sa.Index("ix_sessions_time", "account_id", "environment", "started_at", "id"),  # API-127 lists
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    visitor_id: Mapped[str] = mapped_column(ID)
    started_at: Mapped[datetime]
    last_activity_at: Mapped[datetime]
    channel: Mapped[str] = mapped_column(sa.String(32))
    source_key: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    utm_source: Mapped[str | None] = mapped_column(KEY, nullable=True)
    utm_medium: Mapped[str | None] = mapped_column(KEY, nullable=True)
    utm_campaign: Mapped[str | None] = mapped_column(KEY, nullable=True)
    utm_content: Mapped[str | None] = mapped_column(KEY, nullable=True)
    utm_term: Mapped[str | None] = mapped_column(KEY, nullable=True)
    utm_raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    click_ids: Mapped[dict[str, Any]] = mapped_column(default=dict)
    referrer_url: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    referrer_host: Mapped[str | None] = mapped_column(KEY, nullable=True)
    landing_url: Mapped[str | None] = mapped_column(sa.String(2048), nullable=True)
    landing_host: Mapped[str | None] = mapped_column(KEY, nullable=True)
    fingerprint: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(sa.String(1024), nullable=True)
    device_type: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    country: Mapped[str | None] = mapped_column(sa.String(2), nullable=True)
    postal_code: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    fbp: Mapped[str | None] = mapped_column(KEY, nullable=True)
    fbc: Mapped[str | None] = mapped_column(KEY, nullable=True)
    excluded: Mapped[bool] = mapped_column(default=False)
    exclusion_reason: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    touches: Mapped[int] = mapped_column(default=0)
    events: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    origin: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)  # shopify.md SHP-1


class SessionBinding(AccountKey, EnvironmentKey, Base):
    """SES-9: (visitor, client session id) → the server session it resolved to."""

    __tablename__ = "session_bindings"
    visitor_id: Mapped[str] = mapped_column(ID, primary_key=True)
    client_session_id: Mapped[str] = mapped_column(KEY, primary_key=True)
    session_id: Mapped[str] = mapped_column(ID, index=True)
    bound_at: Mapped[datetime]


class Event(AccountKey, InEnvironment, Base):
    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_visitor", "account_id", "environment", "visitor_id", "occurred_at"),
        sa.Index("ix_events_session", "account_id", "environment", "session_id"),
        sa.Index("ix_events_time", "account_id", "environment", "occurred_at", "id"),  # API-126 lists
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    event_type: Mapped[str] = mapped_column(KEY)
    funnel: Mapped[str | None] = mapped_column(KEY, nullable=True)
    visitor_id: Mapped[str] = mapped_column(ID)
    session_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    user_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    client_session_id: Mapped[str | None] = mapped_column(KEY, nullable=True)
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    url: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    referrer: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(KEY, nullable=True)
    sdk_name: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    sdk_version: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    source: Mapped[str | None] = mapped_column(sa.String(24), nullable=True)
    origin: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


class Conversion(AccountKey, InEnvironment, Base):
    """ATT-46 columns."""

    __tablename__ = "conversions"
    __table_args__ = (
        sa.Index("ix_conversions_time", "account_id", "environment", "converted_at"),
        sa.Index("ix_conversions_visitor", "account_id", "environment", "visitor_id"),
        sa.Index("ix_conversions_user", "account_id", "environment", "user_id"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    conversion_type: Mapped[str] = mapped_column(KEY)
    funnel: Mapped[str | None] = mapped_column(KEY, nullable=True)
    visitor_id: Mapped[str] = mapped_column(ID)
    user_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    named_user: Mapped[bool] = mapped_column(default=False)
    session_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    event_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    converted_at: Mapped[datetime]
    converted_at_source: Mapped[str] = mapped_column(sa.String(16))
    received_at: Mapped[datetime]
    revenue_minor: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    refunded_minor: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    net_revenue_minor: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    is_acquisition: Mapped[bool] = mapped_column(default=False)
    inherit_acquisition: Mapped[bool] = mapped_column(default=False)
    inherited_from_conversion_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    journey_session_ids: Mapped[list[Any]] = mapped_column(default=list)
    sessions_analyzed: Mapped[int | None] = mapped_column(nullable=True)
    journey_truncated: Mapped[bool] = mapped_column(default=False)
    lookback_days_used: Mapped[int | None] = mapped_column(nullable=True)
    attribution_status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attributed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(KEY, nullable=True)
    fallbacks: Mapped[dict[str, Any]] = mapped_column(default=dict)
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    source: Mapped[str | None] = mapped_column(sa.String(24), nullable=True)
    origin: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


class AttributionCredit(AccountKey, InEnvironment, Base):
    """ATT-47: one row per (conversion, model, session)."""

    __tablename__ = "attribution_credits"
    __table_args__ = (
        sa.Index("ix_credits_report", "account_id", "environment", "model", "converted_at", "channel"),
    )
    conversion_id: Mapped[str] = mapped_column(ID, primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    session_id: Mapped[str] = mapped_column(ID, primary_key=True)
    touchpoint_index: Mapped[int]
    journey_length: Mapped[int]
    channel: Mapped[str] = mapped_column(sa.String(32))
    position: Mapped[str] = mapped_column(sa.String(8))
    credit: Mapped[Decimal] = mapped_column(sa.Numeric(5, 4))
    revenue_credit_minor: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    currency: Mapped[str] = mapped_column(sa.String(3))
    converted_at: Mapped[datetime]
    utm_source: Mapped[str | None] = mapped_column(KEY, nullable=True)
    utm_medium: Mapped[str | None] = mapped_column(KEY, nullable=True)
    utm_campaign: Mapped[str | None] = mapped_column(KEY, nullable=True)
    model_config_version: Mapped[int] = mapped_column(default=1)
    fit_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    fallback: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    fallback_reason: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    inherited_from_conversion_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    created_at: Mapped[datetime]


class Installation(Base):
    """shopify.md SHP-7: one row per shop (global). Tokens are stored only encrypted (`*_enc`)."""

    __tablename__ = "installations"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    shop_domain: Mapped[str] = mapped_column(KEY, unique=True)
    shop_gid: Mapped[str | None] = mapped_column(KEY, nullable=True)
    shop_name: Mapped[str | None] = mapped_column(KEY, nullable=True)
    primary_domain: Mapped[str | None] = mapped_column(KEY, nullable=True)
    domains: Mapped[list[Any]] = mapped_column(default=list)
    currency: Mapped[str | None] = mapped_column(sa.String(3), nullable=True)
    iana_timezone: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    plan_partner_development: Mapped[bool] = mapped_column(default=False)
    account_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    environment: Mapped[str] = mapped_column(ENV, default="test")
    mode: Mapped[str] = mapped_column(sa.String(8), default="app")
    status: Mapped[str] = mapped_column(sa.String(16), default="pending_connect")
    access_token_enc: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    refresh_token_enc: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    token_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    refresh_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    token_status: Mapped[str] = mapped_column(sa.String(8), default="valid")
    scopes: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    pixel_id: Mapped[str | None] = mapped_column(KEY, nullable=True)
    pixel_last_seen_at: Mapped[datetime | None] = mapped_column(nullable=True)
    manual_signing_key_enc: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    connector_token_sha256: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    installed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    uninstalled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class VisitorAlias(AccountKey, EnvironmentKey, Base):
    """sgtm.md SGTM-23: another identifier of a visitor, e.g. a GA4 client id (namespace `ga_client`)."""

    __tablename__ = "visitor_aliases"
    namespace: Mapped[str] = mapped_column(sa.String(64), primary_key=True)  # e.g. shopify_client:{inst}
    alias: Mapped[str] = mapped_column(KEY, primary_key=True)
    visitor_key: Mapped[str] = mapped_column(KEY)
    created_at: Mapped[datetime]


class ConversionAdjustment(AccountKey, InEnvironment, Base):
    """ATT-38: a refund or cancellation, unique per idempotency key; `pending` until its conversion exists."""

    __tablename__ = "conversion_adjustments"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "environment", "idempotency_key"),
        sa.Index("ix_adjustments_key", "account_id", "environment", "conversion_key"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(KEY)
    conversion_key: Mapped[str] = mapped_column(KEY)
    conversion_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    adjustment: Mapped[str] = mapped_column(sa.String(8))
    amount: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)  # as received
    amount_minor: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    currency: Mapped[str | None] = mapped_column(sa.String(3), nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16))  # pending | applied | rejected
    error: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    applied_at: Mapped[datetime | None] = mapped_column(nullable=True)
    origin: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


class AttributionFit(AccountKey, InEnvironment, Base):
    """ATT-30: one data-driven fit of a tenant; the latest per (tenant, model) is current.

    Values are the canonical 12-dp decimals as strings (ATT-29), so a stored fit reproduces credits exactly.
    """

    __tablename__ = "attribution_fits"
    __table_args__ = (sa.Index("ix_fits_current", "account_id", "environment", "model", "as_of"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(24))
    as_of: Mapped[datetime]
    window_start: Mapped[datetime]
    settings: Mapped[dict[str, Any]]
    converting_paths: Mapped[int] = mapped_column(sa.BigInteger)
    total_paths: Mapped[int] = mapped_column(sa.BigInteger)
    channels: Mapped[list[Any]]
    values: Mapped[dict[str, Any]]
    conversion_probability: Mapped[str | None] = mapped_column(sa.String(24), nullable=True)
    excluded_channels: Mapped[list[Any]] = mapped_column(default=list)
    duration_ms: Mapped[int]
    created_at: Mapped[datetime]


class ReattributionBatch(AccountKey, InEnvironment, Base):
    """ATT-54: one reattribution run over a set of conversions, processed in keyset-ordered chunks."""

    __tablename__ = "reattribution_batches"
    __table_args__ = (sa.Index("ix_batches_status", "account_id", "environment", "status"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    trigger: Mapped[str] = mapped_column(sa.String(24))
    models: Mapped[list[Any]]
    scope: Mapped[dict[str, Any]]  # {"ids": [...]} or {"query": ..., parameters}
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    total: Mapped[int | None] = mapped_column(nullable=True)
    processed: Mapped[int] = mapped_column(default=0)
    failed_count: Mapped[int] = mapped_column(default=0)
    cursor: Mapped[list[Any] | None] = mapped_column(nullable=True)  # [converted_at ISO, id] last processed
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class IdempotencyKey(AccountKey, EnvironmentKey, Base):
    """API-50: a key, once used, is remembered for the life of the data; ``result_id`` is the original."""

    __tablename__ = "idempotency_keys"
    scope: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(600), primary_key=True)
    result_id: Mapped[str] = mapped_column(ID)
    created_at: Mapped[datetime]


class Rejection(AccountKey, InEnvironment, Base):
    """API-24: rejected events and 422s, kept 7 days for the dashboard; never request bodies."""

    __tablename__ = "rejections"
    __table_args__ = (sa.Index("ix_rejections_time", "account_id", "environment", "created_at"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    endpoint: Mapped[str] = mapped_column(sa.String(64))
    item_index: Mapped[int | None] = mapped_column(nullable=True)
    name: Mapped[str | None] = mapped_column(KEY, nullable=True)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    key_prefix: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    request_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    created_at: Mapped[datetime]


class UsageCounter(AccountKey, Base):
    """API-33: accepted, non-duplicate events and session touches per account and calendar month (UTC)."""

    __tablename__ = "usage_counters"
    month: Mapped[str] = mapped_column(sa.String(7), primary_key=True)  # YYYY-MM
    events: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class ShopifyOrder(AccountKey, InEnvironment, Base):
    """shopify.md SHP-9: one Shopify order, in the environment of the order (SHP-5); drives SHP-58's states."""

    __tablename__ = "shopify_orders"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "installation_id", "order_id"),
        sa.Index("ix_shopify_orders_due", "status", "next_attempt_at"),
        sa.Index("ix_shopify_orders_customer", "account_id", "installation_id", "customer_id"),
        sa.Index("ix_shopify_orders_name", "account_id", "environment", "name"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    installation_id: Mapped[str] = mapped_column(ID)
    order_id: Mapped[str] = mapped_column(sa.String(32))
    order_gid: Mapped[str | None] = mapped_column(KEY, nullable=True)
    name: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    order_number: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    confirmation_number: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    checkout_token: Mapped[str | None] = mapped_column(KEY, nullable=True)
    source_name: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    app_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    test: Mapped[bool] = mapped_column(default=False)
    customer_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    email_sha256: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    processed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    shop_currency: Mapped[str | None] = mapped_column(sa.String(3), nullable=True)
    presentment_currency: Mapped[str | None] = mapped_column(sa.String(3), nullable=True)
    shop_total: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)  # decimal strings (SHP-2)
    shop_subtotal: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    presentment_total: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    fx_ratio: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="seen")
    attribution_method: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    visitor_id: Mapped[str | None] = mapped_column(KEY, nullable=True)
    conversion_key: Mapped[str | None] = mapped_column(KEY, nullable=True)
    attempts: Mapped[int] = mapped_column(default=0)
    first_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # SHP-59: what orders/create found, and the id of the delivery holding the paid payload (for retries)
    linking: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SgtmOrderLink(AccountKey, InEnvironment, Base):
    """sgtm.md SGTM-31: an sGTM purchase held to be merged with the Shopify order of the same transaction."""

    __tablename__ = "sgtm_order_links"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "environment", "transaction_id"),
        sa.Index("ix_sgtm_links_hold", "status", "hold_until"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    transaction_id: Mapped[str] = mapped_column(KEY)
    idempotency_key: Mapped[str] = mapped_column(KEY)
    visitor_id: Mapped[str | None] = mapped_column(KEY, nullable=True)
    ga_client_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    occurred_at: Mapped[datetime]
    hold_until: Mapped[datetime]
    status: Mapped[str] = mapped_column(sa.String(16))  # pending | merged | converted | superseded
    merged_into: Mapped[str | None] = mapped_column(KEY, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the conversion command it would emit
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ReportCreditDay(AccountKey, EnvironmentKey, Base):
    """DSH-22 / Q-7: Σ credit of active, attributed conversions per local day (account time zone ``tz``), model,
    channel, currency, conversion type and funnel (``""`` = none). Rebuilt from ``attribution_credits`` by
    ``core.rollups``; never the source of truth."""

    __tablename__ = "report_credit_days"
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    conversion_type: Mapped[str] = mapped_column(KEY, primary_key=True)
    funnel: Mapped[str] = mapped_column(KEY, primary_key=True)
    units: Mapped[int] = mapped_column(sa.BigInteger)  # Σ credit × 10,000 (credits have 4 dp)
    revenue_minor: Mapped[int] = mapped_column(sa.BigInteger)
    touchpoints: Mapped[int] = mapped_column(sa.BigInteger)


class ReportConversionDay(AccountKey, EnvironmentKey, Base):
    """DSH-22 / Q-7: the report population's totals per local day, conversion type, funnel and currency."""

    __tablename__ = "report_conversion_days"
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    conversion_type: Mapped[str] = mapped_column(KEY, primary_key=True)
    funnel: Mapped[str] = mapped_column(KEY, primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    conversions: Mapped[int] = mapped_column(sa.BigInteger)
    revenue_minor: Mapped[int] = mapped_column(sa.BigInteger)  # Σ net revenue
    with_revenue: Mapped[int] = mapped_column(sa.BigInteger)  # conversions that carry revenue
    unattributed: Mapped[int] = mapped_column(sa.BigInteger)
    unattributed_revenue_minor: Mapped[int] = mapped_column(sa.BigInteger)
    unattributed_with_revenue: Mapped[int] = mapped_column(sa.BigInteger)


class ReportDirtyDay(Base):
    """A UTC day whose conversions or credits changed since the rollups last read it. Append-only with a serial id
    (no other unique key), so concurrent writers never wait on each other's marks; the refresh deletes what it read.

    The primary key leads with the account (docs/scale-out.md: Citus distributes by ``account_id``; migration
    0015). SQLite keeps ``id`` alone as its rowid key, which is what numbers the rows there (SQLite numbers no
    column of a composite key); the ORM reads the number back alike on both."""

    __tablename__ = "report_dirty_days"
    __table_args__ = (sa.Index("ix_report_dirty_tenant", "account_id", "environment", "id"),)
    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    environment: Mapped[str] = mapped_column(ENV)
    day: Mapped[date] = mapped_column(sa.Date)


class ReportRollupState(AccountKey, EnvironmentKey, Base):
    """Per tenant: the time zone the rollups are bucketed in (a change rebuilds them); its row lock serialises
    refreshes."""

    __tablename__ = "report_rollup_states"
    tz: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)  # None: never built
    built_at: Mapped[datetime | None] = mapped_column(nullable=True)
