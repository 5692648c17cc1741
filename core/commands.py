"""Core commands: what every source (API, Shopify, sGTM) is normalized into before it reaches the log.

A command is already validated and cleaned at the edge (ids assigned, IP masked, emails hashed), so processors
never see raw client input and the raw IP never reaches the log (FP-1). Commands are plain, serializable
records: the inline backend hands them straight to the processors, a queued backend stores them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar


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


Command = (TouchCommand | EventCommand | ConversionCommand | IdentifyCommand | OrderAdjustmentCommand | RedactCommand
           | OrderLinkCommand)

COMMAND_TYPES: dict[str, type[Command]] = {
    c.kind: c for c in (TouchCommand, EventCommand, ConversionCommand, IdentifyCommand, OrderAdjustmentCommand,
                        RedactCommand, OrderLinkCommand)
}


def command_to_dict(command: Command) -> dict[str, Any]:
    data = dataclasses.asdict(command)
    data["kind"] = command.kind
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    return data


def command_from_dict(data: dict[str, Any]) -> Command:
    data = dict(data)
    cls = COMMAND_TYPES[data.pop("kind")]
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if isinstance(value, str) and "datetime" in str(hints.get(key, "")):
            data[key] = datetime.fromisoformat(value)
    return cls(**data)


@dataclass(slots=True)
class CommandResult:
    """What a processor answers for one command; ``body`` is endpoint-specific (conversion, identify)."""

    command_id: str
    status: str = "processed"  # processed | duplicate | rejected | replayed | failed | waiting (API-93)
    result_id: str | None = None
    body: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
