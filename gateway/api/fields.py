"""Field rules shared by the write endpoints (api.md §3 API-22 messages, §4 limits, §5 API-40..API-49;
sessions.md FP-1, FP-2, VIS-1; quality.md Q-60 for the numbers a property may hold, docs/api.md API-47-D1).

Convention: a rule takes the raw JSON value and ``errors`` / ``warnings`` lists owned by the caller and
returns the cleaned value, or ``None`` when the field is absent *or* invalid. Invalid input appends exactly
one message to ``errors`` (API-21 wants every problem, so rules never raise); the caller tells the two
``None`` cases apart by whether ``errors`` grew, or, simpler, rejects the item whenever ``errors`` is
non-empty. Nothing here raises on any JSON value, except :func:`idempotency_header` (a whole-request 400)
and :func:`ulid_time` (given an id that was never valid).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import cast

import orjson

from core.fingerprint import USER_AGENT_MAX, clean_user_agent, fingerprint, mask_ip
from core.numbers import out_of_range, plain_number, stored_int
from gateway.api.body import BodyError

__all__ = [
    "EVENT_MAX_BYTES",
    "NAME_MAX",
    "URL_MAX",
    "USER_AGENT_MAX",
    "boolean",
    "clean_user_agent",
    "client_id",
    "event_size_ok",
    "fingerprint",
    "idempotency_header",
    "mask_ip",
    "name_field",
    "normalize_server_id",
    "plain_number",
    "properties",
    "stored_int",
    "render_value",
    "timestamp",
    "type_name",
    "ulid_time",
    "url_field",
    "user_id",
]

NAME_MAX = 255
URL_MAX = 8192
EVENT_MAX_BYTES = 32768
PROPERTY_KEYS_MAX = 50
PROPERTY_DEPTH_MAX = 5
_RENDER_MAX = 40

WARN_TIMESTAMP_CLAMPED = "timestamp was in the future; recorded at receive time"
MSG_IDEMPOTENCY_HEADER = "X-Idempotency-Key must be 1-255 printable ASCII characters"

# --------------------------------------------------------------------------------------------- rendering

# ID-6's address pattern, but searched rather than matched: a rejection is stored for 7 days (API-24) and
# ID-11 allows no raw address anywhere, so a value merely *containing* an address is never echoed.
_EMAIL_IN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def render_value(v: object) -> str:
    """API-22 ``<v>``. Non-strings are compact JSON, also cut at 40 characters so that an object or array
    sent where a scalar belongs cannot blow up the stored rejection."""
    if isinstance(v, str):
        if _EMAIL_IN.search(v) is not None:
            return "'[email]'"
        if len(v) > _RENDER_MAX:
            return f"'{v[:_RENDER_MAX]}…'"
        return f"'{v}'"
    try:
        text = orjson.dumps(v).decode()
    except (TypeError, orjson.JSONEncodeError):  # not a JSON value (never the case for parsed bodies)
        text = repr(v)
    if isinstance(v, dict | list) and _EMAIL_IN.search(text) is not None:
        return "[email]"
    if len(text) > _RENDER_MAX:
        return text[:_RENDER_MAX] + "…"
    return text


def type_name(v: object) -> str:
    """API-22 ``<type>``; bool is tested before int because bool subclasses int."""
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if v is None:
        return "null"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list | tuple):
        return "array"
    return type(v).__name__


# ----------------------------------------------------------------------------------------- ids and names

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,255}")
_CLIENT_ID_RULE = "1-255 characters of letters, digits, '.', '_', ':' or '-'"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def client_id(field: str, v: object, errors: list[str]) -> str | None:
    """``visitor_id`` / ``session_id`` (API-40, API-42, VIS-1). Quotes are stripped because some clients
    double-encode cookies; a value that is empty once cleaned counts as absent."""
    if v is None:
        return None
    if not isinstance(v, str):
        errors.append(f"{field} must be a string, got {type_name(v)}")
        return None
    s = v.strip().strip('"')
    if not s:
        return None
    if _CLIENT_ID.fullmatch(s) is None:
        errors.append(f"{field} must be {_CLIENT_ID_RULE}, got {render_value(v)}")
        return None
    return s


def user_id(v: object, errors: list[str]) -> str | None:
    """API-41: integers become their decimal string so that ``42`` and ``"42"`` name the same user."""
    if v is None:
        return None
    if isinstance(v, str):
        s = v.strip()
    elif isinstance(v, int) and not isinstance(v, bool):
        s = str(v)
    else:
        errors.append(f"user_id must be a string or an integer, got {type_name(v)}")
        return None
    if not s:
        return None
    if len(s) > NAME_MAX:
        errors.append(f"user_id must be at most {NAME_MAX} characters, got {len(s)}")
        return None
    return s


def name_field(field: str, v: object, errors: list[str]) -> str | None:
    """``event_type``, ``conversion_type``, ``funnel``, ``idempotency_key``, ``message_id`` (API-36, API-48).

    Absent (``None``, empty after trimming) returns ``None`` without an error: whether the field is
    required is the endpoint's decision (``<field> is required``)."""
    if v is None:
        return None
    if not isinstance(v, str):
        errors.append(f"{field} must be a string, got {type_name(v)}")
        return None
    s = v.strip()
    if not s:
        return None
    if len(s) > NAME_MAX:
        errors.append(f"{field} must be at most {NAME_MAX} characters, got {len(s)}")
        return None
    if field == "funnel" and _CONTROL.search(s) is not None:
        errors.append(f"funnel must not contain control characters, got {render_value(v)}")
        return None
    return s


# -------------------------------------------------------------------------------------------- timestamps

_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(?:(Z)|([+-])([0-9]{2}):?([0-9]{2}))?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_MS_FROM = 100_000_000_000
_MAX_FUTURE = timedelta(minutes=5)
_MAX_PAST = timedelta(days=365)


def _parse_iso(s: str) -> datetime | None:
    """``None`` = syntax error. Raises OverflowError when the offset pushes the instant past year 1..9999."""
    m = _ISO.fullmatch(s)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, z, sign, oh, om = m.groups()
    micro = int(frac[:6].ljust(6, "0")) if frac else 0  # cut, not rounded: API-43
    try:
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=UTC)
    except ValueError:
        return None
    if z is None and sign is not None:
        hours, minutes = int(oh), int(om)
        if hours > 23 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes)
        # The wall time was read as UTC; subtracting the offset gives the real instant.
        dt = dt - offset if sign == "+" else dt + offset
    return dt


def timestamp(
    field: str, v: object, now: datetime, errors: list[str], warnings: list[str]
) -> datetime | None:
    """API-43. ``now`` is the tz-aware receive time; ``None`` = absent (caller uses ``now``) or invalid.

    Seconds vs milliseconds is decided by magnitude (>= 1e11 is ms, i.e. after 1973-03-03 in ms and
    beyond year 5138 in seconds), the convention of Segment and the SDKs."""
    if v is None:
        return None
    dt: datetime | None
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        try:
            dt = _parse_iso(s)
        except OverflowError:
            # Only year 1 / year 9999 with an offset get here: hopelessly past or future either way.
            errors.append(_ts_range_message(field, v, future=s[:4] != "0001"))
            return None
    elif isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        try:
            if v >= _EPOCH_MS_FROM:
                dt = _EPOCH + timedelta(milliseconds=v)
            else:
                dt = _EPOCH + timedelta(seconds=v)
        except OverflowError:
            errors.append(_ts_range_message(field, v, future=v > 0))
            return None
    else:
        dt = None
    if dt is None:
        errors.append(
            f"{field} must be an ISO 8601 date-time (e.g. 2026-11-27T10:15:00Z) "
            f"or Unix epoch seconds/milliseconds, got {render_value(v)}"
        )
        return None
    if dt > now:
        if dt - now > _MAX_FUTURE:
            errors.append(_ts_range_message(field, v, future=True))
            return None
        warnings.append(WARN_TIMESTAMP_CLAMPED)
        return now.astimezone(UTC)
    if now - dt > _MAX_PAST:
        errors.append(_ts_range_message(field, v, future=False))
        return None
    return dt


def _ts_range_message(field: str, v: object, future: bool) -> str:
    if future:
        return f"{field} is more than 5 minutes in the future, got {render_value(v)}"
    return f"{field} is more than 365 days in the past, got {render_value(v)}"


# --------------------------------------------------------------------------------------------- booleans

_TRUE_STRINGS = frozenset({"true", "1"})
_FALSE_STRINGS = frozenset({"false", "0"})


def boolean(field: str, v: object, errors: list[str]) -> bool | None:
    """Booleans of §5: SDKs and form-minded clients send ``"true"`` or ``1`` as often as ``true``."""
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        if v == 1:
            return True
        if v == 0:
            return False
    elif isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE_STRINGS:
            return True
        if s in _FALSE_STRINGS:
            return False
    errors.append(f"{field} must be true or false, got {render_value(v)}")
    return None


# ------------------------------------------------------------------------------------------------- urls

_HAS_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def url_field(field: str, v: object, warnings: list[str]) -> str | None:
    """``url`` / ``referrer`` (API-36, API-46). Never an error: a bad URL must not cost the event.

    Only ``referrer`` gets ``https://`` when scheme-less (``//host`` gets just ``https:``); a scheme is
    ``name://`` so that ``example.com:8080/x`` is not mistaken for one. Non-strings are ignored with a
    warning."""
    if v is None:
        return None
    if not isinstance(v, str):
        warnings.append(f"{field} ignored: must be a string, got {type_name(v)}")
        return None
    s = v.strip()
    if not s:
        return None
    if field == "referrer" and _HAS_SCHEME.match(s) is None:
        s = "https:" + s if s.startswith("//") else "https://" + s
    if len(s) > URL_MAX:
        warnings.append(f"{field} truncated to {URL_MAX} characters")
        s = s[:URL_MAX]
    return s


# ----------------------------------------------------------------------------------- properties / traits

_UNCOUNTED_PROPERTY_KEYS = frozenset({"url", "referrer", "funnel"})
_NO_UNCOUNTED: frozenset[str] = frozenset()


class _TooDeep(Exception):
    pass


def _scan(node: dict[str, object] | list[object], depth: int) -> tuple[int, int]:
    """Depth check, bad-key count and out-of-range number count in one pass. Recursion is bounded by
    PROPERTY_DEPTH_MAX + 1."""
    if depth > PROPERTY_DEPTH_MAX:
        raise _TooDeep
    bad = numbers = 0
    children = node.values() if isinstance(node, dict) else node
    if isinstance(node, dict):
        bad = sum(1 for k in node if not k or len(k) > NAME_MAX)
    for child in children:
        if isinstance(child, dict | list):
            child_bad, child_numbers = _scan(child, depth + 1)
            bad += child_bad
            numbers += child_numbers
        elif out_of_range(child):
            numbers += 1
    return bad, numbers


def _cleaned(node: object, drop_keys: bool) -> object:
    """A copy without bad keys (when ``drop_keys``) and with API-47-D1 numbers as strings."""
    if isinstance(node, dict):
        return {k: _cleaned(c, drop_keys) for k, c in node.items() if not drop_keys or (k and len(k) <= NAME_MAX)}
    if isinstance(node, list):
        return [_cleaned(c, drop_keys) for c in node]
    if isinstance(node, int | float) and not isinstance(node, bool):
        return plain_number(node)
    return node


def properties(field: str, v: object, errors: list[str], warnings: list[str]) -> dict[str, object]:
    """API-47 with the caps of API-34 (``field="properties"``) / API-35 (``field="traits"``).

    Steps: ``[]``/``null`` -> ``{}``; an object under the key named like the field itself is merged in
    (outer keys win, outer document order first); depth check (error, result ``{}``); keys empty or longer
    than 255 dropped at every depth; numbers outside the signed 64-bit range turned into strings (API-47-D1,
    with a warning); top-level key cap (``url``, ``referrer``, ``funnel`` exempt for properties). May return
    ``v`` itself when nothing changes, so callers must not mutate the input expecting a copy. Email hashing
    (ID-11) is not done here.
    """
    if v is None:
        return {}
    if not isinstance(v, dict):
        if isinstance(v, list) and not v:
            return {}
        errors.append(f"{field} must be an object, got {type_name(v)}")
        return {}
    obj: dict[str, object] = v
    nested = obj.get(field)
    if isinstance(nested, dict):
        merged = {k: x for k, x in obj.items() if k != field}
        for k, x in nested.items():
            merged.setdefault(k, x)
        obj = merged
    try:
        bad, numbers = _scan(obj, 1)
    except _TooDeep:
        errors.append(f"{field} nesting exceeds maximum depth of {PROPERTY_DEPTH_MAX}")
        return {}
    if bad or numbers:
        obj = cast("dict[str, object]", _cleaned(obj, drop_keys=bool(bad)))
    if bad:
        warnings.append(f"{field}: dropped {bad} keys longer than {NAME_MAX} characters or empty")
    if numbers:
        warnings.append(f"{field}: stored {numbers} numbers outside the signed 64-bit range as strings")
    if len(obj) > PROPERTY_KEYS_MAX:
        exempt = _UNCOUNTED_PROPERTY_KEYS if field == "properties" else _NO_UNCOUNTED
        counted = [k for k in obj if k not in exempt]
        if len(counted) > PROPERTY_KEYS_MAX:
            keep = set(counted[:PROPERTY_KEYS_MAX])
            obj = {k: x for k, x in obj.items() if k in keep or k in exempt}
            warnings.append(
                f"{field}: kept first {PROPERTY_KEYS_MAX} of {len(counted)} keys, dropped the rest"
            )
    return obj


def event_size_ok(event_obj: object, errors: list[str]) -> bool:
    """API-32: measured on the compact UTF-8 re-serialization, so whitespace in the request is free."""
    try:
        n = len(orjson.dumps(event_obj))
    except (TypeError, orjson.JSONEncodeError):  # only for values no JSON body can produce
        n = len(repr(event_obj).encode("utf-8", "surrogatepass"))
    if n > EVENT_MAX_BYTES:
        errors.append(f"event is {n} bytes; the maximum is {EVENT_MAX_BYTES} bytes")
        return False
    return True


# --------------------------------------------------------------------------------------------- server ids

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_VALUE = {c: i for i, c in enumerate(_CROCKFORD)} | {
    c.lower(): i for i, c in enumerate(_CROCKFORD)
}
# First character at most 7: 26 base-32 characters carry 130 bits, a ULID only 128.
_ULID_TEXT = re.compile(r"[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}")


def normalize_server_id(prefix: str, v: object) -> str | None:
    """API-5: ids come back from clients in any case; ``None`` when ``v`` is not an id of that kind (the
    caller answers as for an unknown id, API-14). The prefix is matched case-insensitively too."""
    if not isinstance(v, str):
        return None
    p = prefix.rstrip("_") + "_"
    s = v.strip()
    n = len(p)
    if len(s) != n + 26 or s[:n].lower() != p.lower():
        return None
    body = s[n:]
    if _ULID_TEXT.fullmatch(body) is None:
        return None
    return p + body.upper()


def ulid_time(id: str) -> datetime:
    """Creation time embedded in a server id (the first 48 bits of the ULID), tz-aware UTC, ms precision.

    Accepts a prefixed or bare ULID in any case; raises ValueError for anything else."""
    body = id.rpartition("_")[2]
    if _ULID_TEXT.fullmatch(body) is None:
        raise ValueError(f"not a ULID: {id!r}")
    ms = 0
    for c in body[:10]:
        ms = ms * 32 + _CROCKFORD_VALUE[c]
    return _EPOCH + timedelta(milliseconds=ms)


_IDEMPOTENCY_HEADER = re.compile(r"[\x20-\x7e]{1,255}")


def idempotency_header(v: str | None) -> str | None:
    """API-56. ``None`` = header absent. Raises :class:`BodyError` (400) because a bad key invalidates the
    whole request, like a bad body. The value is used as sent: keys are case-sensitive and exact."""
    if v is None:
        return None
    if _IDEMPOTENCY_HEADER.fullmatch(v) is None:
        raise BodyError(400, MSG_IDEMPOTENCY_HEADER)
    return v
