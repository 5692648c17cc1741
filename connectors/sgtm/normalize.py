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
from collections.abc import Callable, Mapping
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


class _Bad(ValueError):
    """A field's reason for refusal (SGTM-21: reported as ``"<field>: <reason>"``)."""


Check = Callable[[object], Any]  # a present value → what the payload keeps, or raises _Bad


def _money(v: object) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, int | Decimal | float | str):
        raise _Bad("must be a number or a numeric string")
    try:
        d = Decimal(str(v).strip()) if not isinstance(v, Decimal) else v
    except InvalidOperation:
        raise _Bad("must be a number or a numeric string") from None
    if not d.is_finite() or d < 0 or d > MAX_MONEY:
        raise _Bad("must be between 0 and 1000000000000")
    return d


def _url(v: object) -> str:
    if not isinstance(v, str) or len(v) > 2048 or _URL.fullmatch(v) is None:
        raise _Bad("must be an absolute http(s) URL of at most 2048 characters")
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


def _matching(pattern: re.Pattern[str], reason: str, max_length: int | None = None) -> Check:
    def check(v: object) -> str:
        if isinstance(v, str) and (max_length is None or len(v) <= max_length) and pattern.fullmatch(v):
            return v
        raise _Bad(reason)

    return check


def _string(limit: int, integers: bool = False) -> Check:
    def check(v: object) -> str:
        if integers and isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        if not isinstance(v, str) or len(v) > limit:
            raise _Bad(f"must be a string of at most {limit} characters")
        return v

    return check


def _session_id(v: object) -> str:
    text = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
    if isinstance(text, str) and _DIGITS.fullmatch(text):
        return text
    raise _Bad("must be a string or integer of at most 20 digits")


def _session_number(v: object) -> int:
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1_000_000:
        return v
    raise _Bad("must be an integer from 0 to 1000000")


def _ip(v: object) -> str:
    try:
        ip_address(str(v))
    except ValueError:
        raise _Bad("must be a valid IPv4 or IPv6 address") from None
    return str(v)


def _currency(v: object) -> str:
    if isinstance(v, str) and _CURRENCY.fullmatch(v):
        return v.upper()
    raise _Bad("must be a 3-letter ISO 4217 code")


# SGTM-21's field rules, in the order their errors are reported; absent (None or "") fields are skipped.
_FIELDS: tuple[tuple[str, Check], ...] = (
    *((key, _string(limit, integers=key == "user_id")) for key, limit in _STRINGS.items()),
    ("visitor_id", _matching(_HEX64, "must be 64 lower-case hex characters")),
    ("ga_client_id", _matching(_CLIENT_ID, "at most 100 letters, digits, dots, underscores or dashes", 100)),
    ("ga_session_id", _session_id),
    ("ga_session_number", _session_number),
    ("page_location", _url),
    ("page_referrer", _url),
    ("ip", _ip),
    ("value", _money),
    ("tax", _money),
    ("shipping", _money),
    ("currency", _currency),
)
_HASHED: tuple[tuple[str, Check], ...] = tuple(
    (key, _matching(_HEX64, "must be 64 lower-case hex characters")) for key in ("email_sha256", "phone_sha256"))
_TYPES: tuple[tuple[str, Check], ...] = tuple(
    (key, _matching(_TYPE, "1 to 100 letters, digits or _ . : -")) for key in ("event_type", "conversion_type"))


_PRICE: tuple[tuple[str, Check], ...] = (("price", _money),)


def _apply(rules: tuple[tuple[str, Check], ...], raw: Mapping[str, Any], out: dict[str, Any],
           errors: list[str]) -> None:
    for key, check in rules:
        v = raw.get(key)
        if _absent(v):
            continue
        try:
            out[key] = check(v)
        except _Bad as bad:
            errors.append(f"{key}: {bad}")


def _envelope_errors(raw: Mapping[str, Any]) -> list[str]:
    """``v``, ``call`` and ``event_name``."""
    errors: list[str] = []
    if raw.get("v") != 1 or isinstance(raw.get("v"), bool):
        errors.append("v: must be 1")
    if _call(raw) not in CALLS:
        errors.append(f"call: must be one of {', '.join(CALLS)}")
    name = raw.get("event_name")
    if _absent(name):
        errors.append("event_name: required")
    elif not isinstance(name, str) or _EVENT_NAME.fullmatch(name) is None:
        errors.append("event_name: must start with a letter and hold at most 40 letters, digits or underscores")
    return errors


def _call(raw: Mapping[str, Any]) -> Any:
    call = raw.get("call", "auto")
    return "auto" if _absent(call) else call


def _timestamp(ts: object, now: datetime, errors: list[str]) -> int:
    if _absent(ts):
        errors.append("timestamp_ms: required")
    elif isinstance(ts, bool) or not isinstance(ts, int | Decimal) or not _integral(ts):
        errors.append("timestamp_ms: must be an integer")
    else:
        stamp = ts if isinstance(ts, int) else stored_int(ts)  # never int() of Decimal('1e999999')
        lowest, highest = (int((now + d).timestamp() * 1000) for d in (-PAST, FUTURE))
        if stamp is not None and lowest <= stamp <= highest:  # compared as integers: no datetime overflow
            return stamp
        errors.append("timestamp_ms: must be within 72 hours before and 5 minutes after the server time")
    return 0


def _identifiers(user_data: object, out: dict[str, Any], errors: list[str]) -> None:
    if _absent(user_data):
        return
    if not isinstance(user_data, dict):
        errors.append("user_data: must be an object")
        return
    hashed: dict[str, Any] = {}
    refused: list[str] = []
    _apply(_HASHED, user_data, hashed, refused)
    if hashed:
        out["identifier"] = hashed
    errors.extend(f"user_data.{reason}" for reason in refused)


def _consent(raw_consent: object, errors: list[str]) -> dict[str, str]:
    consent = {"analytics_storage": "unknown", "ad_storage": "unknown"}
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
    return consent


def _missing(call: Any, name: Any, out: Mapping[str, Any], consent: Mapping[str, str]) -> list[str]:
    """SGTM-21's fields required by the kind of call, checked once every field is valid."""
    errors: list[str] = []
    if (call == "session" or (call == "auto" and name == "page_view")) and "page_location" not in out:
        errors.append("page_location: required for a session")
    if call == "identify" and "user_id" not in out:
        errors.append("user_id: required for identify")
    if call == "auto" and name == "refund" and "transaction_id" not in out:
        errors.append("transaction_id: required for refund")
    if consent["analytics_storage"] != "denied" and not any(k in out for k in ("visitor_id", "ga_client_id",
                                                                                "user_id")):
        errors.append("visitor_id: one of visitor_id, ga_client_id or user_id is required")
    return errors


def validate(raw: object, now: datetime) -> tuple[Payload | None, list[str]]:
    """SGTM-21: every failure is collected; unknown top-level fields are ignored."""
    if not isinstance(raw, dict):
        return None, ["body: must be a JSON object"]
    errors = _envelope_errors(raw)
    timestamp_ms = _timestamp(raw.get("timestamp_ms"), now, errors)
    out: dict[str, Any] = {}
    _apply(_FIELDS, raw, out, errors)
    if _absent(raw.get("currency")) and out.get("value") and out["value"] > 0:
        errors.append("currency: required when value is above 0")
    out["items"] = _items(raw.get("items"), errors)
    _identifiers(raw.get("user_data"), out, errors)
    consent = _consent(raw.get("consent"), errors)
    _apply(_TYPES, raw, out, errors)
    out["properties"] = _properties(raw.get("properties"), errors)
    call, name = _call(raw), raw.get("event_name")
    if not errors:
        errors = _missing(call, name, out, consent)
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
        refused: list[str] = []
        _apply(_PRICE, item, clean, refused)
        errors.extend(f"items[{i}].{reason}" for reason in refused)
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
    consent = p.consent["analytics_storage"]
    if str(p.get("page_location") or "").startswith(MEASUREMENT_TEST):
        return Outputs(None, consent, [], "measurement_test")
    mapper = _Mapper.of(p, account_id, environment, device_fingerprint, shopify_active, visitor)
    skipped = _skipped(p, mapper)
    if skipped is None:
        if mapper.user_id:  # SGTM-25: at most once per user, visitor and day (by its key)
            mapper.identify(dict(p.get("properties") or {}) if p.call == "identify" else None)
        skipped = mapper.dispatch()
    if skipped is not None:
        return Outputs(mapper.visitor, consent, [], skipped)
    return Outputs(mapper.visitor, consent, mapper.commands)


def _skipped(p: Payload, mapper: _Mapper) -> str | None:
    """Why a payload yields no command at all, before any is built (SGTM-26, SGTM-27)."""
    if p.call == "auto" and p.event_name in IGNORED:
        return "ignored_event"
    conversion_kind = p.call == "conversion" or (
        p.call == "auto" and (p.event_name in CONVERSIONS or p.event_name == "refund"))
    if mapper.denied and not conversion_kind:
        return "consent_denied"
    if p.call == "auto" and p.event_name == "login" and not mapper.user_id:
        return "missing_user_id"
    return None


@dataclass
class _Mapper:
    """One payload's commands, with what consent lets travel (SGTM-22: denied analytics storage keeps no
    visitor, user, identifier, user agent, fingerprint, referrer or query string)."""

    p: Payload
    account_id: str
    envelope: dict[str, Any]
    denied: bool
    visitor: str | None
    user_id: str | None
    identifier: dict[str, str] | None
    agent: str | None
    fingerprint: str | None
    url: str | None
    referrer: str | None
    shopify_active: bool
    commands: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, p: Payload, account_id: str, environment: str, device_fingerprint: str | None,
           shopify_active: bool, visitor: str | None) -> _Mapper:
        denied = not p.analytics_allowed
        url = p.get("page_location")
        kept = (lambda value: None) if denied else (lambda value: value)
        return cls(p=p, account_id=account_id, denied=denied, shopify_active=shopify_active,
                   envelope={"account_id": account_id, "environment": environment, "source": "sgtm",
                             "origin": "sgtm"},
                   visitor=kept(visitor or sent_visitor(p)), user_id=kept(p.get("user_id")),
                   identifier=kept(p.get("identifier")), agent=kept(p.get("user_agent")),
                   fingerprint=kept(device_fingerprint), url=_strip_query(url) if denied and url else url,
                   referrer=kept(p.get("page_referrer")))

    @property
    def at(self) -> str:
        return _rfc3339(self.p.occurred_at)

    @property
    def key_hash(self) -> str:
        return _sha(f"{self.visitor or ''}|{self.url or ''}|{self.p.timestamp_ms}")

    def dispatch(self) -> str | None:
        """The commands of the payload's call; a reason when it yields none after all."""
        p = self.p
        if p.call == "session":
            self.session()
        elif p.call == "event":
            self.event(p.get("event_type") or p.event_name, {})
        elif p.call == "conversion":
            self.conversion(p.get("conversion_type") or p.event_name)
        elif p.call == "auto":
            return self.auto(p.event_name)
        return None

    def auto(self, name: str) -> str | None:
        """SGTM-24: a GA4 event by its name."""
        if name == "page_view":
            self.session()
            title = self.p.get("page_title")
            self.event("page_view", {"title": title} if title and not self.denied else {})
        elif name in EVENTS:
            event_type, extras = EVENTS[name]
            self.event(event_type, self._extras(extras))
        elif name in CONVERSIONS:
            self.conversion(CONVERSIONS[name])
        elif name == "refund":
            return self.refund()
        elif name != "login":
            self.event(name, {})
        return None

    def _extras(self, kind: str) -> dict[str, Any]:
        if kind == "commerce":
            return _commerce(self.p)
        if kind == "item_count":
            return {"item_count": len(self.p.get("items") or [])}
        term = self.p.get("search_term")
        return {"search_term": term} if term else {}

    def identify(self, traits: dict[str, Any] | None = None) -> None:
        day = self.p.occurred_at.date().isoformat()
        digest = _sha(f"{self.user_id}|{self.visitor or ''}|{day}")
        cmd = {"kind": "identify", **self.envelope, "idempotency_key": f"sgtm:{self.account_id}:identify:{digest}",
               "user_id": self.user_id, "visitor_id": self.visitor, "occurred_at": self.at}
        if self.identifier:
            cmd["identifier"] = dict(self.identifier)
        if traits:
            cmd["traits"] = traits
        self.commands.append(_compact(cmd))

    def session(self) -> None:
        if self.visitor is None:
            return  # sessions belong to a visitor; a user-only request still records its event (SGTM-24-D2)
        key = f"sgtm:{self.account_id}:session:{self.p.get('event_id') or self.key_hash}"
        self.commands.append(_compact({
            "kind": "session", **self.envelope, "idempotency_key": key, "visitor_id": self.visitor, "url": self.url,
            "referrer": self.referrer, "occurred_at": self.at, "user_agent": self.agent,
            "device_fingerprint": self.fingerprint}))

    def event(self, event_type: str, extras: dict[str, Any]) -> None:
        p = self.p
        key = f"sgtm:{self.account_id}:evt:{p.event_name}:{p.get('event_id') or self.key_hash}"
        props = _with_custom(dict(extras), p.get("properties") or {})
        if p.get("event_id"):
            props["event_id"] = p.get("event_id")
        self.commands.append(_compact({
            "kind": "event", **self.envelope, "idempotency_key": key, "event_type": event_type,
            "visitor_id": self.visitor, "user_id": self.user_id, "occurred_at": self.at, "url": self.url,
            "referrer": self.referrer, "user_agent": self.agent, "device_fingerprint": self.fingerprint,
            "properties": props}))

    def _conversion_key(self, conversion_type: str, props: dict[str, Any]) -> str:
        """SGTM-29's idempotency key, strongest first; a weak one is marked in the properties."""
        p, prefix = self.p, f"sgtm:{self.account_id}"
        txn, event_id = p.get("transaction_id"), p.get("event_id")
        if conversion_type == "purchase" and txn:
            return f"{prefix}:txn:{txn}"
        if conversion_type == "signup" and self.user_id:
            return f"{prefix}:signup:{self.user_id}"
        if txn:
            return f"{prefix}:{conversion_type}:txn:{txn}"
        if event_id:
            return f"{prefix}:{conversion_type}:evt:{event_id}"
        props["key_quality"] = "weak"
        weak = _sha(f"{p.get('ga_client_id') or ''}|{p.event_name}|{p.timestamp_ms}")
        return f"{prefix}:{conversion_type}:weak:{weak}"

    def conversion(self, conversion_type: str) -> None:
        p = self.p
        props = _conversion_properties(p, self.denied)
        key = self._conversion_key(conversion_type, props)
        if self.denied:
            props["consent"] = "denied"
        cmd: dict[str, Any] = {
            "kind": "conversion", **self.envelope, "idempotency_key": key, "conversion_type": conversion_type,
            "converted_at": self.at, "revenue": _revenue(p, conversion_type), "currency": p.get("currency"),
            "visitor_id": _sha("anon:" + key) if self.denied else self.visitor, "user_id": self.user_id,
            "identifier": dict(self.identifier) if self.identifier else None, "user_agent": self.agent,
            "device_fingerprint": self.fingerprint, "properties": props,
        }
        if conversion_type == "signup" and self.user_id:
            cmd["is_acquisition"] = True
        txn = p.get("transaction_id")
        if self.shopify_active and conversion_type == "purchase" and txn:  # SGTM-30: one conversion per order
            cmd["kind"] = "sgtm_order_link"
            cmd["transaction_id"], cmd["ga_client_id"] = txn, None if self.denied else p.get("ga_client_id")
            cmd["occurred_at"] = cmd.pop("converted_at")
            cmd["hold_until"] = _rfc3339(p.occurred_at + timedelta(hours=6))
        self.commands.append(_compact(cmd))

    def refund(self) -> str | None:
        if self.shopify_active:
            return "shopify_refunds"
        p = self.p
        txn = p.get("transaction_id")
        suffix = p.get("event_id") or str(p.timestamp_ms)
        self.commands.append(_compact({
            "kind": "order_adjustment", **self.envelope,
            "idempotency_key": f"sgtm:{self.account_id}:refund:{txn}:{suffix}",
            "conversion_key": f"sgtm:{self.account_id}:txn:{txn}", "adjustment": "refund",
            "amount": _revenue(p, "purchase"), "currency": p.get("currency"), "occurred_at": self.at,
            "properties": {"event_id": p.get("event_id")},
        }))
        return None


def output_kind(command: Mapping[str, Any]) -> str:
    """SGTM-34: an order link is reported as the conversion it stands for."""
    return "conversion" if command["kind"] == "sgtm_order_link" else str(command["kind"])


def _compact(cmd: dict[str, Any]) -> dict[str, Any]:
    """Absent values are left out of a command (SGTM-28: e.g. an empty referrer is omitted)."""
    return {k: v for k, v in cmd.items() if v is not None and v != {} and v != ""}
