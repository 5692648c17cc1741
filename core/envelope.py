"""Connector commands (shopify.md SHP-1 envelope) turned into the core commands the processors take.

Connectors (Shopify, sGTM) describe what they append as plain envelopes with business keys and RFC 3339
times, which fixtures compare directly; this is the one place that maps them onto core commands. The mapping
is the same for every source: what one source means differently (the Shopify pixel's sessions and referrers,
SES-7) the connector of that source applies to the commands it gets back (issue 18 item 2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from core.commands import (
    Command,
    ConversionCommand,
    EventCommand,
    IdentifyCommand,
    OrderAdjustmentCommand,
    OrderLinkCommand,
    RedactCommand,
    TouchCommand,
)
from core.ids import new_id
from core.money import currency_exponent, parse_revenue

__all__ = ["command_from_envelope", "commands_from_envelopes"]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _minor(amount: str | None, currency: str | None) -> int | None:
    if amount is None:
        return None
    parsed = parse_revenue(amount, currency_exponent(currency) if currency else 2)
    return parsed.minor


# Envelope kinds and the command each becomes; a command's own field list (core.commands) says what it carries.
_COMMAND_OF: dict[str, type[Command]] = {
    "session": TouchCommand, "event": EventCommand, "conversion": ConversionCommand, "identify": IdentifyCommand,
    "order_adjustment": OrderAdjustmentCommand, "redact": RedactCommand, "sgtm_order_link": OrderLinkCommand,
}
_ID_PREFIX = {"event": "evt", "conversion": "conv"}  # time-ordered ids; the rest are `cmd_` ids
# The three envelope names that differ from the commands' (envelopes speak the REST API's names, SHP-1).
_RENAMED = {"visitor_id": "visitor_key", "user_id": "user_key", "device_fingerprint": "fingerprint"}
_TIMES = frozenset({"occurred_at", "converted_at", "hold_until"})
_FIELDS = {cls: frozenset(f.name for f in dataclasses.fields(cls)) - {"id", "received_at"}
           for cls in _COMMAND_OF.values()}


def command_from_envelope(cmd: dict[str, Any], received: datetime) -> Command:
    """A connector command (SHP-1 envelope) as the core command the processors take: every envelope value whose
    name is one of the command's fields is carried over (times parsed), then what the envelope says in its own
    words is derived (an identifier's hashes, revenue in minor units, a held purchase)."""
    kind = cmd["kind"]
    cls = _COMMAND_OF.get(kind)
    if cls is None:
        raise ValueError(f"no core command for {kind}")
    fields = _FIELDS[cls]
    values: dict[str, Any] = {}
    for name, value in cmd.items():
        field = _RENAMED.get(name, name)
        if field in fields and value is not None:
            values[field] = _at(value) if field in _TIMES else value
    values.update(_DERIVED[kind](cmd, received))
    prefix = _ID_PREFIX.get(kind)
    command_id = new_id(prefix, received) if prefix else new_id("cmd")
    return cls(id=command_id, received_at=received, **values)


def _identifier(cmd: dict[str, Any], *hashes: str) -> dict[str, Any]:
    identifier = cmd.get("identifier") or {}
    return {k: identifier[k] for k in hashes if identifier.get(k) is not None}


def _session(cmd: dict[str, Any], _received: datetime) -> dict[str, Any]:
    return {"client_session_id": cmd["idempotency_key"]}


def _event(cmd: dict[str, Any], _received: datetime) -> dict[str, Any]:
    return {"sdk_name": cmd.get("source")}


def _conversion(cmd: dict[str, Any], _received: datetime) -> dict[str, Any]:
    return {"revenue_minor": _minor(cmd.get("revenue"), cmd.get("currency")),
            "is_acquisition": bool(cmd.get("is_acquisition")),
            "inherit_acquisition": bool(cmd.get("inherit_acquisition")), **_identifier(cmd, "email_sha256")}


def _identify(cmd: dict[str, Any], _received: datetime) -> dict[str, Any]:
    return _identifier(cmd, "email_sha256", "phone_sha256")


def _redact(_cmd: dict[str, Any], received: datetime) -> dict[str, Any]:
    return {"occurred_at": received}


def _order_link(cmd: dict[str, Any], _received: datetime) -> dict[str, Any]:
    held = {k: v for k, v in cmd.items() if k not in ("transaction_id", "ga_client_id", "hold_until")}
    held.update(kind="conversion", converted_at=held.pop("occurred_at"))
    return {"transaction_id": str(cmd["transaction_id"]), "conversion": held}


_DERIVED: dict[str, Callable[[dict[str, Any], datetime], dict[str, Any]]] = {
    "session": _session, "event": _event, "conversion": _conversion, "identify": _identify,
    "order_adjustment": lambda _cmd, _received: {}, "redact": _redact, "sgtm_order_link": _order_link,
}


def commands_from_envelopes(envelopes: Sequence[dict[str, Any]], received: datetime) -> list[Command]:
    """What a connector appends, in its order: the one door through which connector envelopes enter the core.

    Connectors call it through the module (`core.envelope.commands_from_envelopes`), so test tooling that compares
    the envelopes a connector appended (the fixture runner, tools/fixtures.py) can watch this one function from
    the outside; the product carries no recording hook (issue 18 item 6)."""
    return [command_from_envelope(envelope, received) for envelope in envelopes]
