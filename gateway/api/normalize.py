"""Raw request items → core commands (api.md §5, §8.1–§8.4).

Each builder lists **every** problem of its item in the order of the api.md field tables (API-21) and never
raises on any JSON value. PII is removed here, before the log: the IP is masked (FP-1) and emails are hashed
(ID-6, ID-11), so the raw values never reach a command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.channels import email_sha256, hash_emails, normalize_email
from core.commands import ConversionCommand, EventCommand, IdentifyCommand, TouchCommand
from core.ids import new_id
from core.money import currency_exponent, is_active_currency, parse_revenue
from gateway.api import fields as f

UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
EMAIL_TRAITS = ("email", "email_address")


@dataclass
class Built:
    """A command, or the reasons there is none."""

    command: Any = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _explicit_utm(raw: dict[str, Any], props: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in UTM_FIELDS:
        value = raw.get(name)
        if not isinstance(value, str) or not value.strip():
            value = props.get(name)
        if isinstance(value, str) and value.strip():
            out[name] = value
    return out


def _identifier(raw: Any, errors: list[str]) -> tuple[str | None, str | None]:
    """API-49: ``identifier.user_id`` is a user id; ``identifier.email`` is hashed here (ID-9)."""
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        errors.append(f"identifier must be an object, got {f.type_name(raw)}")
        return None, None
    user = f.user_id(raw.get("user_id"), errors) if raw.get("user_id") not in (None, "") else None
    email = raw.get("email")
    hashed = email_sha256(email) if isinstance(email, str) and user is None else None
    return user, hashed


def _properties_and_funnel(
    raw: dict[str, Any], errors: list[str], warnings: list[str]
) -> tuple[dict[str, Any], str | None]:
    """API-47 properties, and API-48: a string ``properties.funnel`` stands in for an absent ``funnel``."""
    props = f.properties("properties", raw.get("properties"), errors, warnings)
    funnel_raw = raw.get("funnel")
    if funnel_raw is None and isinstance(props.get("funnel"), str):
        funnel_raw = props.get("funnel")
    return props, f.name_field("funnel", funnel_raw, errors)


def _ip_and_agent(raw: dict[str, Any], warnings: list[str]) -> tuple[str | None, str | None]:
    masked = f.mask_ip(raw.get("ip"), warnings) if raw.get("ip") is not None else None
    agent = f.clean_user_agent(raw.get("user_agent"))
    return agent, f.fingerprint(masked, agent)


def _time(name: str, raw: Any, now: datetime, errors: list[str], warnings: list[str]) -> datetime:
    value = f.timestamp(name, raw, now, errors, warnings)
    return value if value is not None else now


def _idempotency_key(raw: Any, errors: list[str]) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        errors.append(f"message_id must be a string or an integer, got {f.type_name(raw)}")
        return None
    return f.name_field("message_id", str(raw), errors)


def build_event(
    raw: Any, index: int, now: datetime, header_key: str | None, sdk: tuple[str | None, str | None]
) -> Built:
    out = Built()
    errors, warnings = out.errors, out.warnings
    if not isinstance(raw, dict):
        errors.append(f"event must be an object, got {f.type_name(raw)}")
        return out
    event_type = f.name_field("event_type", raw.get("event_type"), errors)
    if event_type is None and "event_type is required" not in errors and not any(
        e.startswith("event_type") for e in errors
    ):
        errors.append("event_type is required")
    visitor = f.client_id("visitor_id", raw.get("visitor_id"), errors)
    user = f.user_id(raw.get("user_id"), errors)
    id_user, id_email = _identifier(raw.get("identifier"), errors)
    user = user or id_user
    if visitor is None and user is None and id_email is None and not any(
        e.startswith(("visitor_id", "user_id", "identifier")) for e in errors
    ):
        errors.append("visitor_id or user_id is required")
    session = f.client_id("session_id", raw.get("session_id"), errors)
    occurred = _time("timestamp", raw.get("timestamp"), now, errors, warnings)
    props, funnel = _properties_and_funnel(raw, errors, warnings)
    url = f.url_field("url", raw.get("url") or props.get("url"), warnings)
    referrer = f.url_field("referrer", raw.get("referrer") or props.get("referrer"), warnings)
    agent, fingerprint = _ip_and_agent(raw, warnings)
    key = _idempotency_key(raw.get("message_id", raw.get("id")), errors)
    if key is None and header_key is not None:
        key = f"{header_key}:{index}"
    f.event_size_ok(raw, errors)
    if errors:
        return out
    assert event_type is not None
    out.command = EventCommand(
        id=new_id("evt"),
        event_type=event_type,
        occurred_at=occurred,
        received_at=now,
        visitor_key=visitor,
        user_key=user,
        email_sha256=id_email,
        client_session_id=session,
        funnel=funnel,
        url=url,
        referrer=referrer,
        user_agent=agent,
        fingerprint=fingerprint,
        explicit_utm=_explicit_utm(raw, props),
        properties=hash_emails(props),  # type: ignore[arg-type]
        idempotency_key=key,
        sdk_name=sdk[0],
        sdk_version=sdk[1],
    )
    return out


def build_touch(raw: dict[str, Any], now: datetime, header_key: str | None) -> Built:
    out = Built()
    errors, warnings = out.errors, out.warnings
    visitor = f.client_id("visitor_id", raw.get("visitor_id"), errors)
    if visitor is None and not any(e.startswith("visitor_id") for e in errors):
        errors.append("visitor_id is required")
    session = f.client_id("session_id", raw.get("session_id"), errors)
    if session is None and not any(e.startswith("session_id") for e in errors):
        errors.append("session_id is required")
    url = f.url_field("url", raw.get("url"), warnings)
    referrer = f.url_field("referrer", raw.get("referrer"), warnings)
    started = _time("started_at", raw.get("started_at"), now, errors, warnings)
    agent, fingerprint = _ip_and_agent(raw, warnings)
    user = f.user_id(raw.get("user_id"), errors)
    fbp, fbc = (_short(raw.get(k), 255, k, warnings) for k in ("fbp", "fbc"))
    country = raw.get("country")
    if country is not None:
        if isinstance(country, str) and len(country.strip()) == 2 and country.strip().isalpha():
            country = country.strip().upper()
        else:
            warnings.append("country ignored: not an ISO 3166-1 alpha-2 code")
            country = None
    postal = _short(raw.get("postal_code"), 16, "postal_code", warnings)
    if errors:
        return out
    assert visitor is not None and session is not None
    out.command = TouchCommand(
        id=new_id("cmd"),
        visitor_key=visitor,
        client_session_id=session,
        occurred_at=started,
        received_at=now,
        url=url,
        referrer=referrer,
        user_agent=agent,
        fingerprint=fingerprint,
        user_key=user,
        explicit_utm=_explicit_utm(raw, {}),
        country=country,
        postal_code=postal,
        fbp=fbp,
        fbc=fbc,
        idempotency_key=header_key,
    )
    return out


def _short(value: Any, limit: int, name: str, warnings: list[str]) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        warnings.append(f"{name} ignored: must be a string of at most {limit} characters")
        return None
    return value


def build_conversion(
    raw: dict[str, Any], now: datetime, header_key: str | None, default_currency: str = "USD"
) -> Built:
    out = Built()
    errors, warnings = out.errors, out.warnings
    conversion_type = f.name_field("conversion_type", raw.get("conversion_type"), errors)
    if conversion_type is None and not any(e.startswith("conversion_type") for e in errors):
        errors.append("conversion_type is required")
    event_raw = raw.get("event_id")
    event_id = None
    if event_raw is not None and event_raw != "":
        event_id = f.normalize_server_id("evt", event_raw)
        if event_id is None:
            errors.append(
                "event_id must be an event id returned by POST /events (evt_ followed by 26 characters), "
                f"got {f.render_value(event_raw)}"
            )
    visitor = f.client_id("visitor_id", raw.get("visitor_id"), errors)
    user = f.user_id(raw.get("user_id"), errors)
    id_user, id_email = _identifier(raw.get("identifier"), errors)
    user = user or id_user
    if (
        event_id is None
        and visitor is None
        and user is None
        and id_email is None
        and not any(e.startswith(("event_id", "visitor_id", "user_id", "identifier")) for e in errors)
    ):
        errors.append("event_id, visitor_id, or user_id is required")
    currency_raw = raw.get("currency")
    currency: str | None = None
    if currency_raw is not None and currency_raw != "":
        if isinstance(currency_raw, str) and is_active_currency(currency_raw.strip().upper()):
            currency = currency_raw.strip().upper()
        else:
            errors.append(f"currency must be a 3-letter ISO 4217 code, got {f.render_value(currency_raw)}")
    revenue = parse_revenue(raw.get("revenue"), currency_exponent(currency or default_currency), f.render_value)
    if revenue.error:
        errors.append(revenue.error)
    elif revenue.warning:
        warnings.append(revenue.warning)
    acquisition = f.boolean("is_acquisition", raw.get("is_acquisition"), errors) or False
    inherit = f.boolean("inherit_acquisition", raw.get("inherit_acquisition"), errors) or False
    if acquisition and inherit:
        errors.append("is_acquisition and inherit_acquisition cannot both be true")
    props, funnel = _properties_and_funnel(raw, errors, warnings)
    key_raw = raw.get("idempotency_key")
    key = None
    if key_raw is not None:
        if not isinstance(key_raw, str) or not (1 <= len(key_raw) <= 255) or not key_raw.isprintable() or (
            not key_raw.isascii()
        ):
            errors.append(
                f"idempotency_key must be 1-255 printable ASCII characters, got {f.render_value(key_raw)}"
            )
        else:
            key = key_raw
    key = key or header_key
    ts_raw = raw.get("timestamp", raw.get("converted_at"))
    converted = f.timestamp("timestamp", ts_raw, now, errors, warnings)
    _agent, fingerprint = _ip_and_agent(raw, warnings)
    if errors:
        return out
    assert conversion_type is not None
    out.command = ConversionCommand(
        id=new_id("conv"),
        conversion_type=conversion_type,
        received_at=now,
        converted_at=converted,
        event_id=event_id,
        visitor_key=visitor,
        user_key=user,
        email_sha256=id_email,
        revenue_minor=revenue.minor,
        currency=currency or default_currency,
        is_acquisition=acquisition,
        inherit_acquisition=inherit,
        funnel=funnel,
        properties=hash_emails(props),  # type: ignore[arg-type]
        idempotency_key=key,
        fingerprint=fingerprint,
        warnings=list(warnings),
    )
    return out


def build_identify(raw: dict[str, Any], now: datetime) -> Built:
    out = Built()
    errors, warnings = out.errors, out.warnings
    user_raw = raw.get("user_id")
    user = f.user_id(user_raw, errors)
    if user is None and not any(e.startswith("user_id") for e in errors):
        errors.append("user_id is required")
    visitor = f.client_id("visitor_id", raw.get("visitor_id"), errors)
    traits_raw = raw.get("traits")
    deleted = [k for k, v in traits_raw.items() if v is None] if isinstance(traits_raw, dict) else []
    traits = f.properties("traits", traits_raw, errors, warnings)
    occurred = _time("timestamp", raw.get("timestamp"), now, errors, warnings)
    if errors:
        return out
    assert user is not None
    email_hash = None
    for name in EMAIL_TRAITS:
        value = traits.pop(name, None)
        if isinstance(value, str):
            hashed = email_sha256(value) if normalize_email(value) or len(value) == 64 else None
            if hashed is None:
                warnings.append(f"traits.{name} is not a valid email address; ignored")
            else:
                email_hash = hashed
    given_hash = traits.pop("email_sha256", None)
    if isinstance(given_hash, str) and len(given_hash) == 64:
        email_hash = given_hash.lower()
    clean = {k: v for k, v in traits.items() if v is not None and k not in deleted}
    out.command = IdentifyCommand(
        id=new_id("cmd"),
        user_key=user,
        occurred_at=occurred,
        received_at=now,
        visitor_key=visitor,
        traits=hash_emails(clean),  # type: ignore[arg-type]
        deleted_traits=[k for k in deleted if k not in EMAIL_TRAITS],
        email_sha256=email_hash,
    )
    return out
