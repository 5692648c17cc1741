"""The Admin GraphQL wrapper on the ShopifyAPI package (shopify.md SHP-26), against the local fake Shopify."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import shopify

from connectors.shopify.admin import (
    AdminClient,
    AdminError,
    AdminThrottled,
    AdminUnauthorized,
    admin_client,
    throttle_delay,
)
from connectors.shopify.api_version import API_VERSION
from connectors.shopify.install import SHOP_QUERY
from tests.unit.connectors.shopify.install_env import AURORA, Env
from tools.fake_shopify import FakeShopify

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

THROTTLED = {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
             "extensions": {"cost": {"requestedQueryCost": 102, "actualQueryCost": None,
                                     "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 2,
                                                        "restoreRate": 50.0}}}}


def _client(fake: FakeShopify, sleeps: list[float], **kwargs: Any) -> AdminClient:
    return AdminClient(AURORA, API_VERSION, lambda: "shpat_test", outbound_base=fake.base_url, sleep=sleeps.append,
                       **kwargs)


def test_SHP26_executes_through_the_outbound_base_and_clears_the_session(fake: FakeShopify) -> None:
    sleeps: list[float] = []
    data = _client(fake, sleeps).execute(SHOP_QUERY)
    assert data["shop"]["myshopifyDomain"] == AURORA
    (call,) = fake.requests
    assert call.path == f"/{AURORA}/admin/api/{API_VERSION}/graphql.json"  # http://127.0.0.1:PORT/{shop}/...
    assert call.headers["X-Shopify-Access-Token"] == "shpat_test"
    assert call.query == SHOP_QUERY and call.body["variables"] is None
    assert shopify.ShopifyResource.get_site() is None  # the package's class state is cleared after each call
    assert "X-Shopify-Access-Token" not in shopify.ShopifyResource.get_headers()
    assert sleeps == []


def test_SHP26_throttled_is_retried_after_the_cost_delay(fake: FakeShopify) -> None:
    sleeps: list[float] = []
    fake.script(AURORA, "shop", 200, THROTTLED)
    fake.script(AURORA, "shop", 200, THROTTLED)
    assert _client(fake, sleeps).execute(SHOP_QUERY)["shop"]["name"] == "Aurora Lamps"
    assert sleeps == [2.0, 2.0]  # (102 - 2) / 50 per second
    assert len(fake.requests) == 3


def test_SHP26_gives_up_after_three_retries(fake: FakeShopify) -> None:
    sleeps: list[float] = []
    for _ in range(4):
        fake.script(AURORA, "shop", 200, THROTTLED)
    with pytest.raises(AdminThrottled):
        _client(fake, sleeps).execute(SHOP_QUERY)
    assert len(sleeps) == 3 and len(fake.requests) == 4


def test_SHP26_delay_is_capped_at_ten_seconds() -> None:
    body = {"extensions": {"cost": {"requestedQueryCost": 1000,
                                    "throttleStatus": {"currentlyAvailable": 0, "restoreRate": 50}}}}
    assert throttle_delay(body) == 10.0
    assert throttle_delay({}) == 1.0


def test_SHP26_errors_raise_and_never_carry_the_token(fake: FakeShopify) -> None:
    fake.script(AURORA, "shop", 200, {"errors": [{"message": "Field 'nope' doesn't exist on type 'Shop'",
                                                  "extensions": {"code": "undefinedField"}}]})
    with pytest.raises(AdminError) as raised:
        _client(fake, []).execute(SHOP_QUERY)
    assert "undefinedField" in str(raised.value) and "shpat_test" not in str(raised.value)
    fake.script(AURORA, "shop", 500, {"errors": "Internal"})
    with pytest.raises(AdminError, match="HTTP 500"):
        _client(fake, []).execute(SHOP_QUERY)
    assert shopify.ShopifyResource.get_site() is None


def test_SHP25_SHP26_unauthorized_marks_the_installation_token_invalid(env: Env, fake: FakeShopify) -> None:
    fake.shops[AURORA].tokens = {"some-other-token"}
    with pytest.raises(AdminUnauthorized):
        admin_client(env.services, "inst_01", AURORA).execute(SHOP_QUERY)
    installation = env.installation(AURORA)
    assert installation is not None and installation.token_status == "invalid"


def test_SHP26_one_call_at_a_time_across_threads(fake: FakeShopify) -> None:
    """Concurrent callers with different tokens each reach Shopify with their own token (the lock)."""
    results: dict[str, str] = {}

    def call(token: str) -> None:
        client = AdminClient(AURORA, API_VERSION, lambda: token, outbound_base=fake.base_url)
        client.execute(SHOP_QUERY)
        results[token] = "ok"

    threads = [threading.Thread(target=call, args=(f"shpat_{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert sorted(r.headers["X-Shopify-Access-Token"] for r in fake.requests) == sorted(results)
