"""Identify over HTTP: links, relinks, traits and hashed PII (sessions.md ID-1..ID-14, api.md API-100/101)."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from core.storage import models as m
from tests.conftest import AccountKeys
from tests.integration.helpers import ago, fixture, fixture_bytes, iso, post, subset_match, touch


def _user(app: Flask, acct: AccountKeys, user_key: str) -> m.User:
    with app.config["MBUZZ"].sessions() as db:
        row = db.scalars(sa.select(m.User).where(m.User.account_id == acct.account_id,
                                                 m.User.user_key == user_key)).one()
        db.expunge(row)
        return row


def test_API101_identify_fixture_answer(client: FlaskClient, acct: AccountKeys) -> None:
    resp = post(client, acct, "/identify", fixture_bytes("identify_request.json"))
    assert resp.status_code == 200
    assert subset_match(fixture("identify_response.json"), resp.get_json()) == []


def test_ID5_traits_merge_overwrite_and_delete(app: Flask, client: FlaskClient, acct: AccountKeys) -> None:
    post(client, acct, "/identify", {"user_id": 7, "traits": {"plan": "free", "name": "Jo", "tags": [1]}})
    post(client, acct, "/identify", {"user_id": "7", "traits": {"plan": "pro", "name": None, "tags": [2]}})
    user = _user(app, acct, "7")
    assert user.traits == {"plan": "pro", "tags": [2]}
    assert user.first_identified_at is not None and user.last_identified_at >= user.first_identified_at


def test_ID6_email_hashed_and_removed(app: Flask, client: FlaskClient, acct: AccountKeys) -> None:
    resp = post(client, acct, "/identify", {"user_id": "e1", "traits": {"email": "  Jane@Example.COM "}})
    assert "warnings" not in resp.get_json()
    user = _user(app, acct, "e1")
    assert user.email_sha256 == hashlib.sha256(b"jane@example.com").hexdigest()
    assert "email" not in user.traits
    bad = post(client, acct, "/identify", {"user_id": "e1", "traits": {"email": "not-an-email"}}).get_json()
    assert bad["warnings"] == ["traits.email is not a valid email address; ignored"]
    assert _user(app, acct, "e1").email_sha256 == user.email_sha256  # nothing ever erases it


def test_ID7_phone_normalized_to_e164_and_hashed(app: Flask, client: FlaskClient, acct: AccountKeys) -> None:
    post(client, acct, "/identify", {"user_id": "p1", "traits": {"phone": "0044 (20) 7946-0958"}})
    user = _user(app, acct, "p1")
    assert user.phone_sha256 == hashlib.sha256(b"+442079460958").hexdigest()
    assert "phone" not in user.traits
    warned = post(client, acct, "/identify", {"user_id": "p1", "traits": {"phone": "12"}}).get_json()
    assert warned["warnings"] == ["traits.phone could not be normalized to E.164; ignored"]


def test_ID4_relink_moves_the_visitor_from_then_on(client: FlaskClient, acct: AccountKeys) -> None:
    shared = "shared-computer"
    touch(client, acct, shared, "https://acme.com/?utm_source=google&utm_medium=cpc", ago(days=5))
    post(client, acct, "/identify", {"user_id": "alice", "visitor_id": shared, "timestamp": iso(ago(days=4))})
    post(client, acct, "/identify", {"user_id": "bob", "visitor_id": shared, "timestamp": iso(ago(days=3))})
    touch(client, acct, shared, "https://acme.com/?utm_source=newsletter&utm_medium=email", ago(days=2))
    bob = post(client, acct, "/conversions", {"conversion_type": "x", "user_id": "bob"}).get_json()
    alice = post(client, acct, "/conversions", {"conversion_type": "x", "user_id": "alice"}).get_json()
    assert [c["channel"] for c in bob["attribution"]["models"]["linear"]] == ["email"]
    assert [c["channel"] for c in alice["attribution"]["models"]["linear"]] == ["paid_search"]


def test_ID3_implicit_link_from_event(client: FlaskClient, acct: AccountKeys) -> None:
    touch(client, acct, "imp-v", "https://acme.com/?utm_source=bing", ago(days=1))
    post(client, acct, "/events", {"event_type": "login", "visitor_id": "imp-v", "user_id": "imp-u"})
    body = post(client, acct, "/conversions", {"conversion_type": "x", "user_id": "imp-u"}).get_json()
    assert body["attribution"]["models"]["first_touch"][0]["channel"] == "organic_search"
    assert body["visitor_id"] == "imp-v"


def test_ID9_identifier_email_resolves_to_identified_user(client: FlaskClient, acct: AccountKeys) -> None:
    touch(client, acct, "id9-v", "https://acme.com/?utm_source=newsletter&utm_medium=email", ago(days=1))
    post(client, acct, "/identify", {"user_id": "id9", "visitor_id": "id9-v", "traits": {"email": "x@y.co"}})
    body = post(client, acct, "/events", {"event_type": "e", "identifier": {"email": "X@y.co"}}).get_json()
    assert body["accepted"] == 1
    conv = post(client, acct, "/conversions", {"conversion_type": "c", "user_id": "id9"}).get_json()
    assert conv["attribution"]["sessions_analyzed"] == 1


def _credits(app: Flask, acct: AccountKeys, conversion_id: str, model: str = "linear") -> list[str]:
    with app.config["MBUZZ"].sessions() as db:
        rows = db.scalars(sa.select(m.AttributionCredit).where(
            m.AttributionCredit.account_id == acct.account_id, m.AttributionCredit.conversion_id == conversion_id,
            m.AttributionCredit.model == model).order_by(m.AttributionCredit.touchpoint_index)).all()
        return [r.channel for r in rows]


def test_SES13_late_session_reattributes_conversion(app: Flask, client: FlaskClient, acct: AccountKeys) -> None:
    touch(client, acct, "late-v", "https://acme.com/?utm_source=google&utm_medium=cpc", ago(days=2))
    conv = post(client, acct, "/conversions", {"conversion_type": "x", "visitor_id": "late-v",
                                               "timestamp": iso(ago(days=1))}).get_json()
    assert _credits(app, acct, conv["id"]) == ["paid_search"]
    # an import delivers an older visit afterwards: it lands inside the window and credits are replaced
    touch(client, acct, "late-v", "https://acme.com/?utm_source=newsletter&utm_medium=email", ago(days=5))
    assert _credits(app, acct, conv["id"]) == ["email", "paid_search"]
    # a session after the conversion changes nothing
    touch(client, acct, "late-v", "https://acme.com/?utm_source=bing", ago(hours=1))
    assert _credits(app, acct, conv["id"]) == ["email", "paid_search"]


def test_ID10_provisional_user_merged_into_identified_user(
    app: Flask, client: FlaskClient, acct: AccountKeys
) -> None:
    touch(client, acct, "prov-v", "https://acme.com/?utm_source=newsletter&utm_medium=email", ago(days=1))
    post(client, acct, "/events", {"event_type": "lead", "visitor_id": "prov-v",
                                   "identifier": {"email": "lead@corp.example"}})
    with app.config["MBUZZ"].sessions() as db:
        provisional = db.scalars(sa.select(m.User).where(m.User.account_id == acct.account_id)).all()
    assert [u.user_key for u in provisional] == [None]
    post(client, acct, "/identify", {"user_id": "crm-9", "traits": {"email": "lead@corp.example"}})
    with app.config["MBUZZ"].sessions() as db:
        users = db.scalars(sa.select(m.User).where(m.User.account_id == acct.account_id)).all()
    assert [u.user_key for u in users] == ["crm-9"]
    conv = post(client, acct, "/conversions", {"conversion_type": "deal", "user_id": "crm-9"}).get_json()
    assert conv["attribution"]["models"]["first_touch"][0]["channel"] == "email"
