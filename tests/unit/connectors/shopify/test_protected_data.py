"""A shop whose app lacks Shopify's protected-customer-data approval (shopify.md SHP-27, SHP-81, SHP-82, SHP-98;
issue 14).

Without that approval Shopify refuses `webhookSubscriptionCreate` for order and customer topics with a user error.
The post-install job registers the web pixel first, then subscribes topic by topic: the refused topics are recorded
on the installation and shown, with what to do, on the embedded page's status and on the dashboard's Integrations
page, while the pixel and the other topics work. Once approved, the daily re-check (or Repair) subscribes them.
The local fake Shopify answers exactly as Shopify does without approval.
"""

from __future__ import annotations

import re

import pytest

from connectors.shopify.admin import AdminError
from connectors.shopify.install import PCD_REFUSAL, post_install, recheck_subscriptions, refused_topics
from core.accounts import hash_password
from core.storage import models as m
from tests.unit.connectors.shopify.install_env import (
    ALL_TOPICS,
    AURORA,
    NOW,
    Env,
    bearer,
    host_param,
    session_token,
    signed_query,
)
from tools.fake_shopify import PCD_MESSAGE, PROTECTED_TOPICS, FakeShopify

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

REFUSED = sorted(t.lower().replace("_", "/", 1) for t in PROTECTED_TOPICS)  # orders/paid, customers/create, ...


def _status(env: Env) -> dict[str, object]:
    resp = env.client.get("/shopify/api/status", headers=bearer(session_token(AURORA)))
    assert resp.status_code == 200
    body: dict[str, object] = resp.get_json()
    return body


def test_SHP27_without_approval_the_pixel_and_the_other_topics_still_work(env: Env, fake: FakeShopify) -> None:
    fake.shops[AURORA].protected_data_approved = False
    result = post_install(env.services, "inst_01")  # no exception: a missing approval is not a failure to retry
    ops = fake.operations(AURORA)
    assert ops[:2] == ["shop", "webPixelCreate"]  # the pixel first
    assert ops.count("webhookSubscriptionCreate") == len(ALL_TOPICS)  # every topic was tried, one by one
    assert result.pixel_id is not None and fake.shops[AURORA].pixel is not None
    assert sorted(result.topics_created) == sorted(set(ALL_TOPICS) - PROTECTED_TOPICS)
    assert {s["topic"] for s in fake.shops[AURORA].subscriptions} == set(ALL_TOPICS) - PROTECTED_TOPICS
    installation = env.installation(AURORA)
    assert installation is not None
    assert refused_topics(installation) == {t: {"reason": PCD_REFUSAL, "message": PCD_MESSAGE} for t in REFUSED}
    status = _status(env)
    assert status["pcd_refused_topics"] == REFUSED
    hooks = {h["topic"]: h for h in status["webhooks"]}  # type: ignore[attr-defined]
    assert hooks["orders/paid"]["registered"] is False and hooks["orders/paid"]["refused"] == PCD_REFUSAL
    assert hooks["shop/update"]["registered"] is True and hooks["shop/update"]["refused"] is None
    assert status["pixel"] == {"registered": True, "last_seen_at": None}


def test_SHP27_once_approved_the_daily_recheck_subscribes_the_refused_topics(env: Env, fake: FakeShopify) -> None:
    fake.shops[AURORA].protected_data_approved = False
    post_install(env.services, "inst_01")
    fake.shops[AURORA].protected_data_approved = True  # the Partner Dashboard request was granted
    fake.clear()
    assert recheck_subscriptions(env.services) == len(PROTECTED_TOPICS)
    created = {r.variables["topic"] for r in fake.graphql(AURORA) if r.operation == "webhookSubscriptionCreate"}
    assert created == PROTECTED_TOPICS
    installation = env.installation(AURORA)
    assert installation is not None and refused_topics(installation) == {}
    assert _status(env)["pcd_refused_topics"] == []


def test_SHP27_another_refusal_is_recorded_and_raised_after_every_step(env: Env, fake: FakeShopify) -> None:
    fake.script(AURORA, "webhookSubscriptionCreate", 200, {"data": {"webhookSubscriptionCreate": {
        "webhookSubscription": None, "userErrors": [{"field": ["webhookSubscription", "callbackUrl"],
                                                      "message": "Address is invalid"}]}}})
    with pytest.raises(AdminError, match="orders/paid: Address is invalid"):
        post_install(env.services, "inst_01")
    assert fake.shops[AURORA].pixel is not None  # the pixel was registered before
    assert fake.operations(AURORA).count("webhookSubscriptionCreate") == len(ALL_TOPICS)  # the rest were tried
    installation = env.installation(AURORA)
    assert installation is not None
    assert refused_topics(installation) == {"orders/paid": {"reason": "refused", "message": "Address is invalid"}}
    assert _status(env)["pcd_refused_topics"] == []  # not a protected-data refusal: no approval advice


def test_SHP81_the_embedded_page_carries_the_explanation(env: Env) -> None:
    query = signed_query({"embedded": "1", "host": host_param(AURORA), "id_token": session_token(AURORA),
                          "shop": AURORA, "timestamp": str(int(NOW.timestamp()))})
    page = env.client.get(f"/shopify/app?{query}").get_data(as_text=True)
    assert 'id="pcd-refused"' in page and "Protected customer data" in page and "pcd_refused_topics" in page


def test_SHP81_the_dashboard_integrations_page_shows_the_refusal(env: Env, fake: FakeShopify) -> None:
    fake.shops[AURORA].protected_data_approved = False
    post_install(env.services, "inst_01")
    with env.services.sessions.begin() as db:
        db.add(m.DashboardUser(account_id="acct_01", id="usr_pcd", email="owner@aurora.example",
                               password_hash=hash_password("correct horse battery"), created_at=NOW))
    client = env.app.test_client()
    form = client.get("/dashboard/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf is not None
    login = client.post("/dashboard/login", data={"email": "owner@aurora.example",
                                                  "password": "correct horse battery", "csrf_token": csrf.group(1)})
    assert login.status_code == 302, login.get_data(as_text=True)[:300]
    page = client.get("/dashboard/integrations").get_data(as_text=True)
    warning = re.search(r'data-testid="pcd-refused">(.*?)</div>', page, re.S)
    assert warning is not None, page[:2000]
    text = warning.group(1)
    assert all(topic in text for topic in REFUSED) and AURORA in text
    assert "Protected customer data" in text and "Email field for level 2" in text
