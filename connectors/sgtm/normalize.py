"""`POST /sgtm/v1/collect` payloads: validation, consent and the GA4 mapping (sgtm.md SGTM-21..SGTM-29).

Pure functions. :func:`validate` turns the decoded JSON (decimal floats) into a :class:`Payload` or the list of
``"<field>: <reason>"`` errors of SGTM-21; :func:`outputs_for` maps a payload to connector commands in the
envelope of shopify.md SHP-1 (``kind``, ``account_id``, ``environment``, ``source``, ``origin``,
``idempotency_key``, ...), in the order identify, session, event, conversion (SGTM-25). The endpoint appends
them; what reaches the core never contains a raw IP address (FP-1).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from ipaddress import ip_address
from typing import Any

from core.aliases import derived_visitor
from core.money import currency_exponent
from core.numbers import plain_number, stored_int

__all__ = ["Outputs", "Payload", "output_kind", "outputs_for", "sent_visitor", "validate"]

CALLS = ("auto", "session", "event", "conversion", "identify")
CONSENT_VALUES = ("granted", "denied", "unknown")
MEASUREMENT_TEST = "https://gtm-msr.appspot.com/"
MAX_MONEY = Decimal(10) ** 12
PAST, FUTURE = timedelta(hours=72), timedelta(minutes=5)

_EVENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]+")
_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_URL = re.compile(r"https?://[^/\s?#]+[^\s]*", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]{1,20}")

# SGTM-24: GA4 event → (our event type, extra properties); conversions and specials are handled separately.
EVENTS: dict[str, tuple[str, str]] = {
    "view_item": ("product_viewed", "commerce"),
    "view_item_list": ("collection_viewed", "item_count"),
    "search": ("search_submitted", "search_term"),
    "add_to_cart": ("add_to_cart", "commerce"),
    "remove_from_cart": ("remove_from_cart", "commerce"),
    "view_cart": ("cart_viewed", "commerce"),
    "begin_checkout": ("checkout_started", "commerce"),
    "add_shipping_info": ("checkout_shipping_info_submitted", "commerce"),
    "add_payment_info": ("payment_info_submitted", "commerce"),
}
CONVERSIONS = {"purchase": "purchase", "generate_lead": "lead", "qualify_lead": "qualified_lead",
               "close_convert_lead": "closed_won", "sign_up": "signup"}
IGNORED = frozenset({"user_engagement", "session_start", "first_visit"})
_STRINGS = {"event_id": 100, "user_id": 255, "page_title": 300, "language": 35, "user_agent": 512,
            "transaction_id": 255, "coupon": 100, "search_term": 200, "method": 50}
_ITEM_STRINGS = ("item_id", "item_name", "item_brand", "item_category", "item_variant")


@dataclass
class Payload:
    """A valid payload; absent fields are None (empty strings count as absent, SGTM-21)."""

    call: str
    event_name: str
    timestamp_ms: int
    consent: dict[str, str]
    fields: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        return self.fields.get(name)

    @property
    def analytics_allowed(self) -> bool:
        return self.consent["analytics_storage"] != "denied"

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


@dataclass
class Outputs:
    visitor_id: str | None
    consent: str
    commands: list[dict[str, Any]]
    skipped_reason: str | None = None


def _absent(v: object) -> bool:
    return v is None or (isinstance(v, str) and v == "")


def _money(name: str, v: object, errors: list[str]) -> Decimal | None:
    if _absent(v):
        return None
    if isinstance(v, bool) or not isinstance(v, int | Decimal | float | str):
        errors.append(f"{name}: must be a number or a numeric string")
        return None
    try:
        d = Decimal(str(v).strip()) if not isinstance(v, Decimal) else v
    except InvalidOperation:
        errors.append(f"{name}: must be a number or a numeric string")
        return None
    if not d.is_finite() or d < 0 or d > MAX_MONEY:
        errors.append(f"{name}: must be between 0 and 1000000000000")
        return None
    return d


def _url(name: str, v: object, errors: list[str]) -> str | None:
    if _absent(v):
        return None
    if not isinstance(v, str) or len(v) > 2048 or _URL.fullmatch(v) is None:
        errors.append(f"{name}: must be an absolute http(s) URL of at most 2048 characters")
        return None
    return v


def _properties(v: object, errors: list[str], name: str = "properties") -> dict[str, Any]:
    if _absent(v):
        return {}
    if not isinstance(v, dict):
        errors.append(f"{name}: must be an object")
        return {}
    if len(v) > 25:
        errors.append(f"{name}: at most 25 keys")

    def check(value: object, depth: int) -> bool:
        if depth > 5:
            return False
        if isinstance(value, str):
            return len(value) <= 1024
        if isinstance(value, dict):
            return all(isinstance(k, str) and len(k) <= 100 and check(x, depth + 1) for k, x in value.items())
        if isinstance(value, list):
            return all(check(x, depth + 1) for x in value)
        return True

    if not check(v, 1):
        errors.append(f"{name}: keys at most 100 characters, depth at most 5, strings at most 1024 characters")
    return _plain(v)  # type: ignore[no-any-return]


def _integral(value: int | Decimal) -> bool:
    """Whether a JSON number is a whole number, without converting a huge Decimal (those are whole anyway)."""
    if isinstance(value, int):
        return True
    return value.is_finite() and (value.adjusted() > 18 or value == value.to_integral_value())


def _plain(value: Any) -> Any:
    """Custom properties as JSON stores them: the body is parsed with decimal floats (for money), but a
    property number is a plain number, as on the REST API, under the same range rule (Q-60: beyond signed 64
    bits it is kept as its decimal text; NaN and the infinities become null)."""
    if isinstance(value, Decimal | float) or (isinstance(value, int) and not isinstance(value, bool)):
        return plain_number(value)
    if isinstance(value, dict):
        return {k: _plain(x) for k, x in value.items()}
    if isinstance(value, list):
        return [_plain(x) for x in value]
    return value


def validate(raw: object, now: datetime) -> tuple[Payload | None, list[str]]:
    """SGTM-21: every failure is collected; unknown top-level fields are ignored."""
    if not isinstance(raw, dict):
        return None, ["body: must be a JSON object"]
    errors: list[str] = []
    out: dict[str, Any] = {}
    if raw.get("v") != 1 or isinstance(raw.get("v"), bool):
        errors.append("v: must be 1")
    call = raw.get("call", "auto")
    call = "auto" if _absent(call) else call
    if call not in CALLS:
        errors.append(f"call: must be one of {', '.join(CALLS)}")
    name = raw.get("event_name")
    if _absent(name):
        errors.append("event_name: required")
    elif not isinstance(name, str) or _EVENT_NAME.fullmatch(name) is None:
        errors.append("event_name: must start with a letter and hold at most 40 letters, digits or underscores")
    ts = raw.get("timestamp_ms")
    timestamp_ms = 0
    if _absent(ts):
        errors.append("timestamp_ms: required")
    elif isinstance(ts, bool) or not isinstance(ts, int | Decimal) or not _integral(ts):
        errors.append("timestamp_ms: must be an integer")
    else:
        stamp = ts if isinstance(ts, int) else stored_int(ts)  # never int() of Decimal('1e999999')
        lowest, highest = (int((now + d).timestamp() * 1000) for d in (-PAST, FUTURE))
        if stamp is None or not lowest <= stamp <= highest:  # compared as integers: no datetime overflow
            errors.append("timestamp_ms: must be within 72 hours before and 5 minutes after the server time")
        else:
            timestamp_ms = stamp
    for key, limit in _STRINGS.items():
        v = raw.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and key == "user_id":
            v = str(v)
        if _absent(v):
            continue
        if not isinstance(v, str) or len(v) > limit:
            errors.append(f"{key}: must be a string of at most {limit} characters")
        else:
            out[key] = v
    visitor = raw.get("visitor_id")
    if not _absent(visitor):
        if isinstance(visitor, str) and _HEX64.fullmatch(visitor):
            out["visitor_id"] = visitor
        else:
            errors.append("visitor_id: must be 64 lower-case hex characters")
    client = raw.get("ga_client_id")
    if not _absent(client):
        if isinstance(client, str) and len(client) <= 100 and _CLIENT_ID.fullmatch(client):
            out["ga_client_id"] = client
        else:
            errors.append("ga_client_id: at most 100 letters, digits, dots, underscores or dashes")
    sid = raw.get("ga_session_id")
    if not _absent(sid):
        text = str(sid) if isinstance(sid, int) and not isinstance(sid, bool) else sid
        if isinstance(text, str) and _DIGITS.fullmatch(text):
            out["ga_session_id"] = text
        else:
            errors.append("ga_session_id: must be a string or integer of at most 20 digits")
    number = raw.get("ga_session_number")
    if not _absent(number):
        if isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= 1_000_000:
            out["ga_session_number"] = number
        else:
            errors.append("ga_session_number: must be an integer from 0 to 1000000")
    for key in ("page_location", "page_referrer"):
        if (u := _url(key, raw.get(key), errors)) is not None:
            out[key] = u
    ip = raw.get("ip")
    if not _absent(ip):
        try:
            ip_address(str(ip))
            out["ip"] = str(ip)
        except ValueError:
            errors.append("ip: must be a valid IPv4 or IPv6 address")
    for key in ("value", "tax", "shipping"):
        if (d := _money(key, raw.get(key), errors)) is not None:
            out[key] = d
    currency = raw.get("currency")
    if not _absent(currency):
        if isinstance(currency, str) and _CURRENCY.fullmatch(currency):
            out["currency"] = currency.upper()
        else:
            errors.append("currency: must be a 3-letter ISO 4217 code")
    elif out.get("value") and out["value"] > 0:
        errors.append("currency: required when value is above 0")
    out["items"] = _items(raw.get("items"), errors)
    user_data = raw.get("user_data")
    if not _absent(user_data):
        if not isinstance(user_data, dict):
            errors.append("user_data: must be an object")
        else:
            for key in ("email_sha256", "phone_sha256"):
                v = user_data.get(key)
                if _absent(v):
                    continue
                if isinstance(v, str) and _HEX64.fullmatch(v):
                    out.setdefault("identifier", {})[key] = v
                else:
                    errors.append(f"user_data.{key}: must be 64 lower-case hex characters")
    consent = {"analytics_storage": "unknown", "ad_storage": "unknown"}
    raw_consent = raw.get("consent")
    if isinstance(raw_consent, dict):
        for key in consent:
            v = raw_consent.get(key)
            if _absent(v):
                continue
            if v in CONSENT_VALUES:
                consent[key] = str(v)
            else:
                errors.append(f"consent.{key}: must be granted, denied or unknown")
    elif not _absent(raw_consent):
        errors.append("consent: must be an object")
    for key in ("event_type", "conversion_type"):
        v = raw.get(key)
        if _absent(v):
            continue
        if isinstance(v, str) and _TYPE.fullmatch(v):
            out[key] = v
        else:
            errors.append(f"{key}: 1 to 100 letters, digits or _ . : -")
    out["properties"] = _properties(raw.get("properties"), errors)
    if not errors:
        if (call == "session" or (call == "auto" and name == "page_view")) and "page_location" not in out:
            errors.append("page_location: required for a session")
        if call == "identify" and "user_id" not in out:
            errors.append("user_id: required for identify")
        if call == "auto" and name == "refund" and "transaction_id" not in out:
            errors.append("transaction_id: required for refund")
        if consent["analytics_storage"] != "denied" and not any(k in out for k in ("visitor_id", "ga_client_id",
                                                                                    "user_id")):
            errors.append("visitor_id: one of visitor_id, ga_client_id or user_id is required")
    if errors:
        return None, errors
    return Payload(call=str(call), event_name=str(name), timestamp_ms=timestamp_ms, consent=consent,
                   fields=out), []


def _items(v: object, errors: list[str]) -> list[dict[str, Any]]:
    if _absent(v):
        return []
    if not isinstance(v, list) or len(v) > 50:
        errors.append("items: must be an array of at most 50 items")
        return []
    items: list[dict[str, Any]] = []
    for i, item in enumerate(v):
        if not isinstance(item, dict):
            errors.append(f"items[{i}]: must be an object")
            continue
        clean: dict[str, Any] = {}
        for key in _ITEM_STRINGS:
            s = item.get(key)
            if _absent(s):
                continue
            if isinstance(s, int | Decimal) and not isinstance(s, bool):
                s = str(s)
            if not isinstance(s, str) or len(s) > 200:
                errors.append(f"items[{i}].{key}: must be a string of at most 200 characters")
            else:
                clean[key] = s
        if (price := _money(f"items[{i}].price", item.get("price"), errors)) is not None:
            clean["price"] = price
        quantity = item.get("quantity")
        if not _absent(quantity):
            count = stored_int(quantity) if isinstance(quantity, int | Decimal) else None  # size first
            if count is not None and count == quantity and 1 <= count <= 100_000:
                clean["quantity"] = count
            else:
                errors.append(f"items[{i}].quantity: must be an integer from 1 to 100000")
        items.append(clean)
    return items


# --- mapping ----------------------------------------------------------------------------------------------

def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _amount(d: Decimal, currency: str | None) -> str:
    """SHP-2: quantized to the currency's minor units, half-even, as a decimal string."""
    exponent = currency_exponent(currency) if currency else 2
    return str(d.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_EVEN))


def _strip_query(url: str) -> str:
    return url.split("#", 1)[0].split("?", 1)[0]


def _commerce(p: Payload) -> dict[str, Any]:
    props: dict[str, Any] = {}
    currency = p.get("currency")
    if p.get("value") is not None:
        props["value"] = _amount(p.get("value"), currency)
    if currency:
        props["currency"] = currency
    items = p.get("items") or []
    props["item_count"] = len(items)
    if items:
        first = items[0]
        for src, dst in (("item_id", "product_id"), ("item_name", "product_title")):
            if src in first:
                props[dst] = first[src]
        if "price" in first:
            props["price"] = _amount(first["price"], currency)
        if "quantity" in first:
            props["quantity"] = first["quantity"]
    return props


def _conversion_properties(p: Payload, denied: bool) -> dict[str, Any]:
    """SGTM-27, in this order, then custom properties; at most 25 keys (custom ones trimmed first)."""
    currency = p.get("currency")
    props: dict[str, Any] = {}
    if p.get("page_location"):
        props["url"] = _strip_query(p.get("page_location")) if denied else p.get("page_location")
    if p.get("page_referrer") and not denied:
        props["referrer"] = p.get("page_referrer")
    for key in ("transaction_id",):
        if p.get(key):
            props[key] = p.get(key)
    for key in ("tax", "shipping"):
        if p.get(key) is not None:
            props[key] = _amount(p.get(key), currency)
    if p.get("coupon"):
        props["coupon"] = p.get("coupon")
    items = p.get("items") or []
    if items:
        props["item_count"] = len(items)
        props["items"] = [
            {k: (_amount(v, currency) if k == "price" else v) for k, v in item.items()
             if k in ("item_id", "item_name", "price", "quantity")}
            for item in items[:10]
        ]
    if p.get("method"):
        props["method"] = p.get("method")
    if p.get("event_id"):
        props["event_id"] = p.get("event_id")
    return _with_custom(props, p.get("properties") or {})


def _with_custom(props: dict[str, Any], custom: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in custom.items():
        if len(props) >= 25:
            break
        props.setdefault(key, value)
    return props


def _revenue(p: Payload, conversion_type: str) -> str | None:
    currency = p.get("currency")
    if p.get("value") is not None:
        return _amount(p.get("value"), currency)
    if conversion_type == "purchase" and p.get("items"):
        total = sum((i.get("price", Decimal(0)) * i.get("quantity", 1) for i in p.get("items")), Decimal(0))
        return _amount(total, currency)
    return None


def sent_visitor(p: Payload) -> str | None:
    """SGTM-23 before aliases: the sent visitor id, else the one derived from the GA4 client id."""
    if not p.analytics_allowed:
        return None
    return p.get("visitor_id") or (derived_visitor(p.get("ga_client_id")) if p.get("ga_client_id") else None)


def outputs_for(p: Payload, account_id: str, environment: str, device_fingerprint: str | None,
                shopify_active: bool = False, visitor: str | None = None) -> Outputs:
    """SGTM-22..SGTM-29. ``device_fingerprint`` comes from the edge (FP-1, FP-2: only the fingerprint of the
    masked IP travels on); ``visitor`` is the one the alias lookup resolved (default: :func:`sent_visitor`)."""
    denied = not p.analytics_allowed
    consent = p.consent["analytics_storage"]
    envelope = {"account_id": account_id, "environment": environment, "source": "sgtm", "origin": "sgtm"}
    if str(p.get("page_location") or "").startswith(MEASUREMENT_TEST):
        return Outputs(None, consent, [], "measurement_test")
    visitor = None if denied else (visitor or sent_visitor(p))
    user_id = None if denied else p.get("user_id")
    identifier = None if denied else p.get("identifier")
    agent = None if denied else p.get("user_agent")
    fingerprint = None if denied else device_fingerprint
    at = _rfc3339(p.occurred_at)
    url = p.get("page_location")
    if denied and url:
        url = _strip_query(url)
    referrer = None if denied else p.get("page_referrer")
    key_hash = _sha(f"{visitor or ''}|{url or ''}|{p.timestamp_ms}")
    commands: list[dict[str, Any]] = []

    def identify(traits: dict[str, Any] | None = None) -> None:
        day = p.occurred_at.date().isoformat()
        digest = _sha(f"{user_id}|{visitor or ''}|{day}")
        cmd = {"kind": "identify", **envelope, "idempotency_key": f"sgtm:{account_id}:identify:{digest}",
               "user_id": user_id, "visitor_id": visitor, "occurred_at": at}
        if identifier:
            cmd["identifier"] = dict(identifier)
        if traits:
            cmd["traits"] = traits
        commands.append(_compact(cmd))

    def session() -> None:
        if visitor is None:
            return  # sessions belong to a visitor; a user-only request still records its event (SGTM-24-D2)
        key = f"sgtm:{account_id}:session:{p.get('event_id') or key_hash}"
        commands.append(_compact({"kind": "session", **envelope, "idempotency_key": key, "visitor_id": visitor,
                                  "url": url, "referrer": referrer, "occurred_at": at, "user_agent": agent,
                                  "device_fingerprint": fingerprint}))

    def event(event_type: str, extras: dict[str, Any]) -> None:
        key = f"sgtm:{account_id}:evt:{p.event_name}:{p.get('event_id') or key_hash}"
        props = _with_custom(dict(extras), p.get("properties") or {})
        if p.get("event_id"):
            props["event_id"] = p.get("event_id")
        commands.append(_compact({"kind": "event", **envelope, "idempotency_key": key, "event_type": event_type,
                                  "visitor_id": visitor, "user_id": user_id, "occurred_at": at, "url": url,
                                  "referrer": referrer, "user_agent": agent, "device_fingerprint": fingerprint,
                                  "properties": props}))

    def conversion(conversion_type: str) -> None:
        props = _conversion_properties(p, denied)
        txn, event_id = p.get("transaction_id"), p.get("event_id")
        if conversion_type == "purchase" and txn:
            key = f"sgtm:{account_id}:txn:{txn}"
        elif conversion_type == "signup" and user_id:
            key = f"sgtm:{account_id}:signup:{user_id}"
        elif txn:
            key = f"sgtm:{account_id}:{conversion_type}:txn:{txn}"
        elif event_id:
            key = f"sgtm:{account_id}:{conversion_type}:evt:{event_id}"
        else:
            weak = _sha(f"{p.get('ga_client_id') or ''}|{p.event_name}|{p.timestamp_ms}")
            key = f"sgtm:{account_id}:{conversion_type}:weak:{weak}"
            props["key_quality"] = "weak"
        if denied:
            props["consent"] = "denied"
        cmd: dict[str, Any] = {
            "kind": "conversion", **envelope, "idempotency_key": key, "conversion_type": conversion_type,
            "converted_at": at, "revenue": _revenue(p, conversion_type), "currency": p.get("currency"),
            "visitor_id": _sha("anon:" + key) if denied else visitor, "user_id": user_id,
            "identifier": dict(identifier) if identifier else None, "user_agent": agent,
            "device_fingerprint": fingerprint, "properties": props,
        }
        if conversion_type == "signup" and user_id:
            cmd["is_acquisition"] = True
        if shopify_active and conversion_type == "purchase" and txn:  # SGTM-30: one conversion per order
            cmd["kind"] = "sgtm_order_link"
            cmd["transaction_id"], cmd["ga_client_id"] = txn, None if denied else p.get("ga_client_id")
            cmd["occurred_at"] = cmd.pop("converted_at")
            cmd["hold_until"] = _rfc3339(p.occurred_at + timedelta(hours=6))
        commands.append(_compact(cmd))

    def refund() -> Outputs | None:
        if shopify_active:
            return Outputs(visitor, consent, [], "shopify_refunds")
        txn = p.get("transaction_id")
        suffix = p.get("event_id") or str(p.timestamp_ms)
        amount = _revenue(p, "purchase")
        commands.append(_compact({
            "kind": "order_adjustment", **envelope, "idempotency_key": f"sgtm:{account_id}:refund:{txn}:{suffix}",
            "conversion_key": f"sgtm:{account_id}:txn:{txn}", "adjustment": "refund", "amount": amount,
            "currency": p.get("currency"), "occurred_at": at, "properties": {"event_id": p.get("event_id")},
        }))
        return None

    name = p.event_name
    if p.call == "auto" and name in IGNORED:
        return Outputs(visitor, consent, [], "ignored_event")
    conversion_kind = p.call == "conversion" or (p.call == "auto" and (name in CONVERSIONS or name == "refund"))
    if denied and not conversion_kind:
        return Outputs(None, consent, [], "consent_denied")
    if p.call == "auto" and name == "login" and not user_id:
        return Outputs(visitor, consent, [], "missing_user_id")
    explicit_identify = p.call == "identify"
    if user_id and not denied:  # SGTM-25: at most once per user, visitor and day (by its key)
        identify(dict(p.get("properties") or {}) if explicit_identify else None)
    if p.call == "session":
        session()
    elif p.call == "event":
        event(p.get("event_type") or name, {})
    elif p.call == "conversion":
        conversion(p.get("conversion_type") or name)
    elif p.call == "auto":
        if name == "page_view":
            session()
            event("page_view", {"title": p.get("page_title")} if p.get("page_title") and not denied else {})
        elif name in EVENTS:
            event_type, extras = EVENTS[name]
            props = _commerce(p) if extras == "commerce" else (
                {"item_count": len(p.get("items") or [])} if extras == "item_count"
                else ({"search_term": p.get("search_term")} if p.get("search_term") else {}))
            event(event_type, props)
        elif name in CONVERSIONS:
            conversion(CONVERSIONS[name])
        elif name == "refund":
            skipped = refund()
            if skipped is not None:
                return skipped
        elif name != "login":
            event(name, {})
    return Outputs(None if denied else visitor, consent, commands)


def output_kind(command: Mapping[str, Any]) -> str:
    """SGTM-34: an order link is reported as the conversion it stands for."""
    return "conversion" if command["kind"] == "sgtm_order_link" else str(command["kind"])


def _compact(cmd: dict[str, Any]) -> dict[str, Any]:
    """Absent values are left out of a command (SGTM-28: e.g. an empty referrer is omitted)."""
    return {k: v for k, v in cmd.items() if v is not None and v != {} and v != ""}
