"""Data API (api.md §8.6, API-120..API-128): read-only lists and the channel report, as JSON or streamed CSV.

Thin: parse and validate the query string, call ``core.reports``, shape the answer. Authentication is the
secret-key check of every other ``/api/v1`` endpoint (API-12); every query is scoped by the key's account and
environment (API-14).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from flask import Blueprint, Response, current_app, request
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session as DbSession

from core import reports
from core.attribution import MODELS
from core.channels import CHANNELS
from core.privacy import scrub_identifier, scrub_name
from core.reads import money, rfc3339
from core.reports import Keyset, Range, ReportError
from core.settings import load_config
from core.storage.models import Conversion
from core.tenant import Tenant
from edge.http import json_response
from gateway.api.auth import Principal
from gateway.api.views import _principal_or_error, _unavailable, error
from gateway.csv_stream import csv_download

__all__ = ["bp"]

bp = Blueprint("api_v1_data", __name__, url_prefix="/api/v1/data")

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
MSG_INVALID_CURSOR = "Invalid cursor"
MSG_CURSOR_MISMATCH = "cursor does not match the query parameters"
_TRUE, _FALSE = ("true", "1"), ("false", "0")
_LIMIT = re.compile(r"[0-9]{1,7}")

CONVERSION_CSV = (
    "conversion_id", "converted_at", "conversion_type", "funnel", "revenue", "currency", "is_acquisition", "user_id",
    "visitor_id", "attribution_status", "model", "channel", "credit", "revenue_credit", "session_id",
    "session_started_at", "utm_source", "utm_medium", "utm_campaign", "touchpoint_index", "journey_length",
)
EVENT_COLUMNS = ("id", "occurred_at", "received_at", "event_type", "funnel", "visitor_id", "user_id", "session_id",
                 "channel", "url", "properties")
SESSION_COLUMNS = (
    "id", "visitor_id", "user_id", "started_at", "last_activity_at", "channel", "utm_source", "utm_medium",
    "utm_campaign", "utm_content", "utm_term", "referrer_host", "landing_url", "click_ids", "touches", "events",
    "device_type", "country", "excluded", "exclusion_reason", "client_session_ids",
)
ATTRIBUTION_CSV = ("model", "channel", "currency", "conversions", "revenue", "conversion_share", "revenue_share",
                   "touchpoints")


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _shown(value: str) -> str:
    return value if len(value) <= 40 else value[:40] + "…"


def _services() -> Any:
    return current_app.config["MBUZZ"]


# ------------------------------------------------------------------------------------------ the query string


@dataclass
class Query:
    """One request's resolved parameters: what the cursor's hash covers (everything but limit and cursor)."""

    endpoint: str
    principal: Principal
    rng: Range
    enabled: list[str]
    csv: bool
    limit: int = DEFAULT_LIMIT
    order: str = "desc"
    after: Keyset | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)

    @property
    def tenant(self) -> Tenant:
        return self.principal.tenant

    def fingerprint(self) -> str:
        """API-121: a cursor is valid only for the same endpoint, resolved dates, order, filters and models."""
        canonical = orjson.dumps(
            [self.endpoint, self.rng.start.isoformat(), self.rng.end.isoformat(), self.order, self.models,
             sorted(self.filters.items())],
        )
        return hashlib.sha256(canonical).hexdigest()[:16]


def _arg(name: str) -> str | None:
    """A query parameter without U+0000, removed as API-3 removes it from bodies (API-120-D3): no stored id or
    name can hold it, and PostgreSQL refuses to compare a text that does (a 500 instead of an empty list)."""
    raw = request.args.get(name)
    return None if raw is None else raw.replace("\x00", "")


def _text(name: str) -> str | None:
    value = (_arg(name) or "").strip()
    return value or None


def _identifier(name: str) -> str | None:
    """A user or visitor id filter, scrubbed as stored ids are (Q-45): an id holding an e-mail is stored as its
    hash, so a filter written with the raw id must look for that hash."""
    return scrub_identifier(_text(name))


def _name(name: str) -> str | None:
    """An event type, funnel or conversion type filter, scrubbed as stored names are (Q-45)."""
    return scrub_name(_text(name))


def _boolean(name: str) -> bool:
    raw = _arg(name)
    if raw is None or raw.strip() == "":
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"{name} must be true or false, got '{_shown(raw)}'")


def _choices(name: str, allowed: Sequence[str], label: str) -> list[str] | None:
    """A comma list of known names (``channels``, ``model``), or None when absent or empty."""
    raw = _arg(name)
    if raw is None:
        return None
    chosen = [part.strip() for part in raw.split(",") if part.strip()]
    for value in chosen:
        if value not in allowed:
            raise BadRequest(f"Unknown {label} '{_shown(value)}'. Allowed: {', '.join(allowed)}")
    return list(dict.fromkeys(chosen)) or None


def _wants_csv() -> bool:
    """API-122: ``format`` wins over ``Accept``."""
    fmt = _arg("format")
    if fmt is not None and fmt.strip():
        value = fmt.strip().lower()
        if value not in ("json", "csv"):
            raise BadRequest(f"format must be json or csv, got '{_shown(fmt)}'")
        return value == "csv"
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"


def _limit() -> int:
    raw = _arg("limit")
    if raw is None or raw.strip() == "":
        return DEFAULT_LIMIT
    if not _LIMIT.fullmatch(raw.strip()) or not 1 <= int(raw.strip()) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, got '{_shown(raw)}'")
    return int(raw.strip())


def _order() -> str:
    raw = _arg("order")
    if raw is None or raw.strip() == "":
        return "desc"
    value = raw.strip().lower()
    if value not in ("asc", "desc"):
        raise BadRequest(f"order must be asc or desc, got '{_shown(raw)}'")
    return value


def _server_id(raw: str | None, prefix: str) -> str | None:
    """API-5: ids are accepted case-insensitively (the prefix lower-case, the ULID upper-case)."""
    if raw is None:
        return None
    if raw[: len(prefix)].lower() == prefix:
        return prefix + raw[len(prefix):].upper()
    return raw


def _encode_cursor(query: Query, keyset: Keyset | None) -> str | None:
    if keyset is None:
        return None
    at, row_id = keyset
    payload = orjson.dumps({"h": query.fingerprint(), "t": at.isoformat(), "i": row_id})
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _decode_cursor(query: Query, raw: str | None) -> Keyset | None:
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        fingerprint, at_text, row_id = payload["h"], payload["t"], payload["i"]
        if not (isinstance(fingerprint, str) and isinstance(at_text, str) and isinstance(row_id, str)):
            raise ValueError("cursor fields")
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None:
            raise ValueError("naive cursor time")
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError, KeyError):
        raise BadRequest(MSG_INVALID_CURSOR) from None
    if fingerprint != query.fingerprint():
        raise BadRequest(MSG_CURSOR_MISMATCH)
    return at, row_id


def _query(endpoint: str, principal: Principal, db: DbSession) -> Query:
    """The common parameters of API-120..API-122, read in a fixed order so the first problem is reported."""
    config = load_config(db, principal.tenant.account_id)
    tz = str(getattr(config, "timezone", "UTC") or "UTC")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        tz, zone = "UTC", ZoneInfo("UTC")
    today = _services().now().astimezone(zone).date()
    try:
        rng = reports.resolve_range(_arg("date_range"), _arg("start_date"), _arg("end_date"), tz, today)
    except ReportError as exc:
        raise BadRequest(exc.message) from None
    enabled = [m for m in MODELS if m in config.attribution.enabled_models]
    return Query(endpoint=endpoint, principal=principal, rng=rng, enabled=enabled, csv=_wants_csv())


def _paged(query: Query) -> Query:
    query.limit = _limit()
    query.order = _order()
    return query


# ------------------------------------------------------------------------------------------ answers


def _num(value: Decimal) -> float:
    """API-7: credits and shares are JSON numbers with at most 4 decimals (never money)."""
    return float(value)


def _meta(query: Query, count: int | None = None, next_cursor: str | None = None,
          paged: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"start_date": query.rng.start.isoformat(), "end_date": query.rng.end.isoformat()}
    if paged:
        meta.update(limit=query.limit, count=count, next_cursor=next_cursor)
    return meta


def _list_answer(query: Query, lister: reports.Lister, shape: Callable[[DbSession, list[Any]], list[Any]],
                 csv_header: Sequence[str], csv_lines: Callable[[DbSession, list[Any]], Iterable[Sequence[Any]]],
                 db: DbSession) -> Response:
    """JSON: one page by keyset. CSV: every matching row in ``order``, read in chunks of 1,000 (API-122)."""
    if query.csv:
        return csv_download(query.endpoint, query.rng, csv_header, reports.every_row(
            _services().sessions, lister, query.tenant, query.rng, query.filters, query.order, csv_lines))
    query.after = _decode_cursor(query, _arg("cursor"))
    page, keyset = lister(db, query.tenant, query.rng, query.filters, query.limit, query.after, query.order)
    data = shape(db, page)
    return json_response({"data": data, "meta": _meta(query, len(data), _encode_cursor(query, keyset))})


def _guarded(view: Callable[..., Response]) -> Callable[..., Response]:
    """Authentication first (API-12), then the view with one read session; 400 for bad parameters."""

    def inner(**kwargs: Any) -> Response:
        principal = _principal_or_error()
        if isinstance(principal, Response):
            return principal
        try:
            with _services().sessions() as db:
                return view(principal, db, **kwargs)
        except BadRequest as exc:
            return error(exc.message, 400)
        except OperationalError:
            return _unavailable()

    inner.__name__ = view.__name__
    inner.__doc__ = view.__doc__
    return inner


# ------------------------------------------------------------------------------------------ endpoints


def _shown_models(query: Query) -> list[str]:
    return _choices("model", query.enabled, "model") or list(query.enabled)


def _credit_line(line: dict[str, Any]) -> list[Any]:
    conv: Conversion = line["conversion"]
    credit = line["credit"]
    head = [conv.id, conv.converted_at, conv.conversion_type, conv.funnel, money(conv.revenue_minor, conv.currency),
            conv.currency, conv.is_acquisition, line["user_id"], line["visitor_id"], conv.attribution_status]
    if credit is None:
        return head + [None] * 11
    return head + [
        credit.model, credit.channel, f"{Decimal(credit.credit):.4f}", money(credit.revenue_credit_minor,
                                                                             conv.currency),
        credit.session_id, line["session_started_at"], credit.utm_source, credit.utm_medium, credit.utm_campaign,
        credit.touchpoint_index, credit.journey_length,
    ]


@bp.route("/conversions", methods=["GET"])
@_guarded
def conversions(principal: Principal, db: DbSession) -> Response:
    """API-124."""
    query = _paged(_query("conversions", principal, db))
    status = _text("status")
    if status is not None and status not in ("active", "cancelled"):
        raise BadRequest(f"Unknown status '{_shown(status)}'. Allowed: active, cancelled")
    query.filters = {
        "conversion_type": _name("conversion_type"), "funnel": _name("funnel"), "visitor_id": _identifier("visitor_id"),
        "user_id": _identifier("user_id"), "channels": _choices("channels", CHANNELS, "channel"), "status": status,
    }
    query.models = _shown_models(query)
    models = query.models
    return _list_answer(
        query, reports.list_conversions,
        lambda d, page: reports.conversion_rows(d, query.tenant, page, models),
        CONVERSION_CSV,
        lambda d, page: [_credit_line(x) for x in reports.conversion_credit_lines(d, query.tenant, page, models)],
        db,
    )


@bp.route("/conversions/<conversion_id>", methods=["GET"])
@_guarded
def conversion(principal: Principal, db: DbSession, conversion_id: str) -> Response:
    """API-125: the conversion object, or 404 (with the reason of API-93 for a rejected one)."""
    wanted = _server_id(conversion_id.replace("\x00", "").strip(), "conv_") or ""
    tenant = principal.tenant
    conv = db.get(Conversion, (tenant.account_id, wanted))
    if conv is None or conv.environment != tenant.environment:  # API-14: the other environment = not found
        errors = reports.rejection_of(db, tenant, wanted)
        if errors:
            return error(f"Conversion {wanted} was rejected: {'; '.join(errors)}", 404)
        return error("Conversion not found", 404)
    enabled = [m for m in MODELS if m in load_config(db, tenant.account_id).attribution.enabled_models]
    return json_response(reports.conversion_rows(db, tenant, [conv], enabled)[0])


def _event_line(row: dict[str, Any]) -> list[Any]:
    return [row[c] for c in EVENT_COLUMNS]


def _event_json(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "occurred_at": rfc3339(row["occurred_at"]), "received_at": rfc3339(row["received_at"])}


@bp.route("/events", methods=["GET"])
@_guarded
def events(principal: Principal, db: DbSession) -> Response:
    """API-126."""
    query = _paged(_query("events", principal, db))
    query.filters = {
        "event_type": _name("event_type"), "funnel": _name("funnel"), "visitor_id": _identifier("visitor_id"),
        "user_id": _identifier("user_id"), "session_id": _server_id(_text("session_id"), "sess_"),
        "include_excluded": _boolean("include_excluded"),
    }
    return _list_answer(
        query, reports.list_events,
        lambda d, page: [_event_json(r) for r in reports.event_rows(d, query.tenant, page)],
        EVENT_COLUMNS,
        lambda d, page: [_event_line(r) for r in reports.event_rows(d, query.tenant, page)],
        db,
    )


def _session_json(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "started_at": rfc3339(row["started_at"]), "last_activity_at": rfc3339(row["last_activity_at"])}


@bp.route("/sessions", methods=["GET"])
@_guarded
def sessions(principal: Principal, db: DbSession) -> Response:
    """API-127."""
    query = _paged(_query("sessions", principal, db))
    query.filters = {
        "visitor_id": _identifier("visitor_id"), "user_id": _identifier("user_id"),
        "channels": _choices("channels", CHANNELS, "channel"), "include_excluded": _boolean("include_excluded"),
    }
    return _list_answer(
        query, reports.list_sessions,
        lambda d, page: [_session_json(r) for r in reports.session_rows(d, query.tenant, page)],
        SESSION_COLUMNS,
        lambda d, page: [[r[c] for c in SESSION_COLUMNS] for r in reports.session_rows(d, query.tenant, page)],
        db,
    )


@bp.route("/attribution", methods=["GET"])
@_guarded
def attribution(principal: Principal, db: DbSession) -> Response:
    """API-128: the channel report; no pagination."""
    query = _query("attribution", principal, db)
    channels = _choices("channels", CHANNELS, "channel")
    models = _shown_models(query)
    report = reports.attribution_report(db, query.tenant, query.rng, models=models,
                                        conversion_type=_name("conversion_type"), funnel=_name("funnel"),
                                        channels=channels)
    if query.csv:
        lines = ([r["model"], r["channel"], r["currency"], f"{r['conversions']:.4f}",
                  money(r["revenue_minor"], r["currency"]), f"{r['conversion_share']:.4f}",
                  f"{r['revenue_share']:.4f}", r["touchpoints"]] for r in report["rows"])
        return csv_download("attribution", query.rng, ATTRIBUTION_CSV, lines)
    data = [
        {"model": r["model"], "channel": r["channel"], "currency": r["currency"],
         "conversions": _num(r["conversions"]), "revenue": money(r["revenue_minor"], r["currency"]),
         "conversion_share": _num(r["conversion_share"]), "revenue_share": _num(r["revenue_share"]),
         "touchpoints": r["touchpoints"]}
        for r in report["rows"]
    ]
    meta = _meta(query, paged=False)
    meta.update(
        models=report["models"],
        total_conversions=report["total_conversions"],
        total_revenue={c: money(v, c) for c, v in report["total_revenue_minor"].items()},
        unattributed_conversions=report["unattributed_conversions"],
        unattributed_revenue={c: money(v, c) for c, v in report["unattributed_revenue_minor"].items()},
    )
    return json_response({"data": data, "meta": meta})
