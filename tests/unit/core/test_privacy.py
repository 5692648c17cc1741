"""Q-45 scrubbing rules (core.privacy) and the commands that apply them when they are built (pure logic)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from core.channels.scrub import hash_email_string
from core.commands import (
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
from core.envelope import command_from_envelope
from core.privacy import (
    has_personal_data,
    scrub_envelope,
    scrub_identifier,
    scrub_json,
    scrub_name,
    scrub_text,
    scrub_url,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
JANE = "jane.doe@example.com"
JANE_HASH = "sha256:" + hashlib.sha256(JANE.encode()).hexdigest()
RAW_EMAIL = re.compile(r"[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}", re.IGNORECASE)


def _raw_ips(text: str) -> list[str]:
    """IP addresses in ``text`` that still have host bits under the FP-1 masks (/24, /48)."""
    found = []
    for candidate in re.findall(r"[0-9A-Fa-f:.]{7,}", text):
        for piece in (candidate, candidate.strip(":.")):
            try:
                address = ipaddress.ip_address(piece)
            except ValueError:
                continue
            mapped = getattr(address, "ipv4_mapped", None) or address
            prefix = 24 if mapped.version == 4 else 48
            if ipaddress.ip_network(f"{mapped}/{prefix}", strict=False).network_address != mapped:
                found.append(piece)
    return found


# --- free text ----------------------------------------------------------------------------------------------

def test_Q45_whole_value_is_ID11_unchanged() -> None:
    for value in (JANE, "  Jane.Doe@Example.COM ", "https://a.com/?e=jane.doe@example.com"):
        assert scrub_text(value) == hash_email_string(value)
    assert scrub_text("Jane.Doe@Example.com") == JANE_HASH


def test_Q45_addresses_and_ips_inside_text() -> None:
    assert scrub_text(f"write to {JANE}, or Jane.Doe%40example.com.") == f"write to {JANE_HASH}, or {JANE_HASH}."
    assert scrub_text("from 203.0.113.42 and 2001:db8:85a3:9::7, mapped ::ffff:198.51.100.23") == \
        "from 203.0.113.0 and 2001:db8:85a3::, mapped 198.51.100.0"


def test_Q45_ordinary_text_is_left_alone() -> None:
    for value in ("2026-05-20T03:14:08Z", "Chrome/120.0.6099.109 Safari/537.36", "std::vector", "1.2.3.4.5",
                  "sha256:" + "a" * 64, "10:30:00", "Happy birthday", "@mention me", "GA1.1.123456789.1700000000"):
        assert scrub_text(value) == value


def test_Q45_names_stay_within_their_column() -> None:
    name = " ".join(f"u{i}@x.io" for i in range(40))
    scrubbed = scrub_name(name)
    assert scrubbed is not None and len(scrubbed) == 255 and not RAW_EMAIL.search(scrubbed)
    assert scrub_name(JANE) == JANE_HASH and scrub_name(None) is None


def test_Q45_urls_keep_their_shape() -> None:
    url = f"https://user:pw@acme.com/u/{JANE}/x?to=Jane.Doe%40Example.com&utm_source=news&ip=203.0.113.9"
    assert scrub_url(url) == f"https://acme.com/u/{JANE_HASH}/x?to={JANE_HASH}&utm_source=news&ip=203.0.113.0"
    assert scrub_url("http://[2001:db8:1:2::1]:8080/p") == "http://[2001:db8:1::]:8080/p"
    assert scrub_url("https://acme.com/products/lamp?utm_source=meta") == "https://acme.com/products/lamp?utm_source=meta"


def test_Q45_json_at_any_depth_keys_left_alone() -> None:
    value = {"a": [{"b": f"x {JANE}"}, 1, None, (JANE,)], "k@k.com": "203.0.113.5", "n": 1.5}
    assert scrub_json(value) == {"a": [{"b": f"x {JANE_HASH}"}, 1, None, [JANE_HASH]], "k@k.com": "203.0.113.0",
                                 "n": 1.5}
    deep: object = JANE
    for _ in range(10_000):
        deep = [deep]
    out = scrub_json(deep)
    for _ in range(10_000):
        out = out[0]
    assert out == JANE_HASH


# --- identifiers --------------------------------------------------------------------------------------------

def test_Q45_identifiers_hashed_exactly_as_sent() -> None:
    assert scrub_identifier(JANE) == JANE_HASH  # a trimmed lower-case address: the same hash as ID-11's
    assert scrub_identifier("Jane.Doe@example.com") != scrub_identifier(JANE)  # ids are case-sensitive
    assert scrub_identifier(f"sgtm:acct_01:txn:{JANE}") == \
        "sha256:" + hashlib.sha256(f"sgtm:acct_01:txn:{JANE}".encode()).hexdigest()
    assert scrub_identifier("msg-203.0.113.42").startswith("sha256:")
    assert scrub_identifier(None) is None


def test_Q45_ordinary_identifiers_untouched() -> None:
    for value in ("550e8400-e29b-41d4-a716-446655440000", "shopify:inst_01:order:5396439498987", "#1042", "123",
                  "sgtm:acct_01:evt:page_view:" + "f" * 64, "2f1192190b183bfb4b4b04f632e5a5d36f87b192c77c1169e5",
                  "GA1.1.123456789.1700000000", "X4TQ9RZ7A", "user-42", "~u.abc", "fb.1.1700000000000.123456789"):
        assert scrub_identifier(value) == value and not has_personal_data(value)


# --- properties ---------------------------------------------------------------------------------------------

_PIECES = st.sampled_from([JANE, "Pat.Lee@Example.org", "a%40b.io", "203.0.113.42", "2001:db8:85a3::8a2e:370:7334",
                           "::ffff:198.51.100.23", " ", "=", "&", "?", "/", ":", ".", "@", "%40", "x", "1", "sha256:"])
# Pieces stand apart as words do: an address glued to letters or digits (`x2001:db8::1`) is not one.
_TEXT = st.builds(lambda sep, pieces: sep.join(pieces), st.sampled_from([" ", ", ", "=", "&", "/", "?", "; "]),
                  st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=12))


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_Q45_scrub_never_leaves_an_address_or_ip_and_is_idempotent(value: str) -> None:
    for scrub in (scrub_text, scrub_url):
        out = scrub(value)
        assert not RAW_EMAIL.search(out), (value, out)
        assert not _raw_ips(out), (value, out)
        assert scrub(out) == out
    ident = scrub_identifier(value)
    assert scrub_identifier(ident) == ident
    assert not has_personal_data(ident)


# --- commands scrub themselves ------------------------------------------------------------------------------

def test_Q45_every_command_is_scrubbed_when_built_and_again_unchanged() -> None:
    touch = TouchCommand(id="cmd_1", visitor_key="203.0.113.42", client_session_id=JANE, occurred_at=NOW,
                         received_at=NOW, url=f"https://a.com/?e={JANE}", referrer=f"https://b.com/{JANE}",
                         user_agent="Bot (ops@example.com) " + "x" * 1100, user_key=JANE,
                         explicit_utm={"utm_source": JANE}, postal_code="a@b.io", fbp=JANE, idempotency_key=JANE)
    assert (touch.visitor_key, touch.client_session_id, touch.user_key, touch.idempotency_key, touch.fbp) == (
        scrub_identifier("203.0.113.42"), JANE_HASH, JANE_HASH, JANE_HASH, JANE_HASH)
    assert touch.url == f"https://a.com/?e={JANE_HASH}" and touch.referrer == f"https://b.com/{JANE_HASH}"
    assert touch.user_agent is not None and len(touch.user_agent) == 1024 and "ops@" not in touch.user_agent
    assert touch.explicit_utm == {"utm_source": JANE_HASH} and touch.postal_code is None
    event = EventCommand(id="evt_1", event_type=JANE, occurred_at=NOW, received_at=NOW, user_key=JANE, funnel=JANE,
                         properties={"note": f"hi {JANE} 203.0.113.42"}, idempotency_key=JANE, sdk_version="1.2.3.4")
    assert (event.event_type, event.funnel, event.user_key, event.idempotency_key) == (JANE_HASH,) * 4
    assert event.properties == {"note": f"hi {JANE_HASH} 203.0.113.0"} and event.sdk_version == "1.2.3.0"
    conversion = ConversionCommand(id="conv_1", conversion_type=f"buy {JANE}", received_at=NOW, converted_at=NOW,
                                   user_key=JANE, idempotency_key=JANE, funnel=JANE, properties={"e": JANE},
                                   warnings=[f"x {JANE}"])
    assert conversion.conversion_type == f"buy {JANE_HASH}" and conversion.warnings == [f"x {JANE_HASH}"]
    identify = IdentifyCommand(id="cmd_2", user_key=JANE, occurred_at=NOW, received_at=NOW,
                               traits={"note": f"{JANE} at 203.0.113.42"}, idempotency_key=JANE)
    assert identify.user_key == JANE_HASH and identify.traits == {"note": f"{JANE_HASH} at 203.0.113.0"}
    adjustment = OrderAdjustmentCommand(id="cmd_3", idempotency_key=f"r:{JANE}", conversion_key=JANE,
                                        adjustment="refund", occurred_at=NOW, received_at=NOW)
    assert adjustment.conversion_key == JANE_HASH and adjustment.idempotency_key == scrub_identifier(f"r:{JANE}")
    redact = RedactCommand(id="cmd_4", idempotency_key="k", scope="identity", occurred_at=NOW, received_at=NOW,
                           user_key=JANE, conversion_keys=[JANE, "plain"])
    assert redact.user_key == JANE_HASH and redact.conversion_keys == [JANE_HASH, "plain"]
    for command in (touch, event, conversion, identify, adjustment, redact):
        assert command_from_dict(command_to_dict(command)) == command  # the Redis stream's round trip


def test_Q45_held_sgtm_purchase_is_scrubbed_and_emits_the_same_keys() -> None:
    """SGTM-30: the held envelope (sgtm_order_links.data) is scrubbed by field kind; the conversion it becomes
    later names the same key, user and transaction as the link, so SGTM-31/32 still match."""
    key = f"sgtm:acct_01:txn:{JANE}"
    envelope = {"kind": "sgtm_order_link", "account_id": "acct_01", "environment": "live", "source": "sgtm",
                "origin": "sgtm", "idempotency_key": key, "conversion_type": "purchase",
                "occurred_at": "2026-12-01T12:00:00Z", "hold_until": "2026-12-01T18:00:00Z", "revenue": "59.00",
                "currency": "AUD", "visitor_id": "f" * 64, "user_id": JANE, "transaction_id": JANE,
                "ga_client_id": "123.456", "user_agent": "Mozilla/5.0 (203.0.113.42)",
                "properties": {"url": f"https://shop.test/thanks?email={JANE}", "transaction_id": JANE,
                               "referrer": "https://shop.test/cart", "note": f"gift {JANE}"}}
    link = command_from_envelope(envelope, NOW)
    assert isinstance(link, OrderLinkCommand)
    assert link.transaction_id == JANE_HASH and link.idempotency_key == scrub_identifier(key)
    assert not RAW_EMAIL.search(str(link.conversion)) and "203.0.113.42" not in str(link.conversion)
    assert link.conversion["user_agent"] == "Mozilla/5.0 (203.0.113.0)"
    emitted = command_from_envelope(link.conversion, NOW)  # core.order_holds does this when the hold ends
    assert isinstance(emitted, ConversionCommand)
    assert (emitted.idempotency_key, emitted.user_key) == (link.idempotency_key, JANE_HASH)
    assert emitted.properties == link.conversion["properties"]
    assert scrub_envelope(link.conversion) == link.conversion
