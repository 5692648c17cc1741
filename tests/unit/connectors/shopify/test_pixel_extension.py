"""The shipped Web Pixel (src/index.js) and the custom-pixel snippet under the Node.js harness (shopify.md SHP-101).

Every case feeds Shopify-shaped standard events, consent changes and scripted fetch answers to the real pixel
through tests/unit/connectors/shopify/pixel_harness.mjs (manual clock, recording fetch, fake top-frame cookie and
localStorage) and
asserts exactly what it sent. The extension runs on the real `@shopify/web-pixels-extension` runtime (its
`register` calls the fake host's `shopify.extend`), so these cases also prove the pixel registers the way Shopify
loads it. Rules: SHP-79 (custom pixel), SHP-92 (source), SHP-93 (consent), SHP-94 (visitor id), SHP-95
(subscriptions and data), SHP-96 (batching and transport). The shapes here are hand-written; test_pixel_package.py
feeds the pixel payloads built from the package's own types (issue 14). Without Node.js >= 18 and the pinned npm
packages the harness tests are skipped (failed in CI), see pixel_node.py.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.shopify.custom_pixel import IMPORT_LINE, PIXEL_SOURCE, custom_pixel_snippet
from tests.unit.connectors.shopify.pixel_node import run_harness, same

SHARED = Path(os.environ.get("MBUZZ_SHARED_DIR", Path(__file__).resolve().parents[5] / "shared"))
F6 = SHARED / "fixtures" / "shopify" / "F6.json"

ENDPOINT = "https://mbuzz.test/shopify/pixel/v1/events"
SETTINGS = {"accountID": "acct_01", "ingestKey": "pk_px_3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e", "endpoint": ENDPOINT}
SHOP = "aurora-lamps.myshopify.com"
CLIENT = "7f3c1a52-5d1e-4c8b-9a0f-2b6e8d4c1a90"
VID_A = "7a5d0618c22da94b3a2ad2cc62f59b897e65f8b1d477998757ba7e7e36c4a408"
VID_B = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
VID_C = "c0ffee00" * 8
COOKIE_ATTRIBUTES = "; max-age=63072000; path=/; SameSite=Lax; Secure"
EXPIRED = "_mbuzz_vid=; max-age=0; path=/; SameSite=Lax; Secure"
BATCH_MAX_BYTES = 60 * 1024
ALLOWED = {"analyticsProcessingAllowed": True, "marketingAllowed": False, "preferencesProcessingAllowed": False,
           "saleOfDataAllowed": False}  # fmt: skip
DENIED = {**ALLOWED, "analyticsProcessingAllowed": False}
STANDARD_EVENTS = [
    "page_viewed", "product_viewed", "collection_viewed", "search_submitted", "product_added_to_cart",
    "product_removed_from_cart", "cart_viewed", "checkout_started", "checkout_contact_info_submitted",
    "checkout_address_info_submitted", "checkout_shipping_info_submitted", "payment_info_submitted",
    "checkout_completed",
]  # fmt: skip
ENVELOPE_KEYS = {"v", "ingest_key", "account_id", "shop_domain", "sent_at", "consent", "visitor_id",
                 "shopify_client_id", "events"}  # fmt: skip
EVENT_KEYS = {"id", "name", "timestamp", "seq", "url", "referrer", "title", "data"}


def run_pixel(scenario: dict[str, Any], *, allow_errors: bool = False) -> dict[str, Any]:
    """Runs one scenario; every run must be free of errors and of forbidden API use (sendBeacon, self.location...)."""
    report = run_harness(scenario)
    if not allow_errors:
        assert report["errors"] == [], report["errors"]
    assert report["forbidden"] == [], report["forbidden"]
    for request in report["requests"]:
        assert request["url"] == scenario.get("settings", SETTINGS)["endpoint"]
        assert request["options"] == {"method": "POST", "keepalive": True}  # no headers: text/plain, no preflight
        assert request["body_type"] == "string"
        assert request["bytes"] <= BATCH_MAX_BYTES
    return report


# --------------------------------------------------------------------------------------------------------------------
# Shopify-shaped events
# --------------------------------------------------------------------------------------------------------------------


def event(name: str, seq: int, data: dict[str, Any] | None = None, *, client_id: str = CLIENT,
          title: str | None = None, href: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "id": f"sh-{seq:08x}-0000-4000-8000-000000000000",
        "name": name,
        "type": "standard",
        "timestamp": f"2026-05-20T03:{15 + seq // 60:02d}:{seq % 60:02d}.000Z",
        "seq": seq,
        "clientId": client_id,
        "context": {
            "document": {
                "location": {"href": href or f"https://aurora-lamps.com/pages/p{seq}"},
                "referrer": "https://www.google.com/",
                "title": f"Page {seq}" if title is None else title,
            },
            "navigator": {"userAgent": "Mozilla/5.0", "language": "en-AU"},
        },
        "data": data or {},
    }


def page(seq: int, **kwargs: Any) -> dict[str, Any]:
    return event("page_viewed", seq, **kwargs)


def checkout(name: str, seq: int) -> dict[str, Any]:
    return event(name, seq, {"checkout": {"token": "c1-tok", "currencyCode": "AUD",
                                          "totalPrice": {"amount": 10.0, "currencyCode": "AUD"},
                                          "lineItems": [{"id": "1"}]}})  # fmt: skip


def scenario(actions: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "settings": SETTINGS,
        "init": {"data": {"shop": {"myshopifyDomain": SHOP, "name": "Aurora Lamps"}, "customer": None},
                 "customerPrivacy": ALLOWED},  # fmt: skip
        "cookies": {"_mbuzz_vid": VID_A},
    }
    base.update(extra)
    base["actions"] = actions
    return base


def emit(*events: dict[str, Any], every_ms: int = 0) -> list[dict[str, Any]]:
    return [{"delay_ms": 0 if i == 0 else every_ms, "event": e} for i, e in enumerate(events)]


def sent_events(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for request in report["requests"] for e in request["body"]["events"]]


def batches(report: dict[str, Any]) -> list[tuple[int, list[int]]]:
    """(time, [seq, ...]) per request."""
    return [(r["at_ms"], [e["seq"] for e in r["body"]["events"]]) for r in report["requests"]]


# --------------------------------------------------------------------------------------------------------------------
# F6: the pixel_harness contract (SHP-93..SHP-96)
# --------------------------------------------------------------------------------------------------------------------


def f6() -> tuple[dict[str, Any], dict[str, Any]]:
    fixture = json.loads(F6.read_text(encoding="utf-8"))
    return fixture["pixel_harness"], fixture["steps"][0]["request"]["body"]


def f6_scenario(timing: str) -> dict[str, Any]:
    block, _ = f6()
    if timing == "as_recorded":  # the gaps between the events' own timestamps
        times = [datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in block["events"]]
        delays = [0] + [int((b - a).total_seconds() * 1000) for a, b in zip(times, times[1:], strict=False)]
    else:  # all in one go
        delays = [0] * len(block["events"])
    return {
        "settings": block["settings"],
        "init": block["init"],
        "top_frame_cookies": block["top_frame_cookies"],
        "start_time": block["events"][0]["timestamp"],
        "actions": [{"delay_ms": d, "event": e} for d, e in zip(delays, block["events"], strict=True)],
    }


@pytest.mark.parametrize("timing", ["as_recorded", "burst"])
def test_f6_pixel_harness_contract(timing: str) -> None:
    """SHP-95/SHP-96 (F6): the concatenated events equal the fixture's body; every envelope carries its fields."""
    block, body = f6()
    report = run_pixel(f6_scenario(timing))

    assert same(sent_events(report), body["events"]), json.dumps(sent_events(report), indent=2)
    assert report["requests"], "nothing was sent"
    for request in report["requests"]:
        envelope = request["body"]
        assert set(envelope) == ENVELOPE_KEYS
        for key, value in block["envelope_fields"].items():
            assert same(envelope[key], value), key
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", envelope["sent_at"])
        for event_ in envelope["events"]:
            assert set(event_) == EVENT_KEYS
        for forbidden in block["must_not_appear_anywhere_in_bodies"]:
            assert forbidden not in request["body_raw"], forbidden
    # checkout_started and checkout_completed each close a batch at once (SHP-96).
    ends = [r["body"]["events"][-1]["name"] for r in report["requests"]]
    assert ends[-2:] == ["checkout_started", "checkout_completed"]
    if timing == "burst":
        assert batches(report) == [(0, [1, 2, 3]), (0, [7])]
    else:
        assert batches(report) == [(1000, [1]), (39380, [2]), (62890, [3]), (296657, [7])]
    # The cookie visitor id is kept and written back to both stores (SHP-94).
    assert report["cookies_set"] == [f"_mbuzz_vid={VID_A}{COOKIE_ATTRIBUTES}"]
    assert report["local_storage"] == {"_mbuzz_vid": VID_A}
    assert report["pending_timers"] == 0


def test_subscribes_to_the_13_standard_events_individually() -> None:
    """SHP-95: one subscription per SHP-75 event name, never all_events; SHP-93: visitorConsentCollected."""
    report = run_pixel(scenario([]))
    assert report["subscriptions"] == STANDARD_EVENTS
    assert report["privacy_subscriptions"] == ["visitorConsentCollected"]
    assert report["register_calls"] == 1
    assert report["extension_points"] == ["WebPixel::Render"]  # registered through the package's real `register`
    assert report["requests"] == []
    assert report["storage_ops"] == [] and report["cookies_set"] == []  # nothing is touched before the first event


# --------------------------------------------------------------------------------------------------------------------
# Data mapping (SHP-95)
# --------------------------------------------------------------------------------------------------------------------

PII = {
    "email": "sam.lee@example.org",
    "phone": "+61400111222",
    "firstName": "Samantha",
    "lastName": "Leeworth",
    "address1": "12 Harbour Street",
    "city": "Wollongong",
    "zip": "ZIP-2517",
    "customer_id": "7209318830022",
    "attribute": "gift-note-secret",
}


def _address() -> dict[str, Any]:
    return {"firstName": PII["firstName"], "lastName": PII["lastName"], "address1": PII["address1"],
            "city": PII["city"], "zip": PII["zip"], "phone": PII["phone"]}  # fmt: skip


def _variant() -> dict[str, Any]:
    return {
        "id": "gid://shopify/ProductVariant/44120938201011",
        "sku": "ADL-OAK",
        "title": "Oak",
        "price": {"amount": 125.0, "currencyCode": "AUD"},
        "image": {"src": "https://cdn.example/x.png"},
        "email": PII["email"],  # not a Shopify field: proves the pixel copies listed fields only
        "product": {"id": "gid://shopify/Product/8061536829755", "title": "Aurora Desk Lamp", "vendor": "Aurora",
                    "type": "Lighting", "url": "/products/aurora", "phone": PII["phone"]},  # fmt: skip
    }


def _checkout(completed: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "token": "c1-aa11bb22cc33dd44ee55ff6677889900",
        "currencyCode": "AUD",
        "totalPrice": {"amount": 139.5, "currencyCode": "AUD"},
        "subtotalPrice": {"amount": 125.0, "currencyCode": "AUD"},
        "email": PII["email"],
        "phone": PII["phone"],
        "smsMarketingPhone": PII["phone"],
        "attributes": [{"key": "note", "value": PII["attribute"]}],
        "billingAddress": _address(),
        "shippingAddress": _address(),
        "lineItems": [{"id": "44120938201011", "title": "Aurora Desk Lamp", "quantity": 1},
                      {"id": "44120938201012", "title": "Shade", "quantity": 2}],  # fmt: skip
    }
    if completed:
        customer = {"id": PII["customer_id"], "isFirstOrder": False, "email": PII["email"]}
        out["order"] = {"id": "gid://shopify/OrderIdentity/5396439500011", "customer": customer}
    return out


def _pii_events() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(Shopify event carrying PII, the data the pixel must send for it) for each of the 13 names."""
    cart_line = {"quantity": 2, "cost": {"totalAmount": {"amount": 250.0, "currencyCode": "AUD"}},
                 "merchandise": _variant()}  # fmt: skip
    product = {"product_id": "8061536829755", "variant_id": "44120938201011", "sku": "ADL-OAK",
               "product_title": "Aurora Desk Lamp", "price": 125, "currency": "AUD"}  # fmt: skip
    line = {**product, "quantity": 2, "line_total": 250}
    checkout_out = {"checkout_token": "c1-aa11bb22cc33dd44ee55ff6677889900", "checkout_total": 139.5,
                    "currency": "AUD", "line_count": 2}  # fmt: skip
    customer = {"id": PII["customer_id"], "email": PII["email"], "phone": PII["phone"],
                "firstName": PII["firstName"], "lastName": PII["lastName"]}  # fmt: skip
    pairs: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("page_viewed", {"customer": customer}, {}),
        ("product_viewed", {"productVariant": _variant(), "customer": customer}, product),
        ("collection_viewed",
         {"collection": {"id": "gid://shopify/Collection/411112", "title": "Desk lamps", "productVariants": []}},
         {"collection_id": "411112", "collection_title": "Desk lamps"}),
        ("search_submitted", {"searchResult": {"query": "oak lamp", "productVariants": [_variant()]}},
         {"search_term": "oak lamp"}),
        ("product_added_to_cart", {"cartLine": cart_line}, line),
        ("product_removed_from_cart", {"cartLine": cart_line}, line),
        ("cart_viewed",
         {"cart": {"id": "gid://shopify/Cart/abc", "cost": {"totalAmount": {"amount": 375.0, "currencyCode": "AUD"}},
                   "lines": [cart_line, cart_line], "attributes": [{"key": "note", "value": PII["attribute"]}],
                   "buyerIdentity": {"email": PII["email"], "phone": PII["phone"]}}},
         {"cart_total": 375, "currency": "AUD", "line_count": 2}),
        ("checkout_started", {"checkout": _checkout(False)}, checkout_out),
        ("checkout_contact_info_submitted", {"checkout": _checkout(False)}, checkout_out),
        ("checkout_address_info_submitted", {"checkout": _checkout(False)}, checkout_out),
        ("checkout_shipping_info_submitted", {"checkout": _checkout(False)}, checkout_out),
        ("payment_info_submitted", {"checkout": _checkout(False)}, checkout_out),
        ("checkout_completed", {"checkout": _checkout(True)},
         {"checkout_token": "c1-aa11bb22cc33dd44ee55ff6677889900", "order_id": "gid://shopify/OrderIdentity/5396439500011",
          "checkout_total": 139.5, "currency": "AUD", "line_count": 2, "is_first_order": False}),
    ]  # fmt: skip
    return [(event(name, i + 1, data), expected) for i, (name, data, expected) in enumerate(pairs)]


def test_data_mapping_of_every_standard_event_and_no_pii() -> None:
    """SHP-95, SHP-3: each of the 13 events maps to exactly its fields; e-mail, phone, names, addresses, customer ids
    and checkout attributes never reach a body, even when the event (and init) carry them."""
    pairs = _pii_events()
    init = {"data": {"shop": {"myshopifyDomain": SHOP}, "customer": {"id": PII["customer_id"], "email": PII["email"],
                                                                     "phone": PII["phone"]}},
            "customerPrivacy": ALLOWED}  # fmt: skip
    report = run_pixel(scenario(emit(*(e for e, _ in pairs), every_ms=10), init=init))

    sent = sent_events(report)
    assert [e["name"] for e in sent] == STANDARD_EVENTS
    for (source, expected), got in zip(pairs, sent, strict=True):
        assert set(got) == EVENT_KEYS
        assert got["id"] == source["id"] and got["seq"] == source["seq"] and got["timestamp"] == source["timestamp"]
        assert got["url"] == source["context"]["document"]["location"]["href"]
        assert got["referrer"] == source["context"]["document"]["referrer"]
        assert got["title"] == source["context"]["document"]["title"]
        assert same(got["data"], expected), (got["name"], got["data"])
    for request in report["requests"]:
        assert set(request["body"]) == ENVELOPE_KEYS
        for value in PII.values():
            assert value not in request["body_raw"], value
        for key in ("email", "phone", "firstName", "lastName", "address", "customer", "attributes", "buyer"):
            assert f'"{key}' not in request["body_raw"], key


def test_missing_fields_are_omitted_and_ids_kept_when_not_gids() -> None:
    """SHP-95: `is_first_order` (and any other field) is omitted when undefined; a non-GID id is kept as is."""
    completed = event("checkout_completed", 1, {"checkout": {"token": "t1", "order": {"id": "gid://shopify/OrderIdentity/9"},
                                                             "lineItems": []}})  # fmt: skip
    viewed = event("product_viewed", 2, {"productVariant": {"id": "v-77", "product": {"id": 123, "title": "T"},
                                                            "sku": None, "price": {"amount": 5}}})  # fmt: skip
    report = run_pixel(scenario(emit(completed, viewed)))
    data = [e["data"] for e in sent_events(report)]
    assert data == [
        {"checkout_token": "t1", "order_id": "gid://shopify/OrderIdentity/9", "line_count": 0},
        {"product_id": "123", "variant_id": "v-77", "product_title": "T", "price": 5},
    ]


# --------------------------------------------------------------------------------------------------------------------
# Flush timing (SHP-96)
# --------------------------------------------------------------------------------------------------------------------


def test_flush_1000ms_after_the_first_buffered_event() -> None:
    """SHP-96: the timer starts with the first buffered event and is not pushed back by later ones."""
    actions = emit(page(1), page(2), page(3), every_ms=300) + [{"delay_ms": 600, "event": page(4)}]
    report = run_pixel(scenario(actions))
    # events at 0, 300, 600 -> sent at 1000; event at 1200 -> sent at 2200
    assert batches(report) == [(1000, [1, 2, 3]), (2200, [4])]


def test_flush_at_10_events() -> None:
    """SHP-96: the 10th buffered event flushes before the 1 s timer."""
    report = run_pixel(scenario(emit(*(page(i) for i in range(1, 12)), every_ms=50)))
    assert batches(report) == [(450, list(range(1, 11))), (1500, [11])]


@pytest.mark.parametrize("name", ["checkout_started", "checkout_completed"])
def test_flush_immediately_after_checkout_started_and_completed(name: str) -> None:
    """SHP-96: checkout_started and checkout_completed are sent at once, with what is buffered before them."""
    report = run_pixel(scenario(emit(page(1), checkout(name, 2), page(3), every_ms=200)))
    assert batches(report) == [(200, [1, 2]), (1400, [3])]


def test_other_checkout_steps_wait_for_the_timer() -> None:
    """SHP-96: only checkout_started and checkout_completed flush immediately."""
    report = run_pixel(scenario(emit(checkout("checkout_contact_info_submitted", 1),
                                     checkout("payment_info_submitted", 2), every_ms=100)))  # fmt: skip
    assert batches(report) == [(1000, [1, 2])]


# --------------------------------------------------------------------------------------------------------------------
# Batch limits (SHP-96)
# --------------------------------------------------------------------------------------------------------------------


def test_batch_split_at_20_events() -> None:
    """SHP-96: 25 events buffered while the visitor id is read (slow top-frame cookie) go out as 20 + 5."""
    report = run_pixel(scenario(emit(*(page(i) for i in range(1, 26))), browser_latency_ms=50))
    assert batches(report) == [(50, list(range(1, 21))), (50, list(range(21, 26)))]
    for request in report["requests"]:
        assert request["body"]["visitor_id"] == VID_A


def test_batch_split_at_60_kib() -> None:
    """SHP-96: no body exceeds 60 KiB (UTF-8 bytes); each body is as full as the limit allows; order is kept."""
    title = "é" * 3000  # 6000 bytes
    report = run_pixel(scenario(emit(*(page(i, title=title) for i in range(1, 11)))))
    assert [e["seq"] for e in sent_events(report)] == list(range(1, 11))
    assert len(report["requests"]) == 2
    for request in report["requests"]:
        assert request["bytes"] == len(request["body_raw"].encode("utf-8")) <= BATCH_MAX_BYTES
    for current, following in zip(report["requests"], report["requests"][1:], strict=False):
        next_event = json.dumps(following["body"]["events"][0], ensure_ascii=False, separators=(",", ":"))
        assert current["bytes"] + 1 + len(next_event.encode("utf-8")) > BATCH_MAX_BYTES


def test_an_event_too_large_for_any_batch_is_dropped() -> None:
    """SHP-96 (decision): an event whose own body would exceed 60 KiB is dropped; the others are still sent."""
    report = run_pixel(scenario(emit(page(1), page(2, title="x" * 70000), page(3))))
    assert batches(report) == [(1000, [1, 3])]


def test_one_client_id_per_body() -> None:
    """SHP-94/SHP-96 (decision): `shopify_client_id` is the events' clientId; a change of clientId starts a body."""
    other = "other-client-1"
    report = run_pixel(scenario(emit(page(1), page(2, client_id=other), page(3, client_id=other))))
    assert [(r["body"]["shopify_client_id"], [e["seq"] for e in r["body"]["events"]]) for r in report["requests"]] == [
        (CLIENT, [1]),
        (other, [2, 3]),
    ]


# --------------------------------------------------------------------------------------------------------------------
# Visitor id (SHP-94)
# --------------------------------------------------------------------------------------------------------------------


def _vid_ops(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(op["storage"], op["op"]) for op in report["storage_ops"]]


def test_visitor_id_from_the_cookie() -> None:
    """SHP-94: a valid `_mbuzz_vid` cookie wins over localStorage and is written back to both."""
    report = run_pixel(scenario(emit(page(1)), cookies={"_mbuzz_vid": VID_A}, local_storage={"_mbuzz_vid": VID_B}))
    assert [r["body"]["visitor_id"] for r in report["requests"]] == [VID_A]
    assert _vid_ops(report) == [("cookie", "get"), ("localStorage", "setItem")]
    assert report["cookies_set"] == [f"_mbuzz_vid={VID_A}{COOKIE_ATTRIBUTES}"]
    assert report["local_storage"] == {"_mbuzz_vid": VID_A}
    assert report["random_bytes_requested"] == []


def test_visitor_id_from_local_storage() -> None:
    """SHP-94: without a cookie, a valid localStorage id is used and the cookie is set with it."""
    report = run_pixel(scenario(emit(page(1)), cookies={}, local_storage={"_mbuzz_vid": VID_B}))
    assert [r["body"]["visitor_id"] for r in report["requests"]] == [VID_B]
    assert _vid_ops(report) == [("cookie", "get"), ("localStorage", "getItem"), ("localStorage", "setItem")]
    assert report["cookies_set"] == [f"_mbuzz_vid={VID_B}{COOKIE_ATTRIBUTES}"]
    assert report["cookies"] == {"_mbuzz_vid": VID_B}
    assert report["local_storage"] == {"_mbuzz_vid": VID_B}
    assert report["random_bytes_requested"] == []


def test_visitor_id_freshly_generated() -> None:
    """SHP-94: with neither, 32 bytes of crypto.getRandomValues as lower-case hex, written to both stores."""
    report = run_pixel(scenario(emit(page(1), page(2)), cookies={}, random_bytes=[VID_C]))
    assert report["random_bytes_requested"] == [32]
    assert [r["body"]["visitor_id"] for r in report["requests"]] == [VID_C]
    assert report["cookies_set"] == [f"_mbuzz_vid={VID_C}{COOKIE_ATTRIBUTES}"]
    assert report["cookies"] == {"_mbuzz_vid": VID_C}
    assert report["local_storage"] == {"_mbuzz_vid": VID_C}


def test_generated_visitor_id_is_64_lower_case_hex() -> None:
    """SHP-94: a seeded run (no scripted bytes) still yields 64 lower-case hex."""
    report = run_pixel(scenario(emit(page(1)), cookies={}, random_seed=7))
    assert re.fullmatch(r"[0-9a-f]{64}", report["requests"][0]["body"]["visitor_id"])


@pytest.mark.parametrize(
    "invalid",
    [VID_A.upper(), VID_A[:63], VID_A + "0", f" {VID_A}", "not-a-visitor-id", "g" * 64, ""],
    ids=["upper", "short", "long", "space", "text", "non-hex", "empty"],
)
def test_invalid_stored_visitor_ids_are_ignored(invalid: str) -> None:
    """SHP-94: only 64 lower-case hex counts, in the cookie as in localStorage; otherwise a fresh id."""
    report = run_pixel(scenario(emit(page(1)), cookies={"_mbuzz_vid": invalid}, local_storage={"_mbuzz_vid": invalid},
                                random_bytes=[VID_C]))  # fmt: skip
    assert [r["body"]["visitor_id"] for r in report["requests"]] == [VID_C]
    assert report["cookies_set"] == [f"_mbuzz_vid={VID_C}{COOKIE_ATTRIBUTES}"]
    assert report["local_storage"] == {"_mbuzz_vid": VID_C}


def test_invalid_cookie_falls_back_to_local_storage() -> None:
    """SHP-94: an invalid cookie is skipped, a valid localStorage id is used and repairs the cookie."""
    report = run_pixel(scenario(emit(page(1)), cookies={"_mbuzz_vid": "bad"}, local_storage={"_mbuzz_vid": VID_B}))
    assert [r["body"]["visitor_id"] for r in report["requests"]] == [VID_B]
    assert report["cookies"] == {"_mbuzz_vid": VID_B}


def test_returned_visitor_id_is_adopted() -> None:
    """SHP-94/SHP-73: a different `visitor_id` in the ingest answer is stored in both and used from then on."""
    answers = [{"status": 202, "body": {"accepted": 1, "rejected": [], "visitor_id": VID_B}}]
    report = run_pixel(scenario(emit(page(1), page(2), every_ms=1500), fetch_answers=answers))
    assert [(r["at_ms"], r["body"]["visitor_id"]) for r in report["requests"]] == [(1000, VID_A), (2500, VID_B)]
    assert report["cookies_set"] == [f"_mbuzz_vid={VID_A}{COOKIE_ATTRIBUTES}", f"_mbuzz_vid={VID_B}{COOKIE_ATTRIBUTES}"]
    assert report["cookies"] == {"_mbuzz_vid": VID_B}
    assert report["local_storage"] == {"_mbuzz_vid": VID_B}


@pytest.mark.parametrize("answer", [{"visitor_id": "NOT-HEX"}, {"visitor_id": VID_A}, {}, "not json"])
def test_answer_without_a_new_valid_visitor_id_changes_nothing(answer: Any) -> None:
    """SHP-94: only a different, valid (64 lower-case hex) `visitor_id` is adopted."""
    report = run_pixel(scenario(emit(page(1), page(2), every_ms=1500), fetch_answers=[{"status": 202, "body": answer}]))
    assert [r["body"]["visitor_id"] for r in report["requests"]] == [VID_A, VID_A]
    assert report["cookies_set"] == [f"_mbuzz_vid={VID_A}{COOKIE_ATTRIBUTES}"]


# --------------------------------------------------------------------------------------------------------------------
# Consent (SHP-93)
# --------------------------------------------------------------------------------------------------------------------


def test_consent_withdrawal_drops_the_buffer_and_clears_the_visitor_id() -> None:
    """SHP-93: analytics withdrawn -> buffer dropped, nothing sent after, localStorage removed, cookie max-age=0."""
    actions = emit(page(1), page(2), every_ms=100) + [
        {"delay_ms": 300, "consent": DENIED},
        {"delay_ms": 100, "event": page(3)},
        {"delay_ms": 100, "event": checkout("checkout_completed", 4)},
    ]
    report = run_pixel(scenario(actions, local_storage={"_mbuzz_vid": VID_A}))
    assert report["requests"] == []
    assert report["cookies_set"] == [f"_mbuzz_vid={VID_A}{COOKIE_ATTRIBUTES}", EXPIRED]
    assert report["cookies"] == {}
    assert report["local_storage"] == {}
    assert ("localStorage", "removeItem") in _vid_ops(report)
    assert report["pending_timers"] == 0


def test_consent_withdrawal_cancels_a_pending_retry() -> None:
    """SHP-93/SHP-96: a retry scheduled before the withdrawal is never sent."""
    actions = [{"delay_ms": 0, "event": checkout("checkout_started", 1)}, {"delay_ms": 100, "consent": DENIED}]
    report = run_pixel(scenario(actions, fetch_answers=[{"network_error": True}], math_random=[0.5]))
    assert batches(report) == [(0, [1])]
    assert report["cookies_set"][-1] == EXPIRED


@pytest.mark.parametrize(
    ("cookies", "local_storage"),
    [({}, {"_mbuzz_vid": VID_B}), ({"_mbuzz_vid": VID_A}, {})],
    ids=["found-in-local-storage", "found-in-cookie"],
)
def test_consent_withdrawn_while_the_visitor_id_is_read_writes_nothing(
    cookies: dict[str, str], local_storage: dict[str, str]
) -> None:
    """SHP-93/SHP-94: a visitor id lookup in flight at the withdrawal never writes the id back afterwards."""
    actions = [{"delay_ms": 0, "event": page(1)}, {"delay_ms": 10, "consent": DENIED}]
    report = run_pixel(scenario(actions, cookies=cookies, local_storage=local_storage, browser_latency_ms=50))
    assert report["requests"] == []
    assert report["cookies_set"] == [EXPIRED]
    assert report["local_storage"] == {} and report["cookies"] == {}


def test_consent_denied_at_init_sends_and_stores_nothing() -> None:
    """SHP-93: with analytics not allowed at page load, no event is buffered or sent and no storage is touched."""
    actions = emit(page(1), checkout("checkout_started", 2), checkout("checkout_completed", 3), every_ms=100)
    init = {"data": {"shop": {"myshopifyDomain": SHOP}}, "customerPrivacy": DENIED}
    report = run_pixel(scenario(actions, init=init))
    assert report["requests"] == []
    assert report["storage_ops"] == [] and report["cookies_set"] == [] and report["random_bytes_requested"] == []
    assert report["cookies"] == {"_mbuzz_vid": VID_A}  # an existing cookie is left alone


def test_missing_customer_privacy_counts_as_denied() -> None:
    """SHP-93 (decision): no `init.customerPrivacy` means analytics is not allowed."""
    init = {"data": {"shop": {"myshopifyDomain": SHOP}}}
    report = run_pixel(scenario(emit(checkout("checkout_started", 1)), init=init))
    assert report["requests"] == []


def test_consent_granted_later_tracks_events_from_then_on() -> None:
    """SHP-93 (decision): events before a grant are not kept; once visitorConsentCollected allows analytics they are."""
    init = {"data": {"shop": {"myshopifyDomain": SHOP}}, "customerPrivacy": DENIED}
    granted = {**ALLOWED, "marketingAllowed": True}
    actions = [{"delay_ms": 0, "event": page(1)}, {"delay_ms": 100, "consent": granted},
               {"delay_ms": 100, "event": checkout("checkout_started", 2)}]  # fmt: skip
    report = run_pixel(scenario(actions, init=init))
    assert batches(report) == [(200, [2])]
    assert report["requests"][0]["body"]["consent"] == {"analytics": True, "marketing": True, "preferences": False,
                                                        "sale_of_data": False}  # fmt: skip


def test_batch_consent_is_the_current_customer_privacy() -> None:
    """SHP-93: `consent` maps the four customerPrivacy flags as they are when the batch is sent."""
    changed = {"analyticsProcessingAllowed": True, "marketingAllowed": True, "preferencesProcessingAllowed": True,
               "saleOfDataAllowed": True}  # fmt: skip
    actions = [{"delay_ms": 0, "event": checkout("checkout_started", 1)}, {"delay_ms": 100, "consent": changed},
               {"delay_ms": 100, "event": checkout("checkout_completed", 2)}]  # fmt: skip
    report = run_pixel(scenario(actions))
    assert [r["body"]["consent"] for r in report["requests"]] == [
        {"analytics": True, "marketing": False, "preferences": False, "sale_of_data": False},
        {"analytics": True, "marketing": True, "preferences": True, "sale_of_data": True},
    ]


# --------------------------------------------------------------------------------------------------------------------
# Transport (SHP-96)
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("random", "delay"), [(0.0, 500), (0.5, 1000), (0.9999999, 1500)])
def test_network_error_is_retried_once_after_500_to_1500_ms(random: float, delay: int) -> None:
    """SHP-96: one retry of the same body after 500-1500 ms of random delay, then nothing more."""
    answers = [{"network_error": True}, {"network_error": True}]
    report = run_pixel(scenario(emit(checkout("checkout_started", 1)), fetch_answers=answers, math_random=[random]))
    assert [r["at_ms"] for r in report["requests"]] == [0, delay]
    assert report["requests"][0]["body_raw"] == report["requests"][1]["body_raw"]
    assert report["pending_timers"] == 0


def test_network_error_then_success() -> None:
    """SHP-96: the retry's answer is handled like any answer (its visitor_id is adopted)."""
    answers = [{"network_error": True}, {"status": 202, "body": {"visitor_id": VID_B}}]
    report = run_pixel(scenario(emit(checkout("checkout_started", 1), checkout("checkout_completed", 2),
                                     every_ms=3000), fetch_answers=answers, math_random=[0.25]))  # fmt: skip
    assert [(r["at_ms"], r["body"]["visitor_id"]) for r in report["requests"]] == [(0, VID_A), (750, VID_A),
                                                                                   (3000, VID_B)]  # fmt: skip


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 429])
def test_4xx_is_never_retried(status: int) -> None:
    """SHP-96: a 4xx answer is final."""
    answers = [{"status": status, "body": {"error": "x"}}]
    report = run_pixel(scenario(emit(checkout("checkout_started", 1)), fetch_answers=answers))
    assert batches(report) == [(0, [1])]


def test_a_4xx_answer_body_is_ignored() -> None:
    """SHP-94/SHP-96: only a 2xx answer can hand the pixel a visitor id."""
    answers = [{"status": 400, "body": {"error": "invalid_events", "visitor_id": VID_B}}]
    report = run_pixel(scenario(emit(checkout("checkout_started", 1), checkout("checkout_completed", 2),
                                     every_ms=100), fetch_answers=answers))  # fmt: skip
    assert [r["body"]["visitor_id"] for r in report["requests"]] == [VID_A, VID_A]
    assert report["local_storage"] == {"_mbuzz_vid": VID_A}


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_not_retried(status: int) -> None:
    """SHP-96 (decision): only a network error is retried; an HTTP answer, whatever its status, is final."""
    report = run_pixel(scenario(emit(checkout("checkout_started", 1)), fetch_answers=[{"status": status}]))
    assert batches(report) == [(0, [1])]


def test_a_slow_answer_never_blocks_later_batches() -> None:
    """SHP-96: batches go out while an earlier request is still unanswered."""
    answers = [{"status": 202, "delay_ms": 5000}]
    report = run_pixel(scenario(emit(checkout("checkout_started", 1), checkout("checkout_completed", 2),
                                     every_ms=100), fetch_answers=answers))  # fmt: skip
    assert batches(report) == [(0, [1]), (100, [2])]


# --------------------------------------------------------------------------------------------------------------------
# Source constraints (SHP-92) and the custom-pixel snippet (SHP-79)
# --------------------------------------------------------------------------------------------------------------------


def test_source_has_exactly_one_import_line_and_no_other_module_statement() -> None:
    """SHP-92: one `import {register} from '@shopify/web-pixels-extension';` and nothing else to resolve."""
    source = PIXEL_SOURCE.read_text(encoding="utf-8")
    lines = source.splitlines()
    assert lines.count(IMPORT_LINE) == 1
    assert [line for line in lines if re.match(r"\s*(import|export)\b", line)] == [IMPORT_LINE]
    # JSDoc `import('...')` types are comments (issue 14): they may name the Shopify package only.
    assert set(re.findall(r"import\('([^']*)'\)", source)) == {"@shopify/web-pixels-extension"}
    code = re.sub(r"(^|\s)//.*$", "", re.sub(r"/\*[\s\S]*?\*/", "", source), flags=re.MULTILINE)
    assert not re.search(r"\brequire\s*\(|\bimport\s*\(", code)
    for token in ("sendBeacon", "self.location", "all_events", "all_standard_events", "document.cookie",
                  "window.localStorage", "??=", "||=", "&&=", ".replaceAll(", ".at(", "Object.hasOwn("):  # fmt: skip
        assert token not in source, token


def test_custom_pixel_snippet_is_the_source_with_an_adapter() -> None:
    """SHP-79: the snippet is src/index.js with its import line replaced, and nothing else changed."""
    source = PIXEL_SOURCE.read_text(encoding="utf-8")
    snippet = custom_pixel_snippet("acct_01", SETTINGS["ingestKey"], ENDPOINT)
    before, after = source.split(IMPORT_LINE + "\n")
    assert snippet.startswith(before) and snippet.endswith(after)
    adapter = snippet[len(before): len(snippet) - len(after)]
    assert "import" not in adapter
    assert '{"accountID":"acct_01","ingestKey":"pk_px_3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e","endpoint":' in adapter
    for name in ("analytics", "browser", "init", "customerPrivacy"):
        assert name in adapter


@pytest.mark.parametrize("bad", [("", "pk", "https://x"), ("acct", "", "https://x"), ("acct", "pk", "")])
def test_custom_pixel_snippet_needs_every_setting(bad: tuple[str, str, str]) -> None:
    with pytest.raises(ValueError):
        custom_pixel_snippet(*bad)


def test_custom_pixel_snippet_sends_the_same_envelope() -> None:
    """SHP-79: under the same harness, the snippet (custom-pixel globals, no settings object) sends exactly what the
    extension sends for F6, to the same endpoint."""
    block, body = f6()
    settings = block["settings"]
    extension = run_pixel(f6_scenario("burst"))
    snippet = custom_pixel_snippet(settings["accountID"], settings["ingestKey"], settings["endpoint"])
    custom = run_pixel({**f6_scenario("burst"), "mode": "custom_pixel", "source": snippet, "settings": settings})
    assert [r["body"] for r in custom["requests"]] == [r["body"] for r in extension["requests"]]
    assert same(sent_events(custom), body["events"])
    assert custom["cookies_set"] == extension["cookies_set"]
    assert custom["subscriptions"] == STANDARD_EVENTS
    assert custom["privacy_subscriptions"] == ["visitorConsentCollected"]


def test_custom_pixel_settings_are_inlined_safely() -> None:
    """SHP-79: quotes, `</script>`, backslashes and line separators in a setting reach the body unchanged."""
    hostile = "k\"'`</script><!--\\\u2028\u2029${x}&"
    settings = {"accountID": hostile, "ingestKey": "pk_px_" + "0" * 32, "endpoint": ENDPOINT + "?a=1&b=</script>"}
    snippet = custom_pixel_snippet(settings["accountID"], settings["ingestKey"], settings["endpoint"])
    assert "</script>" not in snippet and "\u2028" not in snippet
    report = run_pixel(scenario(emit(checkout("checkout_started", 1)), mode="custom_pixel", source=snippet,
                                settings=settings))  # fmt: skip
    assert [r["body"]["account_id"] for r in report["requests"]] == [hostile]
    assert report["requests"][0]["url"] == settings["endpoint"]
