"""Core commands: what every source (API, Shopify, sGTM) is normalized into before it reaches the log.

A command is already validated and cleaned at the edge (ids assigned, IP masked, emails hashed), so processors
never see raw client input and the raw IP never reaches the log (FP-1). Commands are plain, serializable
records: the inline backend hands them straight to the processors, a queued backend stores them.

Every command scrubs itself when it is built (``__post_init__``, :mod:`core.privacy`, quality.md Q-45): this is
the one choke point every source goes through (REST API, sGTM, Shopify, the demo, a worker reading the stream),
so no raw e-mail or IP address reaches the log, a Redis idempotency key or a table. Scrubbing is idempotent, so
rebuilding a command from the stream changes nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from core.privacy import scrub_envelope, scrub_identifier, scrub_json, scrub_name, scrub_text, scrub_url

USER_AGENT_MAX = 1024  # the stored column's width (api.md API-45)


def _text(value: str | None, limit: int | None = None) -> str | None:
    """Free text scrubbed, then kept within its column: a hash is longer than the shortest address it replaces."""
    return None if value is None else scrub_text(value)[:limit]


def _postal_code(value: str | None) -> str | None:
    """A postal code holding an e-mail or IP address is no postal code: dropped rather than stored hashed."""
    return value if value is None or scrub_text(value) == value else None


def _utm(values: dict[str, str]) -> dict[str, str]:
    return {key: scrub_text(value) if isinstance(value, str) else value for key, value in values.items()}


@dataclass(slots=True)
class TouchCommand:
    """A ``POST /sessions`` navigation touch."""

    kind: ClassVar[str] = "touch"
    id: str
    visitor_key: str
    client_session_id: str | None  # None: resolution is server-side only (sgtm.md SGTM-36)
    occurred_at: datetime
    received_at: datetime
    url: str | None = None
    referrer: str | None = None
    user_agent: str | None = None
    fingerprint: str | None = None
    user_key: str | None = None
    explicit_utm: dict[str, str] = field(default_factory=dict)
    country: str | None = None
    postal_code: str | None = None
    fbp: str | None = None
    fbc: str | None = None
    idempotency_key: str | None = None
    source: str | None = None  # connectors: shopify_webhook | shopify_pixel | sgtm (shopify.md SHP-1)
    origin: str | None = None  # connectors: e.g. shopify:{installation}; stored on the rows it creates

    def __post_init__(self) -> None:
        self.visitor_key, self.user_key = scrub_identifier(self.visitor_key), scrub_identifier(self.user_key)
        self.client_session_id = scrub_identifier(self.client_session_id)
        self.idempotency_key = scrub_identifier(self.idempotency_key)
        self.url, self.referrer = scrub_url(self.url), scrub_url(self.referrer)
        self.user_agent = _text(self.user_agent, USER_AGENT_MAX)
        self.explicit_utm, self.postal_code = _utm(self.explicit_utm), _postal_code(self.postal_code)
        self.fbp, self.fbc = scrub_identifier(self.fbp), scrub_identifier(self.fbc)


@dataclass(slots=True)
class EventCommand:
    kind: ClassVar[str] = "event"
    id: str
    event_type: str
    occurred_at: datetime
    received_at: datetime
    visitor_key: str | None = None
    user_key: str | None = None
    email_sha256: str | None = None
    client_session_id: str | None = None
    funnel: str | None = None
    url: str | None = None
    referrer: str | None = None
    user_agent: str | None = None
    fingerprint: str | None = None
    explicit_utm: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    sdk_name: str | None = None
    sdk_version: str | None = None
    source: str | None = None
    origin: str | None = None

    def __post_init__(self) -> None:
        self.event_type = scrub_name(self.event_type)
        self.visitor_key, self.user_key = scrub_identifier(self.visitor_key), scrub_identifier(self.user_key)
        self.client_session_id = scrub_identifier(self.client_session_id)
        self.idempotency_key, self.funnel = scrub_identifier(self.idempotency_key), scrub_name(self.funnel)
        self.url, self.referrer = scrub_url(self.url), scrub_url(self.referrer)
        self.user_agent = _text(self.user_agent, USER_AGENT_MAX)
        self.explicit_utm, self.properties = _utm(self.explicit_utm), scrub_json(self.properties)
        self.sdk_name, self.sdk_version = _text(self.sdk_name, 64), _text(self.sdk_version, 32)


@dataclass(slots=True)
class ConversionCommand:
    kind: ClassVar[str] = "conversion"
    id: str
    conversion_type: str
    received_at: datetime
    converted_at: datetime | None  # None: take the event's time, else the receive time (API-92)
    event_id: str | None = None
    visitor_key: str | None = None
    user_key: str | None = None
    email_sha256: str | None = None
    revenue_minor: int | None = None
    currency: str | None = None  # None: the account's default currency
    is_acquisition: bool = False
    inherit_acquisition: bool = False
    funnel: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    fingerprint: str | None = None
    warnings: list[str] = field(default_factory=list)
    source: str | None = None
    origin: str | None = None

    def __post_init__(self) -> None:
        self.conversion_type = scrub_name(self.conversion_type)
        self.visitor_key, self.user_key = scrub_identifier(self.visitor_key), scrub_identifier(self.user_key)
        self.idempotency_key, self.funnel = scrub_identifier(self.idempotency_key), scrub_name(self.funnel)
        self.properties, self.warnings = scrub_json(self.properties), scrub_json(self.warnings)


@dataclass(slots=True)
class IdentifyCommand:
    kind: ClassVar[str] = "identify"
    id: str
    user_key: str
    occurred_at: datetime
    received_at: datetime
    visitor_key: str | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    deleted_traits: list[str] = field(default_factory=list)
    email_sha256: str | None = None
    phone_sha256: str | None = None
    idempotency_key: str | None = None  # connectors: an identify is applied once per key (sgtm.md SGTM-25)
    origin: str | None = None  # connectors: stored on an identity it creates (shopify.md SHP-89)

    def __post_init__(self) -> None:
        self.user_key = scrub_identifier(self.user_key)
        self.visitor_key, self.traits = scrub_identifier(self.visitor_key), scrub_json(self.traits)
        self.idempotency_key = scrub_identifier(self.idempotency_key)


@dataclass(slots=True)
class OrderAdjustmentCommand:
    """A refund or cancellation of a conversion named by its key (attribution.md ATT-38, shopify.md SHP-60).

    Connectors emit it (Shopify refunds and cancellations, sGTM refunds); ``conversion_key`` is the
    conversion's idempotency key, so an adjustment can arrive before its conversion.
    """

    kind: ClassVar[str] = "order_adjustment"
    id: str
    idempotency_key: str
    conversion_key: str
    adjustment: str  # refund | cancel
    occurred_at: datetime
    received_at: datetime
    amount: str | None = None  # refund only: a decimal string >= 0 in the conversion's currency
    currency: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    visitor_key: None = None  # adjustments name no visitor (the batch locks visitors by this field)
    origin: str | None = None

    def __post_init__(self) -> None:
        self.idempotency_key = scrub_identifier(self.idempotency_key)
        self.conversion_key = scrub_identifier(self.conversion_key)
        self.properties = scrub_json(self.properties)


@dataclass(slots=True)
class RedactCommand:
    """A privacy erasure (shopify.md SHP-88, SHP-89), applied once per key.

    ``scope = identity``: the identity ``user_key`` is tombstoned as ``tombstone`` (computed at the edge, which
    holds the server secret), loses its traits and e-mail hash and its visitors; the named conversions lose
    what identifies a person. ``scope = origin``: every row a connector origin created is deleted.
    """

    kind: ClassVar[str] = "redact"
    id: str
    idempotency_key: str
    scope: str  # identity | origin
    occurred_at: datetime
    received_at: datetime
    user_key: str | None = None
    email_sha256: str | None = None
    conversion_keys: list[str] = field(default_factory=list)
    tombstone: str | None = None
    origin: str | None = None
    visitor_key: None = None

    def __post_init__(self) -> None:
        self.idempotency_key = scrub_identifier(self.idempotency_key)
        self.user_key = scrub_identifier(self.user_key)
        self.conversion_keys = [scrub_identifier(key) for key in self.conversion_keys]


@dataclass(slots=True)
class OrderLinkCommand:
    """An sGTM purchase on an account that also uses Shopify (sgtm.md SGTM-30..SGTM-32).

    Shopify is the revenue source there, so the purchase does not become a conversion of its own: it is held
    as a link to the Shopify order with the same transaction id, which gives that order its visitor. Only if no
    order arrives by ``hold_until`` is ``conversion`` (the connector envelope of the conversion the purchase
    would have been) emitted as a normal conversion.
    """

    kind: ClassVar[str] = "sgtm_order_link"
    id: str
    idempotency_key: str  # the conversion key the purchase would have (SGTM-26)
    transaction_id: str
    occurred_at: datetime
    received_at: datetime
    hold_until: datetime
    visitor_key: str | None = None
    ga_client_id: str | None = None
    conversion: dict[str, Any] = field(default_factory=dict)
    origin: str | None = None

    def __post_init__(self) -> None:
        self.idempotency_key = scrub_identifier(self.idempotency_key)
        self.transaction_id = scrub_identifier(self.transaction_id)
        self.visitor_key, self.ga_client_id = scrub_identifier(self.visitor_key), scrub_identifier(self.ga_client_id)
        self.conversion = scrub_envelope(self.conversion)


Command = (TouchCommand | EventCommand | ConversionCommand | IdentifyCommand | OrderAdjustmentCommand | RedactCommand
           | OrderLinkCommand)

COMMAND_TYPES: dict[str, type[Command]] = {
    c.kind: c for c in (TouchCommand, EventCommand, ConversionCommand, IdentifyCommand, OrderAdjustmentCommand,
                        RedactCommand, OrderLinkCommand)
}


def command_to_dict(command: Command) -> dict[str, Any]:
    """The command as JSON-ready data, for the log. Shallow: nested values are the command's own (the caller
    serialises them at once); ``dataclasses.asdict``'s deep copy was most of an append's own work (issue 17;
    ``bench/append.py``)."""
    kind = command.kind
    data = {name: getattr(command, name) for name in _FIELD_NAMES[kind]}
    data["kind"] = kind
    for name in _DATETIME_FIELDS[kind]:
        value = data[name]
        if isinstance(value, datetime):
            data[name] = value.isoformat()
    return data


# kind -> the names of its datetime fields, worked out once (decoding runs for every drained command)
_DATETIME_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(f.name for f in dataclasses.fields(cls) if "datetime" in str(f.type))
    for kind, cls in COMMAND_TYPES.items()
}


# kind -> its field names, each mapped to itself. A decoded JSON object's keys are equal to the field names but not
# the same (interned) string objects, and a keyword call with such keys compares every key with the parameter names
# character by character: keyed through this table, the constructor call costs half (issue 16's profile).
_FIELD_NAMES: dict[str, dict[str, str]] = {
    kind: {f.name: f.name for f in dataclasses.fields(cls)} for kind, cls in COMMAND_TYPES.items()
}


def command_from_dict(data: dict[str, Any]) -> Command:
    kind = data["kind"]
    cls = COMMAND_TYPES[kind]
    names = _FIELD_NAMES[kind]
    values = {names.get(key, key): value for key, value in data.items() if key != "kind"}
    for key in _DATETIME_FIELDS[kind]:
        value = values.get(key)
        if isinstance(value, str):
            values[key] = datetime.fromisoformat(value)
    return cls(**values)


@dataclass(slots=True)
class CommandResult:
    """What a processor answers for one command; ``body`` is endpoint-specific (conversion, identify)."""

    command_id: str
    status: str = "processed"  # processed | duplicate | rejected | replayed | failed | waiting (API-93)
    result_id: str | None = None
    body: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
