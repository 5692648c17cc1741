"""The embedded page and its JSON API (shopify.md SHP-6, SHP-28, SHP-80..SHP-83, SHP-87 downloads)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.shopify import install
from connectors.shopify import models as sm
from connectors.shopify.install import (
    Generators,
    canonical_code,
    claimable_account,
    create_connect_code,
    use_generators,
)
from core.crypto import cipher
from core.ids import new_id
from core.storage import models as m
from tests.unit.connectors.shopify.install_env import (
    API_KEY,
    AURORA,
    BIRCH,
    NOW,
    Env,
    bearer,
    build_env,
    host_param,
    session_token,
    signed_query,
)
from tools.fake_shopify import FakeShopify

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def _get(env: Env, path: str, shop: str = AURORA, sub: str = "84920001") -> Any:
    return env.client.get(path, headers=bearer(session_token(shop, now=env.services.now(), sub=sub)))


def _post(env: Env, path: str, body: Any, shop: str = AURORA, sub: str = "84920001") -> Any:
    return env.client.post(path, data=json.dumps(body), content_type="application/json",
                           headers=bearer(session_token(shop, now=env.services.now(), sub=sub)))


def _order(env: Env, order_id: str, method: str | None, days_ago: float, status: str = "converted",
           test: bool = False) -> None:
    with env.services.sessions.begin() as db:
        db.add(m.ShopifyOrder(account_id="acct_01", id=new_id("sho", NOW), environment="live",
                              installation_id="inst_01", order_id=order_id, test=test, status=status,
                              attribution_method=method, processed_at=NOW - timedelta(days=days_ago),
                              created_at=NOW, updated_at=NOW))


def _delivery(env: Env, topic: str, received: Any, body: dict[str, Any] | None = None, status: str = "processed",
              customer_id: str | None = None, shop: str = AURORA) -> str:
    settings = env.services.settings
    box = cipher(settings.encryption_keys, settings.secret_key)
    delivery_id = new_id("whd", received)
    with env.services.sessions.begin() as db:
        db.add(sm.ShopifyWebhookDelivery(
            id=delivery_id, webhook_id=f"w-{delivery_id}", topic=topic, shop_domain=shop, received_at=received,
            body_sha256="0" * 64, body_enc=box.encrypt(json.dumps(body or {}).encode()).decode(),
            customer_id=customer_id, status=status))
    return delivery_id


def _pending(env: Env, shop: str = AURORA) -> None:
    env.update_installation(shop, status="pending_connect", account_id=None)


def test_SHP82_status_document(env: Env) -> None:
    _order(env, "1", "cart_attribute", 1)
    _order(env, "2", "cart_attribute", 2)
    _order(env, "3", "pixel_checkout_token", 3)
    _order(env, "4", "email_identity", 20)  # only in the 30-day window
    _order(env, "5", "none", 1, test=True)  # test orders are excluded
    _order(env, "6", None, 1, status="parked")
    _order(env, "7", "offline", 45)  # outside both windows
    _delivery(env, "orders/paid", NOW - timedelta(hours=2), {"customer": {"id": 7, "email": "a@example.com"}},
              customer_id="7")
    _delivery(env, "orders/paid", NOW - timedelta(hours=1), {"customer": {"id": 8}}, status="failed",
              customer_id="8")
    resp = _get(env, "/shopify/api/status")
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.get_json()
    assert set(body) == {"installation", "webhooks", "pixel", "token", "coverage", "parked_orders", "pcd_warning",
                         "pcd_refused_topics", "settings"}
    assert body["installation"] == {"shop_domain": AURORA, "status": "active", "mode": "app", "environment": "live",
                                    "account_id": "acct_01", "connected": True}
    hooks = {h["topic"]: h for h in body["webhooks"]}
    assert set(hooks) == {"orders/paid", "orders/create", "orders/cancelled", "refunds/create", "customers/create",
                          "customers/update", "shop/update", "app/uninstalled"}
    assert hooks["orders/paid"] == {"topic": "orders/paid", "registered": False,
                                    "last_delivery_at": "2026-05-20T02:30:00Z", "last_status": "failed",
                                    "refused": None}
    assert hooks["app/uninstalled"]["registered"] is True  # declared in the app configuration file
    assert body["pixel"] == {"registered": True, "last_seen_at": None}
    assert body["token"] == {"status": "valid", "expires_at": "2026-12-31T00:00:00Z"}
    week, month = body["coverage"]["7d"], body["coverage"]["30d"]
    assert list(week) == ["cart_attribute", "pixel_checkout_token", "pixel_order_id", "sgtm_transaction",
                          "customer_identity", "email_identity", "journey_summary", "offline",
                          "subscription_renewal", "none"]
    assert week["cart_attribute"] == {"count": 2, "share": "0.6667"}
    assert week["pixel_checkout_token"] == {"count": 1, "share": "0.3333"}
    assert week["email_identity"] == {"count": 0, "share": "0.0000"} and week["none"]["count"] == 0
    assert month["email_identity"] == {"count": 1, "share": "0.2500"} and month["offline"]["count"] == 0
    assert body["parked_orders"] == 1
    assert body["pcd_warning"] is True  # a customer id without an e-mail in the last 50 order deliveries
    assert body["pcd_refused_topics"] == []  # no subscription run has been refused
    assert body["settings"] == {"revenue_basis": "total", "offline_orders": "include_unattributed",
                                "exclude_test_orders": False, "journey_summary": False, "environment": "live"}


def test_SHP82_settings_change_is_audited_per_field(env: Env, fake: FakeShopify) -> None:
    resp = _post(env, "/shopify/api/settings", {"revenue_basis": "subtotal", "journey_summary": False},
                 sub="staff-42")
    assert resp.status_code == 200
    assert resp.get_json() == {"revenue_basis": "subtotal", "offline_orders": "include_unattributed",
                               "exclude_test_orders": False, "journey_summary": False, "environment": "live"}
    with env.services.sessions() as db:
        rows = db.scalars(sa.select(sm.ShopifySettingsAudit)).all()
    assert [(r.installation_id, r.staff_user_id, r.field, r.old, r.new, r.at) for r in rows] == \
        [("inst_01", "staff-42", "revenue_basis", "total", "subtotal", NOW)]  # unchanged values: no row
    assert fake.requests == []  # SHP-83: nothing is re-run for a non-environment setting
    # SHP-99: changing the environment re-runs the post-install job (a new key for the new environment)
    resp = _post(env, "/shopify/api/settings", {"environment": "test"})
    assert resp.status_code == 200 and resp.get_json()["environment"] == "test"
    installation = env.installation(AURORA)
    assert installation is not None and installation.environment == "test"
    assert installation.settings["revenue_basis"] == "subtotal"
    assert "webPixelCreate" in fake.operations(AURORA)
    with env.services.sessions() as db:
        keys = db.scalars(sa.select(m.ApiKey).where(m.ApiKey.kind == "pixel", m.ApiKey.revoked_at.is_(None))).all()
        fields = db.scalars(sa.select(sm.ShopifySettingsAudit.field).order_by(sm.ShopifySettingsAudit.field)).all()
    assert [k.environment for k in keys] == ["test"]
    assert fields == ["environment", "revenue_basis"]


@pytest.mark.parametrize("body", [{"revenue_basis": "gross"}, {"exclude_test_orders": "yes"}, {"colour": "red"},
                                  {"_connector": {}}, ["revenue_basis"]])
def test_SHP82_invalid_settings_are_422_and_change_nothing(env: Env, body: Any) -> None:
    resp = _post(env, "/shopify/api/settings", body)
    assert resp.status_code == 422
    answer = resp.get_json()
    assert answer["success"] is False and answer["errors"]
    if isinstance(body, dict):
        assert answer["errors"][0].startswith(next(iter(body)))  # the message names the field
    with env.services.sessions() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(sm.ShopifySettingsAudit)) == 0
    installation = env.installation(AURORA)
    assert installation is not None and installation.settings["revenue_basis"] == "total"


def test_SHP28_connect_with_a_code(env: Env, fake: FakeShopify, monkeypatch: pytest.MonkeyPatch) -> None:
    _pending(env)
    use_generators(env.services, Generators(connect_code=lambda: "7K3QW9ZD"))
    code = create_connect_code(env.services, "acct_02", "test")
    assert code == "MBZ-7K3Q-W9ZD"
    with env.services.sessions() as db:
        (row,) = db.scalars(sa.select(sm.ShopifyConnectCode)).all()
    assert row.code_sha256 != code and len(row.code_sha256) == 64 and row.expires_at == NOW + timedelta(minutes=30)
    assert env.anywhere_in_db("7K3Q") == []  # stored hashed only
    old = _delivery(env, "shop/update", NOW - timedelta(days=8), {"name": "Old"}, status="deferred")
    first = _delivery(env, "shop/update", NOW - timedelta(days=2), {"name": "First"}, status="deferred")
    second = _delivery(env, "shop/update", NOW - timedelta(days=1), {"name": "Second"}, status="deferred")
    processed: list[str] = []
    real = install.process_delivery  # type: ignore[attr-defined]

    def recording(services: Any, delivery_id: str) -> None:
        processed.append(delivery_id)
        real(services, delivery_id)

    monkeypatch.setattr(install, "process_delivery", recording)
    resp = _post(env, "/shopify/api/connect", {"code": "mbz 7k3q-w9zd"})  # Crockford reading: case-free
    assert resp.status_code == 200
    assert resp.get_json() == {"account_id": "acct_02", "environment": "test"}
    installation = env.installation(AURORA)
    assert installation is not None
    assert (installation.status, installation.account_id, installation.environment) == ("active", "acct_02", "test")
    assert processed == [first, second]  # in receipt order, after the post-install job
    with env.services.sessions() as db:
        statuses = {d.id: (d.status, d.error) for d in db.scalars(sa.select(sm.ShopifyWebhookDelivery))}
    assert statuses[old] == ("ignored", "too_old")
    assert statuses[first][0] != "deferred" and statuses[second][0] != "deferred"
    assert fake.operations(AURORA)[0] == "shop" and "webPixelCreate" in fake.operations(AURORA)
    # 409 once connected; the code is single use
    assert _post(env, "/shopify/api/connect", {"code": code}).status_code == 409
    _pending(env)
    resp = _post(env, "/shopify/api/connect", {"code": code})
    assert (resp.status_code, resp.get_json()) == (422, {"success": False, "errors": ["invalid or expired code"]})


@pytest.mark.parametrize("body", [{"code": "MBZ-AAAA-BBBB"}, {"code": "nonsense"}, {"code": 12}, {},
                                  {"create_account": "yes"}])
def test_SHP28_connect_refusals_are_422(env: Env, body: dict[str, Any]) -> None:
    _pending(env)
    resp = _post(env, "/shopify/api/connect", body)
    assert resp.status_code == 422 and resp.get_json()["success"] is False
    installation = env.installation(AURORA)
    assert installation is not None and installation.status == "pending_connect"


def test_SHP28_expired_code_is_422(env: Env) -> None:
    _pending(env)
    code = create_connect_code(env.services, "acct_02", "live")
    env.at(NOW + timedelta(minutes=31))
    assert _post(env, "/shopify/api/connect", {"code": code}).status_code == 422


def test_SHP28_create_account_answers_a_one_time_claim_url(env: Env) -> None:
    _pending(env)
    resp = _post(env, "/shopify/api/connect", {"create_account": True})
    assert resp.status_code == 200
    answer = resp.get_json()
    assert answer["account_id"].startswith("acct_") and answer["environment"] == "live"
    token = re.fullmatch(r"https://mbuzz\.test/claim/(.+)", answer["claim_url"])
    assert token is not None
    with env.services.sessions() as db:
        account = db.get(m.Account, answer["account_id"])
        assert account is not None and account.name == "Aurora Lamps"  # named after the shop
        assert claimable_account(env.services, db, token.group(1)) == answer["account_id"]
        assert claimable_account(env.services, db, token.group(1) + "x") is None
    env.at(NOW + timedelta(hours=25))
    with env.services.sessions() as db:
        assert claimable_account(env.services, db, token.group(1)) is None  # valid 24 h
    installation = env.installation(AURORA)
    assert installation is not None and (installation.status, installation.account_id) == \
        ("active", answer["account_id"])
    assert _post(env, "/shopify/api/connect", {"create_account": True}).status_code == 409


def test_SHP28_code_reading_rules() -> None:
    assert canonical_code("MBZ-7K3Q-W9ZD") == "MBZ-7K3Q-W9ZD"
    assert canonical_code("mbz7k3qw9zd") == "MBZ-7K3Q-W9ZD"
    assert canonical_code("MBZ-ILO0-0000") == "MBZ-1100-0000"  # I and L read as 1, O as 0
    assert canonical_code("MBZ-UUUU-0000") is None  # U is not a Crockford digit
    assert canonical_code("MBZ-123") is None


def test_SHP27_repair_is_202_and_reruns_the_job(env: Env, fake: FakeShopify) -> None:
    resp = _post(env, "/shopify/api/repair", {})
    assert (resp.status_code, resp.get_json()) == (202, {"status": "queued"})
    assert fake.operations(AURORA)[:3] == ["shop", "webPixelCreate", "webhookSubscriptions"]


def _data_request(env: Env, shop: str, expires_in: timedelta, status: str = "ready") -> str:
    settings = env.services.settings
    export = json.dumps({"data_request_id": "9001", "customer_id": "7001", "order_ids": ["1"]}).encode()
    row_id = new_id("dreq", NOW)
    with env.services.sessions.begin() as db:
        db.add(sm.ShopifyDataRequest(
            id=row_id, shop_domain=shop, data_request_id="9001", customer_id="7001", status=status,
            export_enc=cipher(settings.encryption_keys, settings.secret_key).encrypt(export).decode(),
            created_at=NOW - timedelta(days=1), ready_at=NOW - timedelta(days=1), expires_at=NOW + expires_in))
    return row_id


def test_SHP82_data_requests_list_and_download_until_expiry(env: Env) -> None:
    mine = _data_request(env, AURORA, timedelta(days=29))
    other = _data_request(env, BIRCH, timedelta(days=29))
    listed = _get(env, "/shopify/api/data-requests").get_json()
    assert [(r["id"], r["status"], r["download_url"]) for r in listed] == \
        [(mine, "ready", f"/shopify/api/data-requests/{mine}/download")]
    resp = _get(env, f"/shopify/api/data-requests/{mine}/download")
    assert resp.status_code == 200
    assert resp.headers["Content-Disposition"] == f'attachment; filename="shopify-data-request-{mine}.json"'
    assert resp.get_json()["customer_id"] == "7001"
    assert _get(env, f"/shopify/api/data-requests/{other}/download").status_code == 404  # another shop's
    env.at(NOW + timedelta(days=30))
    assert _get(env, f"/shopify/api/data-requests/{mine}/download").status_code == 404  # expired
    assert _get(env, "/shopify/api/data-requests").get_json()[0]["status"] == "expired"


def _app_page(env: Env, shop: str = AURORA) -> Any:
    query = signed_query({"embedded": "1", "host": host_param(shop), "id_token": session_token(shop), "shop": shop,
                          "timestamp": str(int(NOW.timestamp()))})
    return env.client.get(f"/shopify/app?{query}")


def test_SHP80_SHP81_page_headers_head_and_section_order(env: Env) -> None:
    resp = _app_page(env)
    assert resp.status_code == 200
    assert resp.headers["Content-Security-Policy"] == \
        f"frame-ancestors https://{AURORA} https://admin.shopify.com;"
    assert "X-Frame-Options" not in resp.headers
    html = resp.get_data(as_text=True)
    head = html.split("</head>", 1)[0]
    first_script = head.index("<script")
    assert head[first_script:].startswith('<script src="https://cdn.shopify.com/shopifycloud/app-bridge.js">')
    assert head.index(f'<meta name="shopify-api-key" content="{API_KEY}">') < first_script
    order = [html.index(f'<section id="{s}"') for s in ("connect", "status", "coverage", "settings",
                                                         "data-requests", "repair")]
    assert order == sorted(order)
    assert '<section id="connect" hidden' in html  # connected: no connect section
    assert "innerHTML" not in html  # data reaches the page through textContent only
    _pending(env)
    assert '<section id="connect" aria' in _app_page(env).get_data(as_text=True)


def test_SHP80_everything_is_escaped(env: Env) -> None:
    env.update_installation(AURORA, shop_name='<script>alert("x")</script>&')
    html = _app_page(env).get_data(as_text=True)
    assert '<script>alert("x")</script>' not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;" in html


def test_SHP6_not_configured_hides_the_app_routes(tmp_path: Path, fake: FakeShopify) -> None:
    env = build_env(tmp_path, fake, shopify_api_key=None)
    for method, path in (("GET", "/shopify/app"), ("GET", "/shopify/auth?shop=x.myshopify.com"),
                         ("GET", "/shopify/auth/callback"), ("GET", "/shopify/api/status"),
                         ("POST", "/shopify/api/connect"), ("POST", "/shopify/webhooks"), ("GET", "/shopify/nope")):
        resp = env.client.open(path, method=method)
        assert (resp.status_code, resp.get_json()) == (404, {"error": "shopify_not_configured"}), path
    for path in ("/shopify/pixel/v1/events", "/shopify/webhooks/m/abc"):
        assert env.client.post(path, data=b"{}").get_json() != {"error": "shopify_not_configured"}
