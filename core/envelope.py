"""Connector commands (shopify.md SHP-1 envelope) turned into the core commands the processors take.

Connectors (Shopify, sGTM) describe what they append as plain envelopes with business keys and RFC 3339
times, which fixtures compare directly; this is the one place that maps them onto core commands. The mapping
is the same for every source: what one source means differently (the Shopify pixel's sessions and referrers,
SES-7) the connector of that source applies to the commands it gets back (issue 18 item 2).
"""

from __future__ import annotations

from collections.abc import Sequence
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


def command_from_envelope(cmd: dict[str, Any], received: datetime) -> Command:
    """A connector command (SHP-1 envelope) as the core command the processors take."""
    kind = cmd["kind"]
    props = dict(cmd.get("properties") or {})
    identifier = cmd.get("identifier") or {}
    source, origin = cmd.get("source"), cmd.get("origin")
    if kind == "session":
        return TouchCommand(id=new_id("cmd"), visitor_key=cmd["visitor_id"], client_session_id=cmd["idempotency_key"],
                            occurred_at=_at(cmd["occurred_at"]), received_at=received, url=cmd.get("url"),
                            referrer=cmd.get("referrer"), user_agent=cmd.get("user_agent"),
                            fingerprint=cmd.get("device_fingerprint"), idempotency_key=cmd["idempotency_key"],
                            source=source, origin=origin)
    if kind == "event":
        return EventCommand(id=new_id("evt", received), event_type=cmd["event_type"],
                            occurred_at=_at(cmd["occurred_at"]), received_at=received,
                            visitor_key=cmd.get("visitor_id"), user_key=cmd.get("user_id"), url=cmd.get("url"),
                            referrer=cmd.get("referrer"), user_agent=cmd.get("user_agent"),
                            fingerprint=cmd.get("device_fingerprint"), properties=props,
                            idempotency_key=cmd["idempotency_key"],
                            sdk_name=source, source=source, origin=origin)
    if kind == "identify":
        return IdentifyCommand(id=new_id("cmd"), user_key=cmd["user_id"], occurred_at=_at(cmd["occurred_at"]),
                               received_at=received, visitor_key=cmd.get("visitor_id"),
                               traits=dict(cmd.get("traits") or {}), email_sha256=identifier.get("email_sha256"),
                               phone_sha256=identifier.get("phone_sha256"), idempotency_key=cmd["idempotency_key"],
                               origin=origin)
    if kind == "conversion":
        return ConversionCommand(id=new_id("conv", received), conversion_type=cmd["conversion_type"],
                                 received_at=received, converted_at=_at(cmd["converted_at"]),
                                 visitor_key=cmd.get("visitor_id"), user_key=cmd.get("user_id"),
                                 email_sha256=identifier.get("email_sha256"),
                                 revenue_minor=_minor(cmd.get("revenue"), cmd.get("currency")),
                                 currency=cmd.get("currency"), is_acquisition=bool(cmd.get("is_acquisition")),
                                 inherit_acquisition=bool(cmd.get("inherit_acquisition")),
                                 properties=props, idempotency_key=cmd["idempotency_key"],
                                 fingerprint=cmd.get("device_fingerprint"), source=source, origin=origin)
    if kind == "order_adjustment":
        return OrderAdjustmentCommand(id=new_id("cmd"), idempotency_key=cmd["idempotency_key"],
                                      conversion_key=cmd["conversion_key"], adjustment=cmd["adjustment"],
                                      occurred_at=_at(cmd["occurred_at"]), received_at=received,
                                      amount=cmd.get("amount"), currency=cmd.get("currency"), properties=props,
                                      origin=origin)
    if kind == "redact":
        return RedactCommand(id=new_id("cmd"), idempotency_key=cmd["idempotency_key"], scope=cmd["scope"],
                             occurred_at=received, received_at=received, user_key=cmd.get("user_id"),
                             email_sha256=cmd.get("email_sha256"),
                             conversion_keys=list(cmd.get("conversion_keys") or []),
                             tombstone=cmd.get("tombstone"), origin=origin)
    if kind == "sgtm_order_link":
        held = {k: v for k, v in cmd.items() if k not in ("transaction_id", "ga_client_id", "hold_until")}
        held.update(kind="conversion", converted_at=held.pop("occurred_at"))
        return OrderLinkCommand(id=new_id("cmd"), idempotency_key=cmd["idempotency_key"],
                                transaction_id=str(cmd["transaction_id"]), occurred_at=_at(cmd["occurred_at"]),
                                received_at=received, hold_until=_at(cmd["hold_until"]),
                                visitor_key=cmd.get("visitor_id"), ga_client_id=cmd.get("ga_client_id"),
                                conversion=held, origin=origin)
    raise ValueError(f"no core command for {kind}")


def commands_from_envelopes(envelopes: Sequence[dict[str, Any]], received: datetime) -> list[Command]:
    """What a connector appends, in its order: the one door through which connector envelopes enter the core.

    Connectors call it through the module (`core.envelope.commands_from_envelopes`), so test tooling that compares
    the envelopes a connector appended (the fixture runner, tools/fixtures.py) can watch this one function from
    the outside; the product carries no recording hook (issue 18 item 6)."""
    return [command_from_envelope(envelope, received) for envelope in envelopes]
