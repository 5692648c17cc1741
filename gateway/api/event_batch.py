"""The events of one `POST /api/v1/events` request (api.md API-80..API-89): the items of its body, their commands
and rejections, and the answer's body.

Framework-free, so the Flask view and the lean path of plain event posts (gateway.api.lean; docs/api.md
API-80-D1) build their answers from the same code and cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from core.commands import CommandResult, EventCommand, TouchCommand
from gateway.api import normalize
from gateway.api.body import BodyError

MAX_EVENTS = 500
_SDK = re.compile(r"([A-Za-z0-9_.-]+)/([0-9A-Za-z_.+-]+)")

C = TypeVar("C", TouchCommand, EventCommand)


def sdk_of(user_agent: str) -> tuple[str | None, str | None]:
    """The SDK name and version a ``User-Agent`` such as ``mbuzz-python/0.3.1`` names (API-86)."""
    match = _SDK.match(user_agent)
    return (match.group(1)[:64], match.group(2)[:32]) if match else (None, None)


def server_side_sessions(command: C, user_agent: str) -> C:
    """sgtm.md SGTM-36: the published v1 sGTM template sends a fixed 30-minute bucket as `session_id`; for its
    requests session resolution stays server-side, so the client id binds nothing (SES-9)."""
    if user_agent.startswith("mbuzz-sgtm/1."):
        return dataclasses.replace(command, client_session_id=None)
    return command


def event_items(value: Any) -> list[Any]:
    """API-80 body forms, tried in order."""
    if isinstance(value, list):
        return value
    if not isinstance(value, dict):
        raise BodyError(400, "Request body must be a JSON object")
    if "events" in value:
        inner = value["events"]
        if isinstance(inner, list):
            return inner
        if isinstance(inner, dict):
            return [inner]
        raise BodyError(400, "events must be an array of event objects")
    if isinstance(value.get("event"), dict):
        return [value["event"]]
    if "event_type" in value:
        return [value]
    raise BodyError(400, "Missing 'events' parameter")


@dataclasses.dataclass(frozen=True, slots=True)
class EventBatch:
    items: list[Any]
    built: list[normalize.Built]
    warnings: list[str]  # the whole body's (API-24: NUL characters removed)
    user_agent: str

    @property
    def commands(self) -> list[EventCommand]:
        return [server_side_sessions(b.command, self.user_agent) for b in self.built if b.command is not None]

    def rejected(self) -> Iterator[tuple[int, Any, list[str]]]:
        """(index, item, errors) of each item without a command."""
        for index, (item, b) in enumerate(zip(self.items, self.built, strict=True)):
            if b.command is None:
                yield index, item, b.errors

    def answer(self, results: Sequence[CommandResult]) -> dict[str, Any]:
        """API-81's body: one entry per item, ``results`` being the log's, one per command in order."""
        remaining = iter(results)
        accepted: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for index, (item, b) in enumerate(zip(self.items, self.built, strict=True)):
            if b.command is None:
                name = item.get("event_type") if isinstance(item, dict) else None
                rejected.append({"index": index, "event_type": name if isinstance(name, str) else None,
                                 "status": "rejected", "errors": b.errors})
                continue
            result = next(remaining)
            entry: dict[str, Any] = {
                "index": index,
                "id": result.result_id or b.command.id,
                "event_type": b.command.event_type,
                "visitor_id": b.command.visitor_key,
                "session_id": b.command.client_session_id,
                "status": "accepted",
                "duplicate": result.status == "duplicate",
            }
            item_warnings = self.warnings + b.warnings
            if item_warnings:
                entry["warnings"] = item_warnings
            accepted.append(entry)
        return {"accepted": len(accepted), "rejected": rejected, "events": accepted}


def event_batch(value: Any, warnings: list[str], header_key: str | None, now: datetime,
                user_agent: str) -> EventBatch:
    """The request's events, each built into its command or its errors; raises ``BodyError`` for the whole-request
    errors (API-80's forms, none, more than ``MAX_EVENTS``)."""
    items = event_items(value)
    if not items:
        raise BodyError(400, "events must contain at least one event")
    if len(items) > MAX_EVENTS:
        raise BodyError(413, f"Too many events in one request: {len(items)} (maximum {MAX_EVENTS})")
    sdk = sdk_of(user_agent)
    built = [normalize.build_event(item, i, now, header_key, sdk) for i, item in enumerate(items)]
    return EventBatch(items, built, warnings, user_agent)
