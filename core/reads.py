"""Read models: the JSON shapes clients see (api.md API-6, API-7, API-94), built from stored rows.

One builder serves the conversion answer, its duplicate replay and the data API, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as DbSession

from core.attribution import MODELS
from core.commands import ConversionCommand, IdentifyCommand
from core.money import currency_exponent, format_minor
from core.storage.models import AttributionCredit, Conversion, User, Visitor
from core.tenant import Tenant


def rfc3339(value: datetime | None) -> str | None:
    """API-6: UTC with ``Z``; six fractional digits only when there is a sub-second part."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def money(minor: int | None, currency: str) -> str | None:
    return None if minor is None else format_minor(minor, currency_exponent(currency))


def credit_number(value: Any) -> float:
    """API-7: credits are JSON numbers with at most 4 decimals (stored exactly as numeric(5,4))."""
    return round(float(value), 4)


def conversion_body(
    db: DbSession,
    tenant: Tenant,
    conv: Conversion,
    enabled: Sequence[str],
    keys: tuple[str | None, str | None] | None = None,
    credits: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``keys`` (visitor key, user key) and ``credits`` (rows just written) spare the processor a read-back."""
    if keys is not None:
        visitor_key, user_key = keys
    else:
        visitor_key = db.scalar(
            sa.select(Visitor.visitor_key).where(Visitor.account_id == tenant.account_id,
                                                 Visitor.id == conv.visitor_id)
        )
        user_key = None
        if conv.user_id is not None:
            user_key = db.scalar(
                sa.select(User.user_key).where(User.account_id == tenant.account_id, User.id == conv.user_id)
            )
    core = {
        "id": conv.id,
        "conversion_type": conv.conversion_type,
        "revenue": money(conv.revenue_minor, conv.currency),
        "currency": conv.currency,
        "converted_at": rfc3339(conv.converted_at),
        "visitor_id": visitor_key,
    }
    body: dict[str, Any] = {
        **{k: core[k] for k in ("id", "conversion_type", "revenue", "currency", "converted_at")},
        "funnel": conv.funnel,
        "is_acquisition": conv.is_acquisition,
        "visitor_id": visitor_key,
        "user_id": user_key,
        "conversion": core,
        "attribution": attribution_body(db, tenant, conv, enabled, credits),
    }
    return body


_CREDIT_FIELDS = ("model", "channel", "credit", "revenue_credit_minor", "session_id", "utm_source", "utm_medium",
                  "utm_campaign")
_CREDIT_FIELDS_OF_DICT, _CREDIT_FIELDS_OF_ROW = itemgetter(*_CREDIT_FIELDS), attrgetter(*_CREDIT_FIELDS)
_TOUCHPOINT_INDEX = itemgetter("touchpoint_index")


def attribution_body(
    db: DbSession, tenant: Tenant, conv: Conversion, enabled: Sequence[str],
    credits: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    if conv.attribution_status != "complete":
        return {"status": "pending", "lookback_days": conv.lookback_days_used or 30, "sessions_analyzed": None,
                "models": {}}
    rows: Any
    if credits is not None:  # the rows just written, as dicts: no read-back (issue 17)
        rows = map(_CREDIT_FIELDS_OF_DICT, sorted(credits, key=_TOUCHPOINT_INDEX))
    else:
        rows = map(_CREDIT_FIELDS_OF_ROW, db.scalars(
            sa.select(AttributionCredit)
            .where(
                AttributionCredit.account_id == tenant.account_id,
                AttributionCredit.environment == tenant.environment,
                AttributionCredit.conversion_id == conv.id,
            )
            .order_by(AttributionCredit.touchpoint_index)
        ))
    models: dict[str, list[dict[str, Any]]] = {m: [] for m in MODELS if m in enabled}
    for model, channel, credit, revenue, session_id, utm_source, utm_medium, utm_campaign in rows:
        if model in models:
            models[model].append({
                "channel": channel, "credit": credit_number(credit), "revenue_credit": money(revenue, conv.currency),
                "session_id": session_id, "utm_source": utm_source, "utm_medium": utm_medium,
                "utm_campaign": utm_campaign,
            })
    out: dict[str, Any] = {
        "status": "complete",
        "lookback_days": conv.lookback_days_used,
        "sessions_analyzed": conv.sessions_analyzed,
        "models": models,
    }
    fallbacks = {m: v for m, v in (conv.fallbacks or {}).items() if m in models}
    if fallbacks:
        out["fallbacks"] = fallbacks
    if conv.inherited_from_conversion_id:
        out["inherited_from"] = conv.inherited_from_conversion_id
    return out


def conversion_by_id(db: DbSession, tenant: Tenant, conversion_id: str) -> dict[str, Any] | None:
    """The API-94 body of a stored conversion of this tenant, or None (unknown here = not found, API-14)."""
    from core.settings import load_config

    conv = db.scalars(
        sa.select(Conversion).where(
            Conversion.account_id == tenant.account_id,
            Conversion.environment == tenant.environment,
            Conversion.id == conversion_id,
        )
    ).first()
    if conv is None:
        return None
    return conversion_body(db, tenant, conv, load_config(db, tenant.account_id).attribution.enabled_models)


def pending_conversion_body(cmd: ConversionCommand, conversion_id: str, duplicate: bool = False) -> dict[str, Any]:
    """API-62/API-94: the answer while the conversion is still in the log; ids and fields the edge knows."""
    currency = cmd.currency or "USD"
    core = {
        "id": conversion_id,
        "conversion_type": cmd.conversion_type,
        "revenue": money(cmd.revenue_minor, currency),
        "currency": currency,
        "converted_at": rfc3339(cmd.converted_at or cmd.received_at),
        "visitor_id": cmd.visitor_key,
    }
    return {
        **{k: core[k] for k in ("id", "conversion_type", "revenue", "currency", "converted_at")},
        "funnel": cmd.funnel,
        "is_acquisition": cmd.is_acquisition,
        "visitor_id": cmd.visitor_key,
        "user_id": cmd.user_key,
        "conversion": core,
        "attribution": {"status": "pending", "lookback_days": 30, "sessions_analyzed": None, "models": {}},
        "duplicate": duplicate,
    }


def pending_identify_body(cmd: IdentifyCommand) -> dict[str, Any]:
    return {"success": True, "status": "pending", "identity_id": None, "user_id": cmd.user_key,
            "visitor_id": cmd.visitor_key, "visitor_linked": None}
