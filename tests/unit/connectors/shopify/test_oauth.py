"""App install end to end against a real local fake Shopify (shopify.md SHP-20..SHP-25, SHP-27, SHP-85).

Install → callback → post-install job: the recorded GraphQL is asserted (shop query, one
webhookSubscriptionCreate per missing topic with its includeFields, webPixelCreate with the pixel key in its
settings, webPixelUpdate when a pixel exists); tokens are stored encrypted and appear in plain text nowhere in
the database; a reinstall keeps the `inst_` id; expiring tokens are refreshed and a refused refresh marks the
token invalid; a Shopify error answers 502 and changes nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from connectors.shopify import models as sm
from connectors.shopify.admin import admin_client
from connectors.shopify.api_version import API_VERSION
from connectors.shopify.install import (
    SHOP_QUERY,
    Generators,
    connector_state,
    create_manual_installation,
    post_install,
    recheck_subscriptions,
    use_generators,
)
from connectors.shopify.outbound import ShopifyHTTPError, TokenInvalid
from core.accounts import key_digest
from core.storage import models as m
from tests.unit.connectors.shopify.install_env import (
    ALL_TOPICS,
    API_KEY,
    AURORA,
    BIRCH,
    NOW,
    SECRET,
    Env,
    build_env,
    host_param,
    session_token,
    signed_query,
    token_rule,
)
from tools.fake_shopify import FakeShopify

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

SCOPES = "read_orders,read_customers,write_pixels,read_customer_events"
ORDER_FIELDS_HEAD = ["id", "admin_graphql_api_id", "name", "order_number", "confirmation_number", "email"]


def _nonces(env: Env) -> None:
    counter = itertools.count(1)
    use_generators(env.services, Generators(nonce=lambda: f"n0nce-{next(counter):04d}"))


def _begin(env: Env, shop: str = BIRCH) -> str:
    resp = env.client.get(f"/shopify/auth?shop={shop}")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return parse_qs(urlsplit(resp.headers["Location"]).query)["state"][0]


def _callback(env: Env, state: str, shop: str = BIRCH, code: str = "a1b2c3d4e5f60718293a4b5c6d7e8f90",
              timestamp: int | None = None, secret: str = SECRET, **extra: str) -> tuple[int, str]:
    params = {"code": code, "host": host_param(shop), "shop": shop, "state": state,
              "timestamp": str(timestamp if timestamp is not None else int(NOW.timestamp()) - 10), **extra}
    resp = env.client.get(f"/shopify/auth/callback?{signed_query(params, secret)}")
    return resp.status_code, resp.headers.get("Location", "")


def _creates(fake: FakeShopify, shop: str) -> dict[str, dict[str, object]]:
    return {r.variables["topic"]: r.variables["webhookSubscription"] for r in fake.graphql(shop)
            if r.operation == "webhookSubscriptionCreate"}


def test_SHP22_begin_stores_hashed_state_and_sets_the_signed_cookie(env: Env) -> None:
    _nonces(env)
    resp = env.client.get(f"/shopify/auth?shop={BIRCH}")
    assert resp.status_code == 302
    target = urlsplit(resp.headers["Location"])
    assert (target.scheme, target.netloc, target.path) == ("https", BIRCH, "/admin/oauth/authorize")
    assert parse_qs(target.query) == {"client_id": [API_KEY], "scope": [SCOPES], "state": ["n0nce-0001"],
                                      "redirect_uri": ["https://mbuzz.test/shopify/auth/callback"]}
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("mbuzz_shopify_oauth=n0nce-0001.")  # the nonce, signed with the Flask secret
    for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/shopify/auth", "Max-Age=600"):
        assert attribute in cookie
    with env.services.sessions() as db:
        (state,) = db.scalars(sa.select(sm.ShopifyOAuthState)).all()
    assert state.nonce_sha256 == hashlib.sha256(b"n0nce-0001").hexdigest()  # never the nonce itself
    assert (state.shop_domain, state.expires_at, state.used_at) == (BIRCH, NOW + timedelta(seconds=600), None)


def test_SHP22_refusals(env: Env) -> None:
    assert env.client.get("/shopify/auth?shop=evil.com").status_code == 400
    assert env.client.get(f"/shopify/auth?shop={BIRCH}&hmac=00").status_code == 401  # present, so it must verify
    good = signed_query({"shop": BIRCH, "timestamp": str(int(NOW.timestamp()))})
    assert env.client.get(f"/shopify/auth?{good}").status_code == 302
    assert env.client.post(f"/shopify/auth?shop={BIRCH}").status_code == 405


def test_SHP23_SHP27_callback_installs_then_the_post_install_job_runs(env: Env, fake: FakeShopify) -> None:
    _nonces(env)
    token_rule(fake, BIRCH, name="code_grant", expires_in=86400, refresh_token="shprt_code_grant",
               refresh_token_expires_in=7776000,
               subset={"client_id": API_KEY, "client_secret": SECRET, "code": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
                       "expiring": "1"})  # SHP-23 (5): the code grant asks for an expiring token too
    state = _begin(env)
    status, location = _callback(env, state)
    assert (status, location) == (302, f"https://admin.shopify.com/store/birch-goods/apps/{API_KEY}")
    assert fake.called_mocks() == ["code_grant"]
    installation = env.installation(BIRCH)
    assert installation is not None and installation.id.startswith("inst_")
    assert (installation.status, installation.mode, installation.environment, installation.account_id) == \
        ("pending_connect", "app", "live", None)
    assert (installation.shop_gid, installation.shop_name, installation.primary_domain, installation.currency,
            installation.iana_timezone) == ("gid://shopify/Shop/777001", "Birch Goods", "birchgoods.example", "USD",
                                            "America/New_York")
    assert installation.domains == ["birchgoods.example", BIRCH]
    assert (installation.scopes, installation.token_status, installation.token_expires_at,
            installation.refresh_expires_at) == (SCOPES, "valid", NOW + timedelta(seconds=86400),
                                                 NOW + timedelta(seconds=7776000))
    assert installation.refresh_token_enc is not None and env.decrypt(installation.refresh_token_enc) == \
        "shprt_code_grant"
    # SHP-7/SHP-25: the token is stored encrypted only, and in plain text nowhere in the database
    assert installation.access_token_enc is not None
    assert env.decrypt(installation.access_token_enc) == "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"
    assert env.anywhere_in_db("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") == []
    assert env.anywhere_in_db(state) == []  # nor the OAuth nonce
    # SHP-27: shop query, subscription listing, one create per missing topic; no pixel before connecting
    ops = fake.operations(BIRCH)
    assert ops == ["shop", "webhookSubscriptions"] + ["webhookSubscriptionCreate"] * 7
    assert all(r.headers.get("X-Shopify-Access-Token") == "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"
               for r in fake.graphql(BIRCH))
    assert all(r.path == f"/{BIRCH}/admin/api/{API_VERSION}/graphql.json" for r in fake.graphql(BIRCH))
    creates = _creates(fake, BIRCH)
    assert sorted(creates) == sorted(ALL_TOPICS)
    for subscription in creates.values():
        assert subscription["uri"] == "https://mbuzz.test/shopify/webhooks"
        assert subscription["format"] == "JSON"
    assert "includeFields" not in creates["REFUNDS_CREATE"]  # SHP-98: all fields
    order_fields = creates["ORDERS_PAID"]["includeFields"]
    assert isinstance(order_fields, list) and order_fields[:6] == ORDER_FIELDS_HEAD and len(order_fields) == 41
    assert creates["ORDERS_CREATE"]["includeFields"] == order_fields == creates["ORDERS_CANCELLED"]["includeFields"]
    assert creates["CUSTOMERS_UPDATE"]["includeFields"] == ["id", "email", "state", "verified_email", "created_at",
                                                          "updated_at", "email_marketing_consent", "tags"]
    assert creates["SHOP_UPDATE"]["includeFields"] == ["id", "name", "myshopify_domain", "domain", "currency",
                                                      "iana_timezone", "plan_name"]
    assert connector_state(installation)["webhook_topics"] == sorted(
        ["orders/paid", "orders/create", "orders/cancelled", "refunds/create", "customers/create",
         "customers/update", "shop/update"])
    with env.services.sessions() as db:
        row = db.get(sm.ShopifyOAuthState, hashlib.sha256(state.encode()).hexdigest())
        assert row is not None and row.used_at == NOW
    # single use: the same callback again is refused at the state check
    fake.clear()
    assert _callback(env, state)[0] == 401
    assert fake.requests == []


def test_SHP24_partner_development_shop_starts_in_test(env: Env, fake: FakeShopify) -> None:
    fake.shops[BIRCH].shop["plan"] = {"partnerDevelopment": True}
    token_rule(fake, BIRCH)
    assert _callback(env, _begin(env))[0] == 302
    installation = env.installation(BIRCH)
    assert installation is not None and (installation.environment, installation.plan_partner_development) == \
        ("test", True)


def test_SHP23_checks_in_order_each_with_its_status(env: Env, fake: FakeShopify) -> None:
    _nonces(env)
    token_rule(fake, BIRCH, code="c-ok", subset={"code": "c-ok"})
    fake.on_token("fails", BIRCH, {"code": "c-500"}, 500, {"error": "server_error"})
    fake.on_token("short", BIRCH, {"code": "c-scope"}, 200, {"access_token": "shpat_x", "scope": "read_orders"})
    # (1) HMAC first: a bad signature is 401 even with a bad shop
    assert _callback(env, _begin(env), shop="evil.com", secret="wrong")[0] == 401
    # (2) shop: 400
    assert _callback(env, _begin(env), shop="evil.com")[0] == 400
    # (3) state: must equal the signed cookie and an unused row of that shop
    assert _callback(env, "n0nce-forged")[0] == 401
    state = _begin(env)
    env.client.delete_cookie("mbuzz_shopify_oauth", path="/shopify/auth")
    assert _callback(env, state)[0] == 401
    # (4) freshness after the state check: 300 s old at most, 60 s ahead
    assert _callback(env, _begin(env), timestamp=int(NOW.timestamp()) - 301)[0] == 401
    assert _callback(env, _begin(env), timestamp=int(NOW.timestamp()) + 61)[0] == 401
    # (5) Shopify's error: 502; (6) a scope not granted: 400; neither installs anything
    assert _callback(env, _begin(env), code="c-500")[0] == 502
    assert _callback(env, _begin(env), code="c-scope")[0] == 400
    assert env.installation(BIRCH) is None
    assert [r.kind for r in fake.requests] == ["token", "token"]  # only steps 5 and 6 reached Shopify
    # an invalid host falls back to the shop's admin
    status, location = _callback(env, _begin(env), code="c-ok", host="ZXZpbC5jb20=")
    assert (status, location) == (302, f"https://{BIRCH}/admin/apps/{API_KEY}")


def test_SHP23_write_scope_satisfies_read(env: Env, fake: FakeShopify) -> None:
    token_rule(fake, BIRCH, scope="write_orders,write_customers,write_pixels,read_customer_events")
    assert _callback(env, _begin(env))[0] == 302


def test_SHP27_connected_install_registers_the_web_pixel(tmp_path: Path, fake: FakeShopify) -> None:
    env = build_env(tmp_path, fake, shopify_auto_connect_account="acct_02")  # SHP-28 (c)
    token_rule(fake, BIRCH)
    assert _callback(env, _begin(env))[0] == 302
    installation = env.installation(BIRCH)
    assert installation is not None and (installation.status, installation.account_id) == ("active", "acct_02")
    (create,) = [r for r in fake.graphql(BIRCH) if r.operation == "webPixelCreate"]
    settings = json.loads(create.variables["webPixel"]["settings"])
    assert set(settings) == {"accountID", "ingestKey", "endpoint"}
    assert settings["accountID"] == "acct_02"
    assert settings["endpoint"] == "https://mbuzz.test/shopify/pixel/v1/events"
    with env.services.sessions() as db:
        key = db.scalars(sa.select(m.ApiKey).where(m.ApiKey.key_digest == key_digest(settings["ingestKey"]))).one()
    assert (key.kind, key.installation_id, key.account_id, key.environment, key.revoked_at) == \
        ("pixel", installation.id, "acct_02", "live", None)
    assert installation.pixel_id == fake.shops[BIRCH].pixel["id"]  # type: ignore[index]
    assert env.anywhere_in_db(settings["ingestKey"]) == []  # the pixel key is stored as its digest only


def test_SHP27_existing_pixel_is_updated_and_the_job_is_idempotent(env: Env, fake: FakeShopify) -> None:
    fake.shops[AURORA].pixel = {"id": "gid://shopify/WebPixel/31001", "settings": "{}"}
    uri = "https://mbuzz.test/shopify/webhooks"
    fake.shops[AURORA].subscriptions = [
        {"id": "gid://shopify/WebhookSubscription/1", "topic": "ORDERS_PAID", "uri": uri},
        {"id": "gid://shopify/WebhookSubscription/2", "topic": "REFUNDS_CREATE", "uri": uri},
        {"id": "gid://shopify/WebhookSubscription/3", "topic": "ORDERS_CREATE", "uri": "https://elsewhere/x"},
    ]
    result = post_install(env.services, "inst_01")
    assert sorted(result.topics_created) == sorted(set(ALL_TOPICS) - {"ORDERS_PAID", "REFUNDS_CREATE"})
    ops = fake.operations(AURORA)  # the pixel first, then the subscriptions (issue 14: pixel before topics)
    assert ops == ["shop", "webPixelCreate", "webPixel", "webPixelUpdate", "webhookSubscriptions"] + \
        ["webhookSubscriptionCreate"] * 5
    (update,) = [r for r in fake.graphql(AURORA) if r.operation == "webPixelUpdate"]
    assert update.variables["id"] == "gid://shopify/WebPixel/31001"
    first_key = json.loads(update.variables["webPixel"]["settings"])["ingestKey"]
    assert fake.shops[AURORA].pixel == {"id": "gid://shopify/WebPixel/31001",
                                        "settings": update.variables["webPixel"]["settings"]}
    installation = env.installation(AURORA)
    assert installation is not None and installation.pixel_id == "gid://shopify/WebPixel/31001"
    with env.services.sessions() as db:
        seeded = db.scalars(sa.select(m.ApiKey).where(
            m.ApiKey.key_digest == key_digest("pk_px_3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e"))).one()
    assert seeded.revoked_at == NOW + timedelta(hours=24)  # the previous key keeps working for a day
    # a second run creates nothing new at Shopify and leaves one current key in the pixel's settings
    fake.clear()
    again = post_install(env.services, "inst_01")
    assert again.topics_created == []
    assert "webhookSubscriptionCreate" not in fake.operations(AURORA)
    (update,) = [r for r in fake.graphql(AURORA) if r.operation == "webPixelUpdate"]
    assert json.loads(update.variables["webPixel"]["settings"])["ingestKey"] != first_key


def test_SHP85_reinstall_reuses_the_row_and_exchanges_a_token(env: Env, fake: FakeShopify) -> None:
    env.update_installation(AURORA, status="uninstalled", uninstalled_at=NOW - timedelta(days=3),
                            access_token_enc=None, pixel_id=None)
    id_token = session_token(AURORA)
    token_rule(fake, AURORA, name="exchange", access_token="shpat_reinstalled", expires_in=3600,
               refresh_token="shprt_reinstalled", refresh_token_expires_in=7776000,
               subset={"client_id": API_KEY, "client_secret": SECRET, "subject_token": id_token,
                       "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                       "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
                       "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
                       "expiring": "1"})
    query = signed_query({"embedded": "1", "host": host_param(AURORA), "id_token": id_token, "shop": AURORA,
                          "timestamp": str(int(NOW.timestamp()) - 20)})
    resp = env.client.get(f"/shopify/app?{query}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert fake.called_mocks() == ["exchange"]
    installation = env.installation(AURORA)
    assert installation is not None and installation.id == "inst_01"  # the same row: conversion keys stay stable
    assert (installation.status, installation.account_id, installation.uninstalled_at) == ("active", "acct_01", None)
    assert installation.token_expires_at == NOW + timedelta(seconds=3600)
    assert installation.refresh_expires_at == NOW + timedelta(seconds=7776000)
    assert installation.refresh_token_enc is not None and env.decrypt(installation.refresh_token_enc) == \
        "shprt_reinstalled"
    assert env.anywhere_in_db("shpat_reinstalled") == [] and env.anywhere_in_db("shprt_reinstalled") == []
    assert "webPixelCreate" in fake.operations(AURORA)  # SHP-85: new pixel key, webPixelCreate
    assert installation.pixel_id == fake.shops[AURORA].pixel["id"]  # type: ignore[index]


def test_SHP21_shopify_error_is_502_and_changes_nothing(env: Env, fake: FakeShopify) -> None:
    fake.on_token("exchange", BIRCH, {}, 400, {"error": "invalid_subject_token"})
    fake.on_token("exchange", AURORA, {}, 503, {"error": "unavailable"})
    for shop in (BIRCH, AURORA):
        query = signed_query({"embedded": "1", "host": host_param(shop), "id_token": session_token(shop),
                              "shop": shop, "timestamp": str(int(NOW.timestamp()))})
        if shop == AURORA:
            env.update_installation(AURORA, status="uninstalled", access_token_enc=None)
        before = env.installation(shop)
        resp = env.client.get(f"/shopify/app?{query}")
        assert resp.status_code == 502
        assert "shpat" not in resp.get_data(as_text=True)
        after = env.installation(shop)
        assert (before is None and after is None) or (
            before is not None and after is not None and (before.status, before.updated_at) ==
            (after.status, after.updated_at))
    assert fake.graphql() == []


def test_SHP20_app_url_checks(env: Env, fake: FakeShopify) -> None:
    stamp = str(int(NOW.timestamp()))
    resp = env.client.get(f"/shopify/app?shop={AURORA}")
    assert (resp.status_code, resp.headers["Location"]) == (302, f"/shopify/auth?shop={AURORA}")
    assert env.client.get("/shopify/app?shop=evil.com&embedded=1").status_code == 400

    def app(**params: str) -> int:
        base = {"embedded": "1", "id_token": session_token(AURORA), "shop": AURORA, "timestamp": stamp}
        return int(env.client.get(f"/shopify/app?{signed_query({**base, **params})}").status_code)

    assert app() == 200  # installed with a usable token: no token exchange
    assert fake.requests == []
    assert app(timestamp=str(int(NOW.timestamp()) - 3601)) == 401
    assert app(id_token=session_token(BIRCH)) == 401  # dest must be the shop of the query
    assert app(id_token=session_token(AURORA, secret="not-the-secret")) == 401
    query = signed_query({"embedded": "1", "id_token": session_token(AURORA), "shop": AURORA, "timestamp": stamp})
    assert env.client.get(f"/shopify/app?{query}&extra=1").status_code == 401  # unsigned parameter


def _expiring(env: Env, fake: FakeShopify, refresh_status: int = 200) -> None:
    env.update_installation(AURORA, token_expires_at=NOW + timedelta(seconds=200),
                            refresh_token_enc=env.encrypt("shprt_old"), refresh_expires_at=NOW + timedelta(days=30))
    fake.shops[AURORA].tokens = {"shpat_new"}
    answer = {"access_token": "shpat_new", "expires_in": 3600, "refresh_token": "shprt_new",
              "refresh_token_expires_in": 7776000, "scope": SCOPES} if refresh_status == 200 else {
        "error": "invalid_grant"}
    fake.on_token("refresh", AURORA, {"client_id": API_KEY, "client_secret": SECRET, "grant_type": "refresh_token",
                                      "refresh_token": "shprt_old"}, refresh_status, answer)


def test_SHP25_token_is_refreshed_under_the_row_lock_before_expiry(env: Env, fake: FakeShopify) -> None:
    _expiring(env, fake)
    client = admin_client(env.services, "inst_01", AURORA)
    assert client.execute(SHOP_QUERY)["shop"]["name"] == "Aurora Lamps"
    assert [r.kind for r in fake.requests] == ["token", "graphql"]
    assert fake.graphql(AURORA)[0].headers["X-Shopify-Access-Token"] == "shpat_new"
    installation = env.installation(AURORA)
    assert installation is not None and installation.access_token_enc and installation.refresh_token_enc
    assert (env.decrypt(installation.access_token_enc), env.decrypt(installation.refresh_token_enc)) == \
        ("shpat_new", "shprt_new")
    assert installation.token_expires_at == NOW + timedelta(seconds=3600)
    assert env.anywhere_in_db("shpat_new") == [] and env.anywhere_in_db("shprt_new") == []
    client.execute(SHOP_QUERY)  # fresh now: no second refresh
    assert [r.kind for r in fake.requests] == ["token", "graphql", "graphql"]


def test_SHP25_refused_refresh_marks_the_token_invalid_then_the_app_url_exchanges(env: Env,
                                                                                fake: FakeShopify) -> None:
    _expiring(env, fake, refresh_status=401)
    env.at(NOW + timedelta(seconds=400))  # the access token has expired by now
    with pytest.raises(TokenInvalid) as raised:
        admin_client(env.services, "inst_01", AURORA).execute(SHOP_QUERY)
    assert "shprt" not in str(raised.value) and "shpat" not in str(raised.value)
    assert fake.graphql() == []  # the call was abandoned
    installation = env.installation(AURORA)
    assert installation is not None and installation.token_status == "invalid"
    token_rule(fake, AURORA, name="exchange", access_token="shpat_new", subset={"expiring": "1"})
    query = signed_query({"embedded": "1", "id_token": session_token(AURORA, now=NOW + timedelta(seconds=400)),
                          "shop": AURORA, "timestamp": str(int(NOW.timestamp()) + 390)})
    assert env.client.get(f"/shopify/app?{query}").status_code == 200
    installation = env.installation(AURORA)
    assert installation is not None and installation.token_status == "valid"
    assert "exchange" in fake.called_mocks()


def test_SHP25_transient_refresh_failure_changes_nothing(env: Env, fake: FakeShopify) -> None:
    _expiring(env, fake, refresh_status=503)
    before = env.installation(AURORA)
    with pytest.raises(ShopifyHTTPError):
        admin_client(env.services, "inst_01", AURORA).execute(SHOP_QUERY)
    after = env.installation(AURORA)
    assert before is not None and after is not None
    assert (after.token_status, after.access_token_enc, after.refresh_token_enc) == \
        ("valid", before.access_token_enc, before.refresh_token_enc)


def test_SHP27_daily_recheck_recreates_removed_subscriptions(env: Env, fake: FakeShopify) -> None:
    post_install(env.services, "inst_01")
    removed = fake.shops[AURORA].subscriptions.pop(0)  # Shopify dropped one after repeated delivery failures
    fake.clear()
    assert recheck_subscriptions(env.services) == 1
    (create,) = [r for r in fake.graphql(AURORA) if r.operation == "webhookSubscriptionCreate"]
    assert create.variables["topic"] == removed["topic"]
    assert "webPixelCreate" not in fake.operations(AURORA)  # step 2 only
    env.update_installation(AURORA, status="uninstalled")
    fake.clear()
    assert recheck_subscriptions(env.services) == 0 and fake.requests == []


def test_SHP27_uninstalled_or_manual_installations_are_left_alone(env: Env, fake: FakeShopify) -> None:
    env.update_installation(AURORA, status="uninstalled")
    assert post_install(env.services, "inst_01").shop_stored is False
    assert post_install(env.services, "inst_missing").shop_stored is False
    assert fake.requests == []


def test_SHP77_manual_installation(env: Env, fake: FakeShopify) -> None:
    use_generators(env.services, Generators(connector_token=lambda: "ct-secret-token",
                                            pixel_key=lambda: "ab" * 16))
    made = create_manual_installation(env.services, "Birch-Goods.myshopify.com", "whsec-signing-key", "acct_02",
                                      "test")
    assert made.webhook_url == "https://mbuzz.test/shopify/webhooks/m/ct-secret-token"
    assert "pk_px_" + "ab" * 16 in made.pixel_snippet and "https://mbuzz.test/shopify/pixel/v1/events" in \
        made.pixel_snippet
    assert "ct-secret-token" not in repr(made)
    installation = env.installation(BIRCH)
    assert installation is not None and installation.id == made.installation_id
    assert (installation.mode, installation.status, installation.account_id, installation.environment) == \
        ("manual", "active", "acct_02", "test")
    assert installation.connector_token_sha256 == hashlib.sha256(b"ct-secret-token").hexdigest()
    assert installation.manual_signing_key_enc and env.decrypt(installation.manual_signing_key_enc) == \
        "whsec-signing-key"
    for secret in ("ct-secret-token", "whsec-signing-key", "pk_px_" + "ab" * 16):
        assert env.anywhere_in_db(secret) == []
    assert fake.requests == []  # no Admin API in manual mode
    for shop, key, account, problem in ((AURORA, "k", "acct_01", "shop: aurora"), ("evil.com", "k", "acct_01", "shop"),
                                        (BIRCH, " ", "acct_01", "signing_key"), ("new-shop.myshopify.com", "k",
                                                                                   "acct_none", "account_id")):
        with pytest.raises(ValueError, match=problem):
            create_manual_installation(env.services, shop, key, account, "live")
