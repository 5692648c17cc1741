"""The Web Pixel against Shopify's own published package, `@shopify/web-pixels-extension` (issue 14).

Until issue 14 the pixel was only ever fed event shapes we wrote ourselves, so when Shopify's field was
`init.data.shop.myshopifyDomain` and the pixel read `myShopifyDomain`, every test passed while every real store got
401 from `/shopify/pixel/v1/events`. These tests take Shopify's word instead of ours, from the version pinned in
tests/unit/connectors/shopify/package-lock.json:

* the package's `.d.ts` type-checks every property path the pixel reads (`tsc --noEmit`,
  tests/unit/connectors/shopify/tsconfig.json), and a copy with a misspelt field fails it (SHP-92);
* the pixel runs on the package's real runtime, registering through its `register` -> `shopify.extend` (SHP-101);
* one payload per standard event, and `init`, are built from the package's types (pixel_events.mjs); each goes
  through the pixel, which must extract every SHP-95 field from Shopify's paths (SHP-95, SHP-96);
* the bodies the pixel sent are POSTed to the real endpoint and accepted (SHP-68..SHP-75): the end-to-end check that
  would have caught the defect, shown by the same run with the old spelling being refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from connectors.shopify.custom_pixel import PIXEL_SOURCE, custom_pixel_snippet
from connectors.shopify.envelopes import gid_tail
from connectors.shopify.pixel import EVENT_TYPES
from connectors.shopify.pixel_keys import issue_pixel_key
from core.ids import new_id
from core.storage import models as m
from gateway import create_app
from tests.conftest import make_settings, new_account
from tests.unit.connectors.shopify.pixel_node import (
    PACKAGE,
    PACKAGE_DIR,
    PINNED,
    TSCONFIG,
    generated_events,
    require_packages,
    run_harness,
    same,
    tsc,
)

EXTENSION_PACKAGE = PIXEL_SOURCE.parents[1] / "package.json"
ENDPOINT_PATH = "/shopify/pixel/v1/events"
ENDPOINT = "https://mbuzz.test" + ENDPOINT_PATH
# SHP-75's 13 names, in the order the pixel subscribes to them.
SUBSCRIBED = [
    "page_viewed", "product_viewed", "collection_viewed", "search_submitted", "product_added_to_cart",
    "product_removed_from_cart", "cart_viewed", "checkout_started", "checkout_contact_info_submitted",
    "checkout_address_info_submitted", "checkout_shipping_info_submitted", "payment_info_submitted",
    "checkout_completed",
]  # fmt: skip
# Standard events of the package that SHP-75 leaves out on purpose (docs/shopify.md explains why).
NOT_SUBSCRIBED = {"alert_displayed", "ui_extension_errored"}
# Properties whose values are buyer data: none of their generated values may reach a body (SHP-95, SHP-3).
PII_KEYS = {"email", "phone", "smsMarketingPhone", "firstName", "lastName", "address1", "address2", "city", "zip",
            "province", "message", "trace"}  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# SHP-95 in Shopify's terms: what the pixel must send for a generated event, read from the event by Shopify's paths
# --------------------------------------------------------------------------------------------------------------------


def _product(variant: dict[str, Any]) -> dict[str, Any]:
    return {"product_id": gid_tail(variant["product"]["id"]), "variant_id": gid_tail(variant["id"]),
            "sku": variant["sku"], "product_title": variant["product"]["title"], "price": variant["price"]["amount"],
            "currency": variant["price"]["currencyCode"]}  # fmt: skip


def _cart_line(data: dict[str, Any]) -> dict[str, Any]:
    line = data["cartLine"]
    return {**_product(line["merchandise"]), "quantity": line["quantity"],
            "line_total": line["cost"]["totalAmount"]["amount"]}  # fmt: skip


def _checkout(data: dict[str, Any]) -> dict[str, Any]:
    checkout = data["checkout"]
    return {"checkout_token": checkout["token"], "checkout_total": checkout["totalPrice"]["amount"],
            "currency": checkout["currencyCode"], "line_count": len(checkout["lineItems"])}  # fmt: skip


def _completed(data: dict[str, Any]) -> dict[str, Any]:
    order = data["checkout"]["order"]
    return {**_checkout(data), "order_id": order["id"], "is_first_order": order["customer"]["isFirstOrder"]}


EXPECTED_DATA: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "page_viewed": lambda data: {},
    "product_viewed": lambda data: _product(data["productVariant"]),
    "collection_viewed": lambda data: {"collection_id": gid_tail(data["collection"]["id"]),
                                       "collection_title": data["collection"]["title"]},
    "search_submitted": lambda data: {"search_term": data["searchResult"]["query"]},
    "product_added_to_cart": _cart_line,
    "product_removed_from_cart": _cart_line,
    "cart_viewed": lambda data: {"cart_total": data["cart"]["cost"]["totalAmount"]["amount"],
                                 "currency": data["cart"]["cost"]["totalAmount"]["currencyCode"],
                                 "line_count": len(data["cart"]["lines"])},
    **{name: _checkout for name in SUBSCRIBED[7:12]},
    "checkout_completed": _completed,
}  # fmt: skip


def _expected_event(name: str, event: dict[str, Any]) -> dict[str, Any]:
    document = event["context"]["document"]
    return {"id": event["id"], "name": name, "timestamp": event["timestamp"], "seq": event["seq"],
            "url": document["location"]["href"], "referrer": document["referrer"], "title": document["title"],
            "data": EXPECTED_DATA[name](event["data"])}  # fmt: skip


def _pii_values(value: Any, key: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _pii_values(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from _pii_values(item, key)
    elif isinstance(value, str) and key in PII_KEYS:
        yield value


# --------------------------------------------------------------------------------------------------------------------
# Fixtures: one generation and one harness run per module (each is a Node.js process)
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    return generated_events()


def _scenario(generated: dict[str, Any], settings: dict[str, str], **extra: Any) -> dict[str, Any]:
    events = generated["standard_events"]
    order = sorted(NOT_SUBSCRIBED & events.keys()) + [name for name in SUBSCRIBED if name in events]
    return {"settings": settings, "init": generated["init"], "start_time": _events_at(generated),
            "actions": [{"delay_ms": 0, "event": events[name]} for name in order], **extra}  # fmt: skip


def _run(scenario: dict[str, Any]) -> dict[str, Any]:
    report = run_harness(scenario)
    assert report["errors"] == [] and report["forbidden"] == [], (report["errors"], report["forbidden"])
    return report


def _sent(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [event for request in report["requests"] for event in request["body"]["events"]]


@pytest.fixture(scope="module")
def generated_run(generated: dict[str, Any]) -> dict[str, Any]:
    """Every generated standard event through the shipped pixel on the package's runtime, all in one go."""
    settings = {"accountID": "acct_01", "ingestKey": "pk_px_" + "0" * 32, "endpoint": ENDPOINT}
    return _run(_scenario(generated, settings))


def _events_at(generated: dict[str, Any]) -> str:
    """The generated events' timestamp (one for all): the harness clock starts there."""
    timestamps: set[str] = {event["timestamp"] for event in generated["standard_events"].values()}
    assert len(timestamps) == 1, timestamps
    return timestamps.pop()


# --------------------------------------------------------------------------------------------------------------------
# The pins (issue 14)
# --------------------------------------------------------------------------------------------------------------------


def test_the_tested_package_version_is_the_one_the_extension_ships_with() -> None:
    """SHP-90: the extension's caret range starts at the exact version these tests install and run against."""
    require_packages()
    version = PINNED[PACKAGE]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version) and re.fullmatch(r"\d+\.\d+\.\d+", PINNED["typescript"])
    extension = json.loads(EXTENSION_PACKAGE.read_text(encoding="utf-8"))
    assert extension["dependencies"][PACKAGE] == f"^{version}"
    lock = json.loads((TSCONFIG.parent / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"][f"node_modules/{PACKAGE}"]["version"] == version
    assert json.loads((PACKAGE_DIR / "package.json").read_text(encoding="utf-8"))["version"] == version


# --------------------------------------------------------------------------------------------------------------------
# Type-checking the pixel against the package's .d.ts (SHP-92)
# --------------------------------------------------------------------------------------------------------------------


def test_SHP92_the_pixel_type_checks_against_the_package_types() -> None:
    """SHP-92: `tsc --noEmit` (strict, checkJs) accepts every property path src/index.js reads."""
    proc = tsc(TSCONFIG)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("right", "wrong", "message"),
    [
        (
            "shop?.myshopifyDomain",
            "shop?.myShopifyDomain",
            "Property 'myShopifyDomain' does not exist on type 'Shop'. Did you mean 'myshopifyDomain'?",
        ),
        (
            "data?.productVariant,",
            "data?.productvariant,",
            "Property 'productvariant' does not exist on type 'PixelEventsProductViewedData'",
        ),
        (
            "customer?.isFirstOrder",
            "customer?.isFirstorder",
            "Property 'isFirstorder' does not exist on type 'OrderCustomer'",
        ),
    ],
    ids=["myShopifyDomain", "productvariant", "isFirstorder"],
)
def test_SHP92_a_misspelt_shopify_field_fails_the_type_check(tmp_path: Path, right: str, wrong: str,
                                                             message: str) -> None:  # fmt: skip
    """SHP-92 / issue 14: the type check can fail: a copy of the source with one Shopify field misspelt (the issue's
    own `myShopifyDomain` among them) is refused, naming the field."""
    source = PIXEL_SOURCE.read_text(encoding="utf-8")
    assert source.count(right) == 1, f"the pixel no longer reads {right!r} exactly once: update this test"
    (tmp_path / "index.js").write_text(source.replace(right, wrong), encoding="utf-8")
    (tmp_path / "tsconfig.json").write_text(json.dumps({"extends": str(TSCONFIG), "files": ["./index.js"]}))
    proc = tsc(tmp_path / "tsconfig.json")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert message in output, output


# --------------------------------------------------------------------------------------------------------------------
# The package's real runtime (SHP-101)
# --------------------------------------------------------------------------------------------------------------------


def test_SHP101_the_pixel_registers_through_the_packages_own_register(generated_run: dict[str, Any]) -> None:
    """SHP-101: the import is linked to the installed package's ESM build (its `exports` "import" entry), whose
    `register` calls the host's `shopify.extend('WebPixel::Render', fn)` once; the pixel then subscribes."""
    manifest = json.loads((PACKAGE_DIR / "package.json").read_text(encoding="utf-8"))
    entry = manifest["exports"]["."]["import"].removeprefix("./")
    assert generated_run["linked_modules"][0] == entry
    assert "build/esm/register.mjs" in generated_run["linked_modules"]
    assert generated_run["extension_points"] == ["WebPixel::Render"]
    assert generated_run["register_calls"] == 1
    assert generated_run["subscriptions"] == SUBSCRIBED


def test_SHP92_a_second_import_is_refused_by_the_harness(tmp_path: Path) -> None:
    """SHP-92: the harness links nothing but the one package import: a copy importing another module never runs."""
    source = PIXEL_SOURCE.read_text(encoding="utf-8")
    copy = tmp_path / "index.js"
    copy.write_text("import fs from 'node:fs';\n" + source, encoding="utf-8")
    report = run_harness({"source_path": str(copy)})
    assert report["register_calls"] == 0 and report["subscriptions"] == []
    assert len(report["errors"]) == 1
    assert "unexpected module statement: import fs from 'node:fs';" in report["errors"][0]


# --------------------------------------------------------------------------------------------------------------------
# Payloads built from the package's types (SHP-95, SHP-96)
# --------------------------------------------------------------------------------------------------------------------


def test_SHP95_the_package_defines_every_subscribed_event_as_standard(generated: dict[str, Any]) -> None:
    """SHP-95: each of the 13 names exists in the package as a standard event; the package's other standard events
    are exactly the ones SHP-75 leaves out. A new standard event in a newer package fails here until decided."""
    standard = set(generated["standard_events"])
    assert set(SUBSCRIBED) <= standard, set(SUBSCRIBED) - standard
    assert standard - set(SUBSCRIBED) == NOT_SUBSCRIBED
    assert generated["package"] == {"name": PACKAGE, "version": PINNED[PACKAGE]}
    assert generated["typescript"] == PINNED["typescript"]
    assert generated["truncated"] == []  # every generated payload is complete


def test_SHP95_generated_payloads_are_complete_and_gid_shaped(generated: dict[str, Any]) -> None:
    """The generator's contract: every property present, ids as GIDs (numeric-tail logic) and `sh-` event ids."""
    viewed = generated["standard_events"]["product_viewed"]
    assert viewed["type"] == "standard" and viewed["name"] == "product_viewed"
    assert re.fullmatch(r"sh-[A-Za-z0-9-]+", viewed["id"])
    assert re.fullmatch(r"gid://shopify/ProductVariant/\d+", viewed["data"]["productVariant"]["id"])
    assert re.fullmatch(r"gid://shopify/Product/\d+", viewed["data"]["productVariant"]["product"]["id"])
    shop = generated["init"]["data"]["shop"]
    assert set(shop) == {"countryCode", "myshopifyDomain", "name", "paymentSettings", "storefrontUrl"}
    assert shop["myshopifyDomain"].endswith(".myshopify.com")
    assert generated["init"]["customerPrivacy"]["analyticsProcessingAllowed"] is True  # so the pixel tracks


def test_SHP95_SHP96_every_generated_event_is_mapped_from_shopifys_paths(
    generated: dict[str, Any], generated_run: dict[str, Any]
) -> None:
    """SHP-95/SHP-96: for every generated standard event the pixel sends exactly the SHP-95 fields, read from
    Shopify's paths, and every body's `shop_domain` is `init.data.shop.myshopifyDomain`; the events SHP-75 leaves
    out are neither subscribed to nor sent."""
    events = generated["standard_events"]
    sent = _sent(generated_run)
    assert [event["name"] for event in sent] == SUBSCRIBED
    for got in sent:
        expected = _expected_event(got["name"], events[got["name"]])
        assert same(got, expected), (got["name"], got, expected)
    assert NOT_SUBSCRIBED.isdisjoint(generated_run["subscriptions"])
    shop_domain = generated["init"]["data"]["shop"]["myshopifyDomain"]
    for request in generated_run["requests"]:
        assert request["body"]["shop_domain"] == shop_domain
        assert request["body"]["shopify_client_id"] == events["page_viewed"]["clientId"]


def test_SHP95_no_buyer_data_from_the_generated_payloads_reaches_a_body(
    generated: dict[str, Any], generated_run: dict[str, Any]
) -> None:
    """SHP-95/SHP-3: e-mails, phones, names, addresses (and alert/error texts) present in Shopify's payloads and in
    `init` are never sent, nor are customer ids."""
    values = set(_pii_values(generated))
    customer_id = generated["init"]["data"]["customer"]["id"]
    assert len(values) > 20 and customer_id  # the generated payloads do carry buyer data
    for request in generated_run["requests"]:
        for value in values | {customer_id, gid_tail(customer_id)}:
            assert value not in request["body_raw"], value


def test_SHP79_the_custom_pixel_snippet_sends_the_same_for_generated_events(
    generated: dict[str, Any], generated_run: dict[str, Any]
) -> None:
    """SHP-79: the snippet built from the same source reads the same Shopify fields (`myshopifyDomain` included)."""
    settings = {"accountID": "acct_01", "ingestKey": "pk_px_" + "0" * 32, "endpoint": ENDPOINT}
    snippet = custom_pixel_snippet(settings["accountID"], settings["ingestKey"], settings["endpoint"])
    custom = _run(_scenario(generated, settings, mode="custom_pixel", source=snippet))
    assert [r["body"] for r in custom["requests"]] == [r["body"] for r in generated_run["requests"]]


# --------------------------------------------------------------------------------------------------------------------
# End to end: what the pixel sent, POSTed to the real endpoint (SHP-68..SHP-75)
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(database_url: str, generated: dict[str, Any]) -> Iterator[tuple[Flask, dict[str, str]]]:
    """The app on the test database, with an active installation for the generated shop and its pixel key; the
    clock a minute after the generated events."""
    at = datetime.fromisoformat(_events_at(generated).replace("Z", "+00:00"))
    app = create_app(make_settings(database_url))
    app.config["MBUZZ"].clock = lambda: at + timedelta(minutes=1)
    account = new_account(app, "Generated Shop")
    shop = generated["init"]["data"]["shop"]["myshopifyDomain"]
    with app.config["MBUZZ"].sessions.begin() as db:
        installation = db.scalars(sa.select(m.Installation).where(m.Installation.shop_domain == shop)).first()
        if installation is None:
            installation = m.Installation(id=new_id("inst", at), shop_domain=shop, domains=[], settings={},
                                          created_at=at, updated_at=at)  # fmt: skip
            db.add(installation)
        installation.account_id, installation.status, installation.mode = account.account_id, "active", "app"
        installation.environment, installation.currency, installation.installed_at = "test", "CAD", at
        db.flush()
        key = issue_pixel_key(db, installation, at)
        installation_id = installation.id
    settings = {"accountID": account.account_id, "ingestKey": key, "endpoint": ENDPOINT,
                "installation_id": installation_id}  # fmt: skip
    yield app, settings
    app.config["MBUZZ"].engine.dispose()


def _post_all(app: Flask, report: dict[str, Any]) -> list[tuple[int, Any]]:
    client = app.test_client()
    answers = []
    for request in report["requests"]:
        resp = client.post(ENDPOINT_PATH, data=request["body_raw"], content_type="text/plain",
                           headers={"User-Agent": "Mozilla/5.0 (generated)"})  # fmt: skip
        answers.append((resp.status_code, resp.get_json()))
    return answers


def test_SHP101_generated_events_sent_by_the_pixel_are_accepted_by_the_endpoint(
    generated: dict[str, Any], store: tuple[Flask, dict[str, str]]
) -> None:
    """SHP-68..SHP-75 (issue 14): the bodies the pixel sends for Shopify-typed events, with the installation's real
    pixel key, are accepted whole (202, accepted == events, rejected == []) and stored with their SHP-75 properties.
    This is the test that would have caught `myShopifyDomain`."""
    app, settings = store
    pixel_settings = {k: settings[k] for k in ("accountID", "ingestKey", "endpoint")}
    report = _run(_scenario(generated, pixel_settings))
    assert report["requests"], "the pixel sent nothing"
    answers = _post_all(app, report)
    for request, (status, answer) in zip(report["requests"], answers, strict=True):
        assert status == 202, answer
        assert answer["accepted"] == len(request["body"]["events"]) and answer["rejected"] == [], answer
    with app.config["MBUZZ"].sessions() as db:
        for sent in _sent(report):
            key = f"shopify_pixel:{settings['installation_id']}:{sent['id']}"
            stored = db.scalars(sa.select(m.Event).where(m.Event.idempotency_key == key)).one()
            event_type, fields = EVENT_TYPES[sent["name"]]
            assert stored.event_type == event_type
            assert set(stored.properties) == set(fields), (sent["name"], stored.properties)


def test_SHP101_the_old_spelling_is_refused_end_to_end(tmp_path: Path, generated: dict[str, Any],
                                                       store: tuple[Flask, dict[str, str]]) -> None:  # fmt: skip
    """Issue 14: the same run with the pixel reading `myShopifyDomain` sends no `shop_domain`, and the endpoint
    answers 401 to every body: what every real store saw."""
    app, settings = store
    source = PIXEL_SOURCE.read_text(encoding="utf-8")
    assert source.count("shop?.myshopifyDomain") == 1
    copy = tmp_path / "index.js"
    copy.write_text(source.replace("shop?.myshopifyDomain", "shop?.myShopifyDomain"), encoding="utf-8")
    pixel_settings = {k: settings[k] for k in ("accountID", "ingestKey", "endpoint")}
    report = _run(_scenario(generated, pixel_settings, source_path=str(copy)))
    assert report["requests"] and all("shop_domain" not in r["body"] for r in report["requests"])
    assert [status for status, _ in _post_all(app, report)] == [401] * len(report["requests"])
