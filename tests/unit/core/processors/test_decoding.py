"""Decoding commands from the log (core.commands.command_from_dict): every kind round-trips through JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from core.commands import (
    Command,
    ConversionCommand,
    EventCommand,
    IdentifyCommand,
    OrderAdjustmentCommand,
    OrderLinkCommand,
    RedactCommand,
    TouchCommand,
    command_from_dict,
    command_to_dict,
)

T0 = datetime(2026, 12, 1, 9, 0, 0, 123_456, tzinfo=UTC)

COMMANDS: list[Command] = [
    TouchCommand(id="cmd_1", visitor_key="v", client_session_id="c", occurred_at=T0, received_at=T0,
                 url="https://a.example/?utm_source=x", explicit_utm={"utm_medium": "cpc"}, country="DE"),
    EventCommand(id="evt_1", event_type="add_to_cart", occurred_at=T0, received_at=T0 + timedelta(seconds=1),
                 visitor_key="v", properties={"n": [1, 2.5, None], "s": "é"}, funnel="f", sdk_name="ruby"),
    ConversionCommand(id="conv_1", conversion_type="purchase", received_at=T0, converted_at=None, visitor_key="v",
                      revenue_minor=1999, currency="EUR", is_acquisition=True, warnings=["w"]),
    IdentifyCommand(id="cmd_2", user_key="u", occurred_at=T0, received_at=T0, visitor_key="v",
                    traits={"plan": "pro"}, deleted_traits=["old"]),
    OrderAdjustmentCommand(id="cmd_3", idempotency_key="k:refund", conversion_key="k", adjustment="refund",
                           occurred_at=T0, received_at=T0, amount="10.00", currency="EUR"),
    RedactCommand(id="cmd_4", idempotency_key="r", scope="identity", occurred_at=T0, received_at=T0, user_key="u",
                  conversion_keys=["a", "b"], tombstone="t"),
    OrderLinkCommand(id="cmd_5", idempotency_key="o", transaction_id="tx", occurred_at=T0, received_at=T0,
                     hold_until=T0 + timedelta(hours=1), visitor_key="v", conversion={"kind": "conversion"}),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.kind)
def test_every_kind_round_trips_through_json(command: Command) -> None:
    data = orjson.loads(orjson.dumps(command_to_dict(command)))
    before = dict(data)
    decoded = command_from_dict(data)
    assert decoded == command and type(decoded) is type(command)
    assert data == before  # the caller's dict is left as it was


def test_an_unknown_field_or_kind_is_refused() -> None:
    data = orjson.loads(orjson.dumps(command_to_dict(COMMANDS[1])))
    with pytest.raises(TypeError):
        command_from_dict(data | {"bogus": 1})
    with pytest.raises(KeyError):
        command_from_dict(data | {"kind": "bogus"})
