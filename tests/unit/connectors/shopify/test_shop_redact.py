"""`shop/redact` forgets the identities the shop brought (shopify.md SHP-89), and only those."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from core.envelope import command_from_envelope
from core.storage import models as m
from core.tenant import Tenant
from tests.unit.connectors.shopify.install_env import AURORA, NOW, SECRET, Env

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

LIVE = Tenant("acct_01", "live")


def _deliver(env: Env, topic: str, body: dict[str, Any]) -> Any:
    raw = json.dumps(body).encode()
    digest = base64.b64encode(hmac.new(SECRET.encode(), raw, hashlib.sha256).digest()).decode()
    return env.client.post("/shopify/webhooks", data=raw, headers={
        "X-Shopify-Hmac-Sha256": digest, "X-Shopify-Shop-Domain": AURORA, "X-Shopify-Topic": topic,
        "X-Shopify-Webhook-Id": f"w-{topic}-{hashlib.sha256(raw).hexdigest()[:12]}",
        "Content-Type": "application/json"})


def _customer(customer_id: int, at: str) -> dict[str, Any]:
    return {"id": customer_id, "email": f"c{customer_id}@example.com", "first_name": "C", "updated_at": at,
            "created_at": at}


def _identities(env: Env) -> dict[str, str | None]:
    with env.services.sessions() as db:
        return {str(u.user_key): u.origin for u in db.scalars(sa.select(m.User).where(
            m.User.account_id == "acct_01", m.User.environment == "live"))}


def _links(env: Env, user_key: str) -> int:
    with env.services.sessions() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(m.VisitorLink).join(
            m.User, sa.and_(m.User.account_id == m.VisitorLink.account_id, m.User.id == m.VisitorLink.user_id))
            .where(m.User.user_key == user_key)) or 0)


def test_SHP89_identities_the_shop_created_are_deleted_others_stay(env: Env) -> None:
    at = (NOW - timedelta(hours=1)).isoformat()
    for customer_id in (501, 502):
        assert _deliver(env, "customers/create", _customer(customer_id, at)).status_code == 200
    log = env.services.log
    # The merchant's own app: an identity of its CRM, and a sale of customer 502 through the REST API.
    log.append(LIVE, [command_from_envelope({"kind": "identify", "idempotency_key": "crm-1", "user_id": "crm-1",
                                             "visitor_id": "v-api-1", "occurred_at": at}, NOW)])
    log.append(LIVE, [command_from_envelope({"kind": "identify", "idempotency_key": "link-501",
                                             "user_id": "shopify:501", "visitor_id": "v-api-2", "occurred_at": at},
                                            NOW)])
    log.append(LIVE, [command_from_envelope({"kind": "conversion", "idempotency_key": "api-sale-502",
                                             "conversion_type": "purchase", "converted_at": at,
                                             "user_id": "shopify:502"}, NOW)])
    assert _identities(env) == {"shopify:501": "shopify:inst_01", "shopify:502": "shopify:inst_01", "crm-1": None}
    assert _links(env, "shopify:501") == 1
    env.update_installation(AURORA, status="uninstalled")
    assert _deliver(env, "shop/redact", {"shop_id": 954889, "shop_domain": AURORA}).status_code == 200
    # 501 came from the shop only: gone with its link. 502 is named by the merchant's own sale: kept.
    assert _identities(env) == {"shopify:502": "shopify:inst_01", "crm-1": None}
    assert _links(env, "shopify:501") == 0
    with env.services.sessions() as db:
        sale = db.scalars(sa.select(m.Conversion).where(m.Conversion.idempotency_key == "api-sale-502")).one()
        assert sale.user_id is not None
