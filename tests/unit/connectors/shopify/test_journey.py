"""Step 7 of the linking chain (shopify.md SHP-56) against the local fake Shopify: an order nothing else links
is credited to the visits Shopify's journey summary reports, as sessions of its synthetic visitor (SHP-53)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from core.storage import models as m
from tests.unit.connectors.shopify.install_env import AURORA, Env
from tests.unit.connectors.shopify.test_orders import PROCESSED, _deliver, _order
from tools.fake_shopify import FakeShopify

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

SUMMARY = {"ready": True,
           "firstVisit": {"occurredAt": "2026-05-12T09:00:00Z", "landingPage": "https://aurora-lamps.com/lamps?ref=x",
                          "referrerUrl": "https://www.google.com/",
                          "utmParameters": {"source": "google", "medium": "cpc", "campaign": "spring",
                                            "content": None, "term": None}},
           "lastVisit": {"occurredAt": "2026-05-19T20:00:00Z", "landingPage": "https://aurora-lamps.com/",
                         "referrerUrl": "https://l.facebook.com/", "utmParameters": None}}


def _journey_on(env: Env) -> None:
    installation = env.installation(AURORA)
    assert installation is not None
    env.update_installation(AURORA, settings={**installation.settings, "journey_summary": True})


def _order_state(env: Env, order: dict[str, Any]) -> tuple[m.Conversion, list[m.Session]]:
    key = f"shopify:inst_01:order:{order['id']}"
    with env.services.sessions() as db:
        conv = db.scalars(sa.select(m.Conversion).where(m.Conversion.idempotency_key == key)).one()
        sessions = list(db.scalars(sa.select(m.Session).where(m.Session.visitor_id == conv.visitor_id)
                                   .order_by(m.Session.started_at)))
        db.expunge_all()
    return conv, sessions


def _visitor_key(env: Env, visitor_id: str) -> str:
    with env.services.sessions() as db:
        visitor = db.get(m.Visitor, ("acct_01", visitor_id))
        assert visitor is not None
        return str(visitor.visitor_key)


def test_SHP56_journey_summary_credits_the_visits_shopify_saw(env: Env, fake: FakeShopify) -> None:
    _journey_on(env)
    env.at(PROCESSED + timedelta(hours=2))  # not parkable any more: steps 7 and 8 apply at once
    order = _order()
    fake.script(AURORA, "order", 200, {"data": {"order": {"customerJourneySummary": SUMMARY}}})
    assert _deliver(env.client, order) == 200
    (call,) = [r for r in fake.graphql(AURORA) if r.operation == "order"]
    assert call.variables == {"id": f"gid://shopify/Order/{order['id']}"}
    conv, sessions = _order_state(env, order)
    key = f"shopify:inst_01:order:{order['id']}"
    assert conv.properties["attribution_method"] == "journey_summary"
    assert _visitor_key(env, conv.visitor_id) == hashlib.sha256(f"anon:{key}".encode()).hexdigest()  # SHP-53
    assert [(s.started_at.isoformat(), s.channel) for s in sessions] == [
        ("2026-05-12T09:00:00+00:00", "paid_search"), ("2026-05-19T20:00:00+00:00", "organic_social")]
    # UTM parameters the landing page lacked are added to it; its own query string is kept.
    assert sessions[0].landing_url == "https://aurora-lamps.com/lamps?ref=x&utm_source=google&utm_medium=cpc" \
                                      "&utm_campaign=spring"


@pytest.mark.parametrize("answer", [
    (500, {"errors": "Internal error"}),
    (200, {"data": {"order": {"customerJourneySummary": {"ready": False, "firstVisit": None, "lastVisit": None}}}}),
    (200, {"data": {"order": {"customerJourneySummary": {"ready": True, "firstVisit": None, "lastVisit": None}}}}),
    (200, {"data": {"order": None}}),
], ids=["http_error", "not_ready", "no_visit", "no_order"])
def test_SHP56_without_a_usable_summary_the_order_is_recorded_unattributed(
        env: Env, fake: FakeShopify, answer: tuple[int, Any]) -> None:
    _journey_on(env)
    env.at(PROCESSED + timedelta(hours=2))
    order = _order()
    fake.script(AURORA, "order", *answer)
    assert _deliver(env.client, order) == 200
    conv, sessions = _order_state(env, order)
    assert conv.properties["attribution_method"] == "none" and conv.revenue_minor == 12950  # never dropped
    assert sessions == []


def test_SHP56_the_step_is_off_by_default(env: Env, fake: FakeShopify) -> None:
    env.at(PROCESSED + timedelta(hours=2))
    order = _order()
    assert _deliver(env.client, order) == 200
    assert [r for r in fake.graphql(AURORA) if r.operation == "order"] == []
    assert _order_state(env, order)[0].properties["attribution_method"] == "none"
