"""REST API v1 over HTTP (Flask test client) against the real database of the run (api.md)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from core.storage import models as m
from gateway import create_app
from gateway.api import schemas
from tests.conftest import AccountKeys, make_settings, new_account
from tests.integration.helpers import ago, fixture, fixture_bytes, iso, post, subset_match, touch

V = "65dabef8d611f332d5bb88f5d6870c733d89f962594575b66f0e1de1ede1ebf0"


def test_API111_health_needs_no_key(client: FlaskClient) -> None:
    resp = client.get("/api/v1/health")
    assert resp.status_code == 200
    assert not subset_match({k: v for k, v in fixture("health_response.json").items() if k != "mode"},
                            resp.get_json())
    assert resp.get_json()["mode"] == "inline"
    deep = client.get("/api/v1/health?deep=1").get_json()
    assert deep["checks"] == {"database": "ok", "redis": "absent", "shopify_api_version": "absent"}


def test_API110_validate_names_account_and_environment(client: FlaskClient, acct: AccountKeys) -> None:
    resp = client.get("/api/v1/validate", headers=acct.headers("live"))
    body = resp.get_json()
    assert resp.status_code == 200
    assert body["valid"] is True and body["environment"] == "live"
    assert body["account"]["id"] == acct.account_id and body["key_prefix"] == acct.live_key[:12]
    schemas.ValidateOut.model_validate(body)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Missing Authorization header"),
        ("   ", "Missing Authorization header"),
        ("Bearer pk_live_abc", "Publishable keys (pk_...) only work on the Shopify pixel and sGTM collect "
                               "endpoints; use a secret key (sk_test_... or sk_live_...)"),
        ("Token sk_test_0123456789abcdef0123456789abcdef", "Authorization header must be in format: Bearer "
                                                           "sk_{env}_{key}"),
        ("Bearer sk_test_XYZ", "Authorization header must be in format: Bearer sk_{env}_{key}"),
        ("Bearer sk_test_0123456789abcdef0123456789abcdef", "Invalid or expired API key"),
    ],
)
def test_API12_authentication_failures(client: FlaskClient, header: str | None, message: str) -> None:
    headers = {"Authorization": header} if header is not None else {}
    resp = client.post("/api/v1/events", data=b"{}", headers=headers)
    assert resp.status_code == 401
    assert resp.get_json() == {"error": message}
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_API12_scheme_is_case_insensitive_and_tabs_allowed(client: FlaskClient, acct: AccountKeys) -> None:
    resp = client.get("/api/v1/validate", headers={"Authorization": f"  bEaReR \t{acct.test_key} "})
    assert resp.status_code == 200


def test_Q42_revoked_key_is_refused_at_once(app: Flask, client: FlaskClient, acct: AccountKeys) -> None:
    from core.accounts import key_digest, revoke_api_key

    assert client.get("/api/v1/validate", headers=acct.headers()).status_code == 200
    with app.config["MBUZZ"].sessions.begin() as db:
        key_id = db.scalar(sa.select(m.ApiKey.id).where(m.ApiKey.key_digest == key_digest(acct.test_key)))
        assert key_id is not None and len(revoke_api_key(db, key_id)) == 1
        stored = db.scalars(sa.select(m.ApiKey).where(m.ApiKey.account_id == acct.account_id)).all()
    resp = client.get("/api/v1/validate", headers=acct.headers())
    assert resp.status_code == 401 and resp.get_json() == {"error": "API key has been revoked"}
    assert all(acct.test_key not in (k.key_digest, k.key_prefix) for k in stored)
    assert client.get("/api/v1/validate", headers=acct.headers("live")).status_code == 200


def test_API4_request_id_echoed_or_generated(client: FlaskClient) -> None:
    assert client.get("/api/v1/health", headers={"X-Request-Id": "abc-123_X"}).headers["X-Request-Id"] == "abc-123_X"
    generated = client.get("/api/v1/health", headers={"X-Request-Id": "bad id!"}).headers["X-Request-Id"]
    assert len(generated) == 36 and generated != "bad id!"


def test_API1_trailing_slash_and_API20_unknown_paths(client: FlaskClient, acct: AccountKeys) -> None:
    assert client.get("/api/v1/validate/", headers=acct.headers()).status_code == 200
    resp = client.get("/api/v1/nope", headers=acct.headers())
    assert resp.status_code == 404 and resp.get_json() == {"error": "Not found"}
    resp = client.get("/api/v1/events", headers=acct.headers())
    assert resp.status_code == 405 and resp.get_json() == {"error": "Method not allowed"}
    assert "POST" in resp.headers["Allow"]


def test_API150_options_has_no_cors(client: FlaskClient) -> None:
    resp = client.options("/api/v1/events", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 204
    assert "POST" in resp.headers["Allow"]
    assert not [h for h in resp.headers.keys() if h.lower().startswith("access-control")]


# ------------------------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize(
    ("name", "path", "status"),
    [
        ("sessions_request.json", "/sessions", 202),
        ("sessions_request_flat.json", "/sessions", 202),
        ("compat_python_0_10_session_request.json", "/sessions", 202),
        ("compat_sgtm_session_request.json", "/sessions", 202),
        ("events_single_request.json", "/events", 202),
        ("events_user_only_request.json", "/events", 202),
        ("events_batch_request.json", "/events", 202),
        ("compat_php_event_request.json", "/events", 202),
        ("conversion_visitor_request.json", "/conversions", 201),
        ("conversion_flat_request.json", "/conversions", 201),
        ("conversion_keyed_request.json", "/conversions", 201),
        ("conversion_acquisition_request.json", "/conversions", 201),
        ("conversion_recurring_request.json", "/conversions", 201),
        ("identify_request.json", "/identify", 200),
    ],
)
def test_API161_fixture_requests_are_accepted(
    client: FlaskClient, acct: AccountKeys, name: str, path: str, status: int
) -> None:
    resp = post(client, acct, path, fixture_bytes(name))
    assert resp.status_code == status, resp.get_json()
    out = {"/sessions": schemas.SessionOut, "/events": schemas.EventsOut, "/conversions": schemas.ConversionOut,
           "/identify": schemas.IdentifyOut}[path]
    out.model_validate(resp.get_json())
    assert resp.headers["X-Mbuzz-Processing"] == "inline"


@pytest.mark.parametrize(
    ("name", "channel"),
    [
        ("sessions_request.json", "paid_search"),
        ("sessions_request_flat.json", "ai"),
        ("compat_python_0_10_session_request.json", "direct"),
        ("compat_sgtm_session_request.json", "email"),
    ],
)
def test_API71_session_answer_channel(client: FlaskClient, acct: AccountKeys, name: str, channel: str) -> None:
    body = post(client, acct, "/sessions", fixture_bytes(name)).get_json()
    assert body["channel"] == channel
    assert body["status"] == "accepted"
    if name == "sessions_request.json":
        assert not subset_match(fixture("sessions_response.json"), body)


def test_API83_batch_answer_matches_fixture(client: FlaskClient, acct: AccountKeys) -> None:
    body = post(client, acct, "/events", fixture_bytes("events_batch_request.json")).get_json()
    assert not subset_match(fixture("events_batch_response.json"), body)


def test_API22_error_fixtures(client: FlaskClient, acct: AccountKeys) -> None:
    resp = post(client, acct, "/conversions", {"conversion": {"visitor_id": "abc", "revenue": "abc"}})
    assert resp.status_code == 422 and resp.get_json() == fixture("error_422_conversion.json")
    resp = post(client, acct, "/identify", {"user_id": "", "visitor_id": "abc"})
    assert resp.status_code == 422 and resp.get_json() == fixture("error_422_identify.json")
    resp = post(client, acct, "/events", b"{not json")
    assert resp.status_code == 400 and resp.get_json() == fixture("error_400_invalid_json.json")
    many = {"events": [{"event_type": "x", "visitor_id": "v"}] * 501}
    resp = post(client, acct, "/events", many)
    assert resp.status_code == 413 and resp.get_json() == fixture("error_413_too_many_events.json")
    resp = client.post("/api/v1/events", data=b"{}")
    assert resp.get_json() == fixture("error_401_missing_header.json")


def test_API30_oversized_bodies_are_413(client: FlaskClient, acct: AccountKeys) -> None:
    big = json.dumps({"conversion_type": "x", "visitor_id": "v", "properties": {"p": "x" * 40000}})
    resp = post(client, acct, "/conversions", big.encode())
    assert resp.status_code == 413
    assert resp.get_json()["error"].startswith("Request body too large: ")
    resp = client.post("/api/v1/conversions", data=gzip.compress(b" " * 100_000),
                       headers=acct.headers(**{"Content-Encoding": "gzip"}))
    assert resp.status_code == 413
    resp = client.post("/api/v1/events", data=b"{}", headers=acct.headers(**{"Content-Encoding": "br"}))
    assert resp.status_code == 415 and resp.get_json() == {"error": "Unsupported Content-Encoding: br"}


def test_API2_gzip_and_form_content_type_are_read_as_json(client: FlaskClient, acct: AccountKeys) -> None:
    body = json.dumps({"event_type": "page_view", "visitor_id": "gz-visitor"}).encode()
    resp = client.post("/api/v1/events", data=gzip.compress(body),
                       headers=acct.headers(**{"Content-Encoding": "gzip"}))
    assert resp.status_code == 202 and resp.get_json()["accepted"] == 1
    resp = client.post("/api/v1/events", data=body, headers=acct.headers(),
                       content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 202 and resp.get_json()["accepted"] == 1


def test_API80_body_forms(client: FlaskClient, acct: AccountKeys) -> None:
    one = {"event_type": "x", "visitor_id": "v1"}
    for body in ({"events": [one]}, {"events": one}, {"event": one}, [one], one):
        assert post(client, acct, "/events", body).get_json()["accepted"] == 1
    assert post(client, acct, "/events", {"events": "x"}).get_json() == {
        "error": "events must be an array of event objects"}
    assert post(client, acct, "/events", {"foo": 1}).get_json() == {"error": "Missing 'events' parameter"}
    assert post(client, acct, "/events", {"events": []}).get_json() == {
        "error": "events must contain at least one event"}
    resp = post(client, acct, "/events", {"events": [one, 5]})
    assert resp.get_json()["rejected"][0]["errors"] == ["event must be an object, got number"]


def test_API21_every_problem_listed_in_field_order(client: FlaskClient, acct: AccountKeys) -> None:
    resp = post(client, acct, "/conversions", {
        "conversion_type": "",
        "revenue": -1,
        "currency": "XX",
        "is_acquisition": True,
        "inherit_acquisition": "true",
        "timestamp": "2999-01-01T00:00:00Z",
    })
    errors = resp.get_json()["errors"]
    assert resp.status_code == 422
    assert errors[0] == "event_id, visitor_id, or user_id is required" or errors[0].startswith("conversion_type")
    assert "currency must be a 3-letter ISO 4217 code, got 'XX'" in errors
    assert "revenue must be a number >= 0, got -1" in errors
    assert "is_acquisition and inherit_acquisition cannot both be true" in errors
    assert any(e.startswith("timestamp is more than 5 minutes in the future") for e in errors)


# ----------------------------------------------------------------------------------- idempotency


def test_Q23_replayed_event_message_id_is_one_row(app: Flask, client: FlaskClient, acct: AccountKeys) -> None:
    event = {"event_type": "signup", "visitor_id": "dup-v", "message_id": "m-1"}
    first = post(client, acct, "/events", {"events": [event]}).get_json()["events"][0]
    second = post(client, acct, "/events", {"events": [event]}).get_json()["events"][0]
    assert first["duplicate"] is False and second["duplicate"] is True
    assert second["id"] == first["id"]
    with app.config["MBUZZ"].sessions() as db:
        count = db.scalar(sa.select(sa.func.count()).select_from(m.Event).where(m.Event.account_id == acct.account_id))
    assert count == 1


def test_API51_header_key_dedups_by_index(client: FlaskClient, acct: AccountKeys) -> None:
    body = {"events": [{"event_type": "a", "visitor_id": "hv"}, {"event_type": "b", "visitor_id": "hv"}]}
    first = post(client, acct, "/events", body, **{"X-Idempotency-Key": "batch-7"}).get_json()
    again = post(client, acct, "/events", body, **{"X-Idempotency-Key": "batch-7"}).get_json()
    assert [e["id"] for e in again["events"]] == [e["id"] for e in first["events"]]
    assert all(e["duplicate"] for e in again["events"])
    bad = post(client, acct, "/events", body, **{"X-Idempotency-Key": "é"})
    assert bad.status_code == 400
    assert bad.get_json() == {"error": "X-Idempotency-Key must be 1-255 printable ASCII characters"}


def test_API52_keyed_conversion_replay_answers_original(client: FlaskClient, acct: AccountKeys) -> None:
    first = post(client, acct, "/conversions", fixture_bytes("conversion_keyed_request.json"))
    changed = dict(fixture("conversion_keyed_request.json"), revenue=5)
    second = post(client, acct, "/conversions", changed)
    assert first.status_code == 201 and second.status_code == 200
    one, two = first.get_json(), second.get_json()
    assert two["duplicate"] is True and one["duplicate"] is False
    assert two["id"] == one["id"] and two["revenue"] == "100.00"
    assert two["attribution"] == one["attribution"]


# ------------------------------------------------------------------------------------- isolation


def test_Q40_Q41_tenant_and_environment_isolation(
    client: FlaskClient, acct: AccountKeys, other_acct: AccountKeys
) -> None:
    visitor = "shared-visitor-id"
    touch(client, acct, visitor, "https://shop.example/?utm_source=google&utm_medium=cpc", ago(days=2))
    event = post(client, acct, "/events", {"event_type": "checkout", "visitor_id": visitor}).get_json()
    event_id = event["events"][0]["id"]
    # the same event id from the live environment and from another account is "not found", never 403
    for keys, env in ((acct, "live"), (other_acct, "test")):
        resp = post(client, keys, "/conversions", {"conversion_type": "purchase", "event_id": event_id}, env=env)
        assert resp.status_code == 422
        assert resp.get_json()["errors"] == [f"event_id {event_id} not found"]
    # the same visitor string elsewhere is another visitor with no journey
    for keys, env in ((acct, "live"), (other_acct, "test")):
        body = post(client, keys, "/conversions", {"conversion_type": "purchase", "visitor_id": visitor},
                    env=env).get_json()
        assert body["attribution"]["sessions_analyzed"] == 0
        assert body["attribution"]["models"]["linear"] == []
    own = post(client, acct, "/conversions", {"conversion_type": "purchase", "event_id": event_id}).get_json()
    assert own["attribution"]["sessions_analyzed"] == 1
    assert own["attribution"]["models"]["last_touch"][0]["channel"] == "paid_search"


def test_Q40_idempotency_keys_are_per_tenant(client: FlaskClient, acct: AccountKeys, other_acct: AccountKeys) -> None:
    body = {"conversion_type": "purchase", "visitor_id": "k-v", "idempotency_key": "same-key"}
    ids = {post(client, a, "/conversions", body, env=e).get_json()["id"]
           for a, e in ((acct, "test"), (acct, "live"), (other_acct, "test"))}
    assert len(ids) == 3


# ------------------------------------------------------------------------- the getting-started flows


def test_guide_event_based_conversion(client: FlaskClient, acct: AccountKeys) -> None:
    visitor = "guide-visitor-1"
    touch(client, acct, visitor, "https://www.acme.com/?utm_source=newsletter&utm_medium=email", ago(hours=1))
    event = post(client, acct, "/events", {"event_type": "checkout_completed", "visitor_id": visitor,
                                            "properties": {"order_id": 42}}).get_json()["events"][0]
    resp = post(client, acct, "/conversions", {"conversion": {"event_id": event["id"], "conversion_type": "purchase",
                                                              "revenue": 99.99}})
    body = resp.get_json()
    assert resp.status_code == 201
    assert body["revenue"] == "99.99" and body["conversion"]["id"] == body["id"]
    assert body["attribution"]["sessions_analyzed"] == 1
    assert body["attribution"]["models"]["first_touch"] == [{
        "channel": "email", "credit": 1.0, "revenue_credit": "99.99",
        "session_id": body["attribution"]["models"]["first_touch"][0]["session_id"],
        "utm_source": "newsletter", "utm_medium": "email", "utm_campaign": None}]
    assert list(body["attribution"]["models"]) == [
        "first_touch", "last_touch", "linear", "time_decay", "u_shaped", "participation", "markov_chain",
        "shapley_value"]
    assert body["attribution"]["fallbacks"] == {"markov_chain": "linear", "shapley_value": "linear"}


def test_guide_cross_device_identify_then_conversion(client: FlaskClient, acct: AccountKeys) -> None:
    desktop, mobile = "desk-abc", "mob-def"
    touch(client, acct, desktop, "https://acme.com/?gclid=Cj0KC", ago(days=6), referrer="https://www.google.com/")
    touch(client, acct, mobile, "https://acme.com/?utm_source=facebook&utm_medium=paid_social", ago(days=4))
    r1 = post(client, acct, "/identify", {"user_id": "jane", "visitor_id": mobile,
                                          "timestamp": iso(ago(days=2)), "traits": {"email": "Jane@Example.com"}})
    assert r1.status_code == 200 and r1.get_json()["visitor_linked"] is True
    r2 = post(client, acct, "/identify", {"user_id": "jane", "visitor_id": desktop, "timestamp": iso(ago(days=1))})
    assert r2.get_json()["identity_id"] == r1.get_json()["identity_id"]
    touch(client, acct, desktop, "https://acme.com/", ago(hours=2))
    body = post(client, acct, "/conversions", {"conversion_type": "purchase", "visitor_id": desktop,
                                               "revenue": "300"}).get_json()
    linear = body["attribution"]["models"]["linear"]
    assert [c["channel"] for c in linear] == ["paid_search", "paid_social", "direct"]
    # ATT-37: revenue follows the stored 4-dp credits 0.3333/0.3333/0.3334
    assert [c["revenue_credit"] for c in linear] == ["99.99", "99.99", "100.02"]
    assert body["user_id"] == "jane"


def test_ID14_identify_reattributes_earlier_conversion(client: FlaskClient, acct: AccountKeys) -> None:
    desktop, mobile = "re-desk", "re-mob"
    touch(client, acct, desktop, "https://acme.com/?gclid=Cj0KC", ago(days=6), referrer="https://www.google.com/")
    touch(client, acct, mobile, "https://acme.com/?utm_source=facebook&utm_medium=paid_social", ago(days=4))
    post(client, acct, "/identify", {"user_id": "u-re", "visitor_id": mobile, "timestamp": iso(ago(days=3))})
    conv = post(client, acct, "/conversions", {"conversion_type": "purchase", "visitor_id": mobile,
                                               "timestamp": iso(ago(days=3))}).get_json()
    assert conv["attribution"]["sessions_analyzed"] == 1
    ident = post(client, acct, "/identify", {"user_id": "u-re", "visitor_id": desktop}).get_json()
    assert ident["reattribution"] == {"conversions": 1}


def test_API94_four_touch_fixture_response(app: Flask, client: FlaskClient, acct: AccountKeys) -> None:
    """conversion_response_created.json: sessions 28, 21, 14 and 7 days before 2026-11-20T15:30:00Z."""
    at = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
    services = app.config["MBUZZ"]
    visitor = fixture("conversion_keyed_request.json")["visitor_id"]
    try:
        services.clock = lambda: at
        touch(client, acct, visitor, "https://www.acme.com/", at - timedelta(days=28),
              referrer="https://www.google.com/")
        touch(client, acct, visitor, "https://www.acme.com/?utm_source=facebook&utm_medium=paid_social"
              "&utm_campaign=bf_retarget", at - timedelta(days=21))
        touch(client, acct, visitor, "https://www.acme.com/?utm_source=newsletter&utm_medium=email"
              "&utm_campaign=nov_digest", at - timedelta(days=14))
        touch(client, acct, visitor, "https://www.acme.com/?utm_source=google&utm_medium=cpc&utm_campaign=brand"
              "&gclid=Cj0KC", at - timedelta(days=7), referrer="https://www.google.com/")
        first = post(client, acct, "/conversions", fixture_bytes("conversion_keyed_request.json"))
        again = post(client, acct, "/conversions", fixture_bytes("conversion_keyed_request.json"))
    finally:
        services.clock = lambda: datetime.now(UTC)
    assert first.status_code == 201
    assert subset_match(fixture("conversion_response_created.json"), first.get_json()) == []
    assert again.status_code == 200
    assert subset_match(fixture("conversion_response_duplicate.json"), again.get_json()) == []


def test_ATT43_acquisition_then_inherited_payment(client: FlaskClient, acct: AccountKeys) -> None:
    touch(client, acct, "acq-v", "https://acme.com/?utm_source=google&utm_medium=cpc", ago(days=3))
    post(client, acct, "/identify", {"user_id": "123", "visitor_id": "acq-v"})
    signup = post(client, acct, "/conversions", fixture_bytes("conversion_acquisition_request.json")).get_json()
    payment = post(client, acct, "/conversions", fixture_bytes("conversion_recurring_request.json")).get_json()
    assert signup["is_acquisition"] is True
    assert payment["attribution"]["inherited_from"] == signup["id"]
    assert payment["attribution"]["models"]["linear"][0]["revenue_credit"] == "49.00"
    lonely = post(client, acct, "/conversions", {"conversion_type": "payment", "user_id": "nobody",
                                                 "inherit_acquisition": True}).get_json()
    assert lonely["warnings"] == [
        "inherit_acquisition: no acquisition conversion found; attributed from its own journey"]


def test_ATT52_a_later_arriving_acquisition_is_inherited(client: FlaskClient, acct: AccountKeys) -> None:
    """ATT-67 scenario 8: inherit with no acquisition yet, then an acquisition dated before the payment."""
    touch(client, acct, "late-acq", "https://acme.com/?utm_source=google&utm_medium=cpc", ago(days=5))
    touch(client, acct, "late-acq", "https://acme.com/?utm_source=newsletter&utm_medium=email", ago(days=1))
    payment = post(client, acct, "/conversions", {"conversion_type": "payment", "visitor_id": "late-acq",
                                                  "inherit_acquisition": True, "revenue": "10.00",
                                                  "timestamp": iso(ago(hours=12))}).get_json()
    assert payment["warnings"] == [
        "inherit_acquisition: no acquisition conversion found; attributed from its own journey"]
    assert payment["attribution"]["sessions_analyzed"] == 2
    signup = post(client, acct, "/conversions", {"conversion_type": "signup", "visitor_id": "late-acq",
                                                 "is_acquisition": True, "timestamp": iso(ago(days=4))}).get_json()
    assert signup["attribution"]["sessions_analyzed"] == 1  # only the paid search visit precedes it
    again = post(client, acct, "/conversions", {"conversion_type": "payment", "visitor_id": "late-acq",
                                                "inherit_acquisition": True, "revenue": "10.00",
                                                "idempotency_key": "late-acq-check"}).get_json()
    assert again["attribution"]["inherited_from"] == signup["id"]
    with_keys = client.application.config["MBUZZ"]
    with with_keys.sessions() as db:
        stored = db.get(m.Conversion, (acct.account_id, payment["id"]))
        assert stored is not None and stored.inherited_from_conversion_id == signup["id"]
        rows = db.scalars(sa.select(m.AttributionCredit).where(
            m.AttributionCredit.conversion_id == payment["id"], m.AttributionCredit.model == "linear")).all()
    assert [(r.channel, r.revenue_credit_minor) for r in rows] == [("paid_search", 1000)]


def test_ATT52_inheritors_follow_their_acquisitions_reattribution(client: FlaskClient, acct: AccountKeys) -> None:
    """ATT-67 scenario 7: identify changes the acquisition's journey; the payment inheriting it follows.

    The payment is 43 days after the desktop visit, outside its own window: it is reattributed only because it
    inherits from a conversion whose rows were replaced.
    """
    desktop, mobile = "inh-desk", "inh-mob"
    touch(client, acct, desktop, "https://acme.com/?utm_source=google&utm_medium=cpc", ago(days=46))
    touch(client, acct, mobile, "https://acme.com/?utm_source=facebook&utm_medium=paid_social", ago(days=45))
    post(client, acct, "/identify", {"user_id": "inh-u", "visitor_id": mobile, "timestamp": iso(ago(days=45))})
    signup = post(client, acct, "/conversions", {"conversion_type": "signup", "user_id": "inh-u",
                                                 "is_acquisition": True, "timestamp": iso(ago(days=44))}).get_json()
    payment = post(client, acct, "/conversions", {"conversion_type": "payment", "user_id": "inh-u",
                                                  "inherit_acquisition": True, "revenue": "49.00",
                                                  "timestamp": iso(ago(days=3))}).get_json()
    assert [r["channel"] for r in payment["attribution"]["models"]["linear"]] == ["paid_social"]
    ident = post(client, acct, "/identify", {"user_id": "inh-u", "visitor_id": desktop}).get_json()
    assert ident["reattribution"] == {"conversions": 2}  # the acquisition and its inheritor
    with client.application.config["MBUZZ"].sessions() as db:
        def linear(conversion_id: str) -> list[tuple[str, Any, Any]]:
            return [(r.channel, r.credit, r.revenue_credit_minor) for r in db.scalars(
                sa.select(m.AttributionCredit).where(m.AttributionCredit.conversion_id == conversion_id,
                                                     m.AttributionCredit.model == "linear")
                .order_by(m.AttributionCredit.touchpoint_index))]
        acquired, inherited = linear(signup["id"]), linear(payment["id"])
    assert [c for c, _, _ in acquired] == ["paid_search", "paid_social"]
    assert [(c, k) for c, k, _ in inherited] == [(c, k) for c, k, _ in acquired]
    assert [r for _, _, r in inherited] == [2450, 2450]  # 49.00 re-split over the new credits


def test_VIS4_user_only_event_gets_synthetic_visitor(app: Flask, client: FlaskClient, acct: AccountKeys) -> None:
    body = post(client, acct, "/events", fixture_bytes("events_user_only_request.json")).get_json()
    assert body["events"][0]["visitor_id"] is None
    with app.config["MBUZZ"].sessions() as db:
        keys = db.scalars(sa.select(m.Visitor.visitor_key).where(m.Visitor.account_id == acct.account_id)).all()
    assert len(keys) == 1 and keys[0].startswith("~u.")


def test_Q45_no_raw_ip_or_email_stored(app: Flask, client: FlaskClient, acct: AccountKeys) -> None:
    ip, email = "203.0.113.42", "jane.doe@example.com"
    post(client, acct, "/sessions", {"visitor_id": "pii-v", "session_id": "s1", "ip": ip,
                                     "url": f"https://acme.com/?e={email}", "user_agent": "Mozilla/5.0"})
    post(client, acct, "/events", {"event_type": "x", "visitor_id": "pii-v", "ip": ip,
                                   "properties": {"contact": email, "nested": [{"e": email}]}})
    post(client, acct, "/identify", {"user_id": "pii-u", "visitor_id": "pii-v", "traits": {"email": email,
                                                                                           "alt": email}})
    post(client, acct, "/conversions", {"conversion_type": "x", "visitor_id": "pii-v", "ip": ip,
                                        "properties": {"who": email}})
    with app.config["MBUZZ"].engine.connect() as conn:
        for table in m.Base.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                text = json.dumps([str(v) for v in row])
                assert ip not in text, table.name
                assert email not in text, table.name


# ------------------------------------------------------------------------------------- rate limits


def test_API140_rate_limit_answers_429_with_retry_after(database_url: str) -> None:
    app = create_app(make_settings(database_url, ratelimit_ingest="3 per minute"))
    keys = new_account(app)
    client = app.test_client()
    statuses = [post(client, keys, "/events", {"event_type": "x", "visitor_id": "rl"}).status_code for _ in range(4)]
    assert statuses == [202, 202, 202, 429]
    resp = post(client, keys, "/sessions", {"visitor_id": "rl", "session_id": "s"})
    assert resp.status_code == 429  # events and sessions share the ingest limit
    body = resp.get_json()
    assert body["error"] == "Rate limit exceeded" and body["retry_after"] >= 1
    assert int(resp.headers["Retry-After"]) >= 1
    assert "X-RateLimit-Limit" in resp.headers
    other = new_account(app)
    assert post(client, other, "/events", {"event_type": "x", "visitor_id": "rl"}).status_code == 202


def test_API141_failed_authentications_limited_per_ip(database_url: str) -> None:
    app = create_app(make_settings(database_url, ratelimit_auth_failures="3 per minute"))
    client = app.test_client()
    bad = {"Authorization": "Bearer sk_test_" + "0" * 32}
    statuses = [client.get("/api/v1/validate", headers=bad).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_API33_quota_blocks_events_and_sessions_not_conversions(app: Flask, client: FlaskClient) -> None:
    keys = new_account(app)
    with app.config["MBUZZ"].sessions.begin() as db:
        db.get(m.Account, keys.account_id).monthly_event_quota = 2  # type: ignore[union-attr]
    body = {"events": [{"event_type": "a", "visitor_id": "q", "message_id": "1"},
                       {"event_type": "b", "visitor_id": "q", "message_id": "2"}]}
    assert post(client, keys, "/events", body).status_code == 202
    again = post(client, keys, "/events", {"event_type": "c", "visitor_id": "q"})
    assert again.status_code == 402
    assert again.get_json() == {"error": "Account cannot accept events", "billing_blocked": True}
    assert post(client, keys, "/sessions", {"visitor_id": "q", "session_id": "s"}).status_code == 402
    assert post(client, keys, "/conversions", {"conversion_type": "x", "visitor_id": "q"}).status_code == 201
    assert post(client, keys, "/identify", {"user_id": "q"}).status_code == 200


def test_API66_database_down_answers_503_not_500(database_url: str) -> None:
    app = create_app(make_settings("postgresql://postgres@127.0.0.1:1/none"))
    resp = app.test_client().post("/api/v1/events", data=b'{"event_type": "x", "visitor_id": "v"}',
                                  headers={"Authorization": "Bearer sk_test_" + "a" * 32})
    assert resp.status_code == 503
    assert resp.get_json() == {"error": "Service temporarily unavailable"}
    assert resp.headers["Retry-After"] == "5"
