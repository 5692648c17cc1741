"""Q-45: no raw e-mail address and no raw IP address is stored anywhere, after a full scenario.

Real PostgreSQL and Redis. Two halves:

- every Shopify and sGTM fixture (shared/fixtures) plays through the fixture runner on its own PostgreSQL
  database (cloned from one migrated template), its expectations must still hold (linking, deduplication and
  identity work on scrubbed values), and then every column of every table is scanned for each e-mail address
  and IP address the fixture sent in;
- the REST API flows of the official SDKs (shared/spec/getting-started.txt: sessions, events, identify with
  traits, an acquisition and an inheriting payment) and sGTM requests run in queued mode, through the Redis
  stream and a real drain worker, with e-mails and IPs in every kind of field (user id, message id, idempotency
  key, event type, funnel, URL path and query, free-text properties and traits, transaction id); every table
  and every Redis key and value are scanned, and the flows must still work (one user per e-mail-like user id,
  duplicates answered as duplicates, the payment inheriting the signup's attribution).

The drill that found the leaks: sgtm_order_links.data, events.event_type, conversions.funnel, idempotency keys
and Redis `idem:` keys, users.user_key, free text in properties and traits (issue 15 item 10).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

import tools.fixtures as runner
from core.privacy import scrub_identifier, scrub_name
from core.storage import models as m
from core.storage.db import make_engine, migrate
from gateway import create_app
from gateway.config import Settings
from tests.conftest import DEFAULT_PG, SHARED, AccountKeys, make_settings
from tests.integration.processes import env_for, kill_group, queued_redis_url, start_worker, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

FIXTURES = SHARED / "fixtures"
SEED = json.loads((FIXTURES / "seed.json").read_text(encoding="utf-8"))
CASES = sorted(f"{folder}/{p.name.removesuffix('.json')}" for folder in ("shopify", "sgtm")
               for p in (FIXTURES / folder).glob("F*.json")
               if not p.name.endswith(".expected.json") and not p.name.startswith("F13"))
PATIENCE = 120.0  # generous: returns as soon as the condition holds

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")


# --- what was sent, and where it is found -------------------------------------------------------------------

def personal_data_in(text: str) -> set[str]:
    """Every e-mail address and valid IP address written in ``text`` (JSON-escaped bodies included)."""
    text = text.replace("\\u0040", "@").replace("%40", "@")
    found = {e.lower() for e in _EMAIL.findall(text)}
    for candidate in _IPV4.findall(text) + _IPV6.findall(text):
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        prefix = 24 if address.version == 4 else 48
        if ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address != address:
            found.add(candidate)  # one with no host bits (Chrome/136.0.0.0) is what FP-1 masking leaves anyway
    return found


def _needle(value: str) -> re.Pattern[str]:
    if "@" in value:  # as sent, any case, or with the at-sign percent-encoded
        local, _, domain = value.partition("@")
        return re.compile(re.escape(local) + "(?:@|%40)" + re.escape(domain), re.IGNORECASE)
    return re.compile(r"(?<![\w.:])" + re.escape(value) + r"(?![\w:]|\.\d)", re.IGNORECASE)


def found_in(text: str, values: set[str]) -> set[str]:
    return {v for v in values if _needle(v).search(text)}


def scan_database(url: str, values: set[str]) -> list[str]:
    """``table: value`` for every table (connectors' included, whatever the models list) holding a value."""
    engine = make_engine(url)
    hits: list[str] = []
    try:
        with engine.connect() as conn:
            tables = conn.execute(sa.text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_type = 'BASE TABLE' ORDER BY table_name")).scalars().all()
            for table in tables:
                rows = conn.execute(sa.text(f'SELECT t::text FROM "{table}" t')).scalars().all()
                hits += [f"{table}: {v}" for v in sorted(found_in("\n".join(rows), values))]
    finally:
        engine.dispose()
    return hits


def scan_redis(client: redis.Redis, values: set[str]) -> list[str]:
    """``key: value`` for every key whose name or content (of any type) holds a value."""
    hits: list[str] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        parts: list[bytes] = [key]
        if kind == "string":
            parts.append(client.get(key) or b"")
        elif kind == "hash":
            parts += [b for pair in client.hgetall(key).items() for b in pair]
        elif kind == "list":
            parts += client.lrange(key, 0, -1)
        elif kind in ("set",):
            parts += list(client.smembers(key))
        elif kind == "zset":
            parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            parts += [b for _, fields in client.xrange(key) for pair in fields.items() for b in pair]
        text = "\n".join(p.decode("utf-8", "replace") for p in parts)
        hits += [f"{key.decode()}: {v}" for v in sorted(found_in(text, values))]
    return hits


# --- PostgreSQL databases cloned from one migrated template -------------------------------------------------

def _admin_url() -> str:
    wanted = os.environ.get("MBUZZ_TEST_DATABASE_URL") or DEFAULT_PG
    return wanted.rsplit("/", 1)[0] + "/postgres"


def _admin(statement: str) -> None:
    engine = make_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def template(is_postgres: bool) -> Iterator[str]:
    if not is_postgres:
        pytest.skip("Q-45's scan runs on PostgreSQL")
    name = f"mbuzz_q45_tpl_{os.getpid()}"
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    migrate(_admin_url().rsplit("/", 1)[0] + f"/{name}")
    yield name
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def cloned_database(template: str) -> Iterator[str]:
    name = f"mbuzz_q45_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _admin_url().rsplit("/", 1)[0] + f"/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- half 1: every connector fixture ------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_Q45_fixture_stores_no_raw_email_or_ip(case: str, template: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture runner's own gateway (inline, as README rule 1 says), on PostgreSQL instead of SQLite."""
    path = FIXTURES / f"{case}.json"
    sent = personal_data_in(path.read_text(encoding="utf-8"))
    hits: list[str] = []

    @contextmanager
    def pg_gateway(seed_data: dict[str, Any], overrides: dict[str, Any] | None = None,
                   scenario_config: dict[str, Any] | None = None) -> Iterator[runner.Live]:
        base = {**seed_data.get("config", {}), **(overrides or {})}
        config = {**base, **(scenario_config or {})}
        with cloned_database(template) as url:
            app = create_app(Settings.from_env(database_url=url, redis_url=None, **runner.settings_fields(config)))
            runner.seed(app, seed_data)
            server = make_server("127.0.0.1", 0, app, threaded=True)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            live = runner.Live(base_url=f"http://127.0.0.1:{server.server_port}", app=app, base_config=base,
                               installations=[inst["id"] for inst in seed_data.get("installations", [])])
            try:
                with runner.watching_envelopes(live.appended):
                    yield live
            finally:
                server.shutdown()
                thread.join(timeout=5)
                app.config["MBUZZ"].engine.dispose()
                hits.extend(scan_database(url, sent))

    monkeypatch.setattr(runner, "live_gateway", pg_gateway)
    assert runner.run_fixture(path) == []  # still works on scrubbed values: linking, dedup, identities
    assert hits == [], f"raw personal data stored by {case}: {hits}"


def test_Q45_scanner_finds_what_it_must() -> None:
    """The scan itself: raw, re-cased and percent-encoded addresses and IPs are found; their scrubbed forms not."""
    values = {"q45.x@example.com", "203.0.113.57", "2001:db8:4545:12::7"}
    assert personal_data_in('{"a": "Q45.X@Example.com", "ip": "203.0.113.57", "b": "2001:db8:4545:12::7"}') == values
    assert found_in("u=q45.x%40example.com 203.0.113.57 2001:DB8:4545:12::7", values) == values
    assert personal_data_in("Chrome/136.0.0.0 at 203.0.113.0 or 2001:db8:4545::") == set()
    assert found_in("sha256:ab 203.0.113.0 203.0.113.570 2001:db8:4545:: 1203.0.113.57", values) == set()


# --- half 2: the REST API and sGTM in queued mode, with Redis and a real worker -----------------------------

@pytest.fixture(scope="module")
def redis_url(worker_id: str, is_postgres: bool) -> str:
    return queued_redis_url(worker_id, is_postgres)


def _post(app: Flask, path: str, key: str, body: Any, **headers: str) -> TestResponse:
    return app.test_client().post(path, json=body, headers={"Authorization": f"Bearer {key}", **headers})


def _sgtm_body(token: str, now_ms: int, ip: str, email: str, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "timestamp_ms": now_ms, "ga_client_id": f"{token[:9]}.1765000000", "ip": ip,
            "user_agent": f"Mozilla/5.0 (proxy {ip})",
            "page_location": f"https://aurora-lamps.com/checkout/thanks?email={email}&utm_source=news",
            "page_referrer": f"https://aurora-lamps.com/u/{email.replace('@', '%40')}/cart",
            "consent": {"analytics_storage": "granted", "ad_storage": "granted"}, **fields}


def test_Q45_rest_and_sgtm_in_queued_mode(template: str, redis_url: str, tmp_path: Path) -> None:
    token = uuid.uuid4().hex[:10]
    email, other, staff = f"q45.{token}@example.com", f"Pat.{token}@Example.org", f"ops.{token}@example.net"
    ip4, ip6, text_ip = f"203.0.113.{11 + int(token[:2], 16) % 200}", f"2001:db8:{token[:4]}:12::7", "198.51.100.23"
    sent = {email.lower(), other.lower(), staff.lower(), ip4, ip6, text_ip}
    secret = next(k["plaintext"] for k in SEED["api_keys"] if k["kind"] == "secret")  # acct_02, live
    sgtm_key = next(k["plaintext"] for k in SEED["api_keys"]
                    if k["kind"] == "sgtm" and k["account_id"] == "acct_01")  # has an active Shopify store
    client = redis.Redis.from_url(redis_url)
    with cloned_database(template) as url:
        app = create_app(make_settings(url, redis_url=redis_url, sync_wait_ms=30_000,
                                       **{k: v for k, v in runner.settings_fields(SEED["config"]).items()
                                          if k.startswith("shopify_")}))
        runner.seed(app, SEED)
        worker = start_worker(env_for(url, redis_url), tmp_path / "worker.log")
        try:
            answers = _rest_flows(app, secret, email, other, staff, ip4, ip6, text_ip)
            link = _sgtm_flows(app, sgtm_key, token, email, ip4, ip6)
            with app.config["MBUZZ"].sessions() as db:
                def drained() -> bool:
                    return db.scalar(sa.select(sa.func.count()).select_from(m.Event).where(
                        m.Event.account_id == "acct_02")) >= 2 and db.scalar(
                        sa.select(sa.func.count()).select_from(m.SgtmOrderLink)) >= 1

                assert wait_until(drained, PATIENCE, 0.2), "the worker did not drain the stream"
            stored, in_redis = scan_database(url, sent), scan_redis(client, sent)
            assert (stored, in_redis) == ([], []), f"raw personal data: PostgreSQL {stored}, Redis {in_redis}"
            with app.config["MBUZZ"].sessions() as db:
                _flows_still_work(db, answers, link, email, other)
        finally:
            kill_group(worker)
            app.config["MBUZZ"].engine.dispose()


def _rest_flows(app: Flask, key: str, email: str, other: str, staff: str, ip4: str, ip6: str,
                text_ip: str) -> dict[str, Any]:
    """The SDK flows of getting-started.txt with an e-mail as the app's user id, and PII in every kind of field."""
    visitor = uuid.uuid4().hex * 2
    note = f"call {other} from {text_ip} or {ip6}"
    session = _post(app, "/api/v1/sessions", key, {"session": {
        "visitor_id": visitor, "session_id": str(uuid.uuid4()), "ip": ip4, "user_agent": f"Mozilla/5.0 ({ip4})",
        "url": f"https://acme.test/u/{email}/welcome?contact={email.replace('@', '%40')}&utm_source=newsletter",
        "referrer": f"https://mail.acme.test/read?to={email}"}})
    assert session.status_code == 202, session.get_json()
    event = {"event_type": f"viewed by {email}", "visitor_id": visitor, "user_id": email, "ip": ip6,
             "message_id": email, "funnel": other, "url": f"https://acme.test/p?ref={email}",
             "properties": {"note": note, "nested": [{"who": other}], "server": text_ip}}
    events = _post(app, "/api/v1/events", key, {"events": [event, {**event, "message_id": f"{email}-2",
                                                                    "event_type": email}]})
    assert events.status_code == 202, events.get_json()
    again = _post(app, "/api/v1/events", key, {"events": [event]})
    assert again.get_json()["events"][0]["duplicate"] is True  # the same (scrubbed) message id
    identify = _post(app, "/api/v1/identify", key, {"user_id": email, "visitor_id": visitor, "traits": {
        "email": email, "name": "Pat", "note": note, "manager": staff}})
    assert identify.status_code == 200, identify.get_json()
    signup = _post(app, "/api/v1/conversions", key, {"conversion": {
        "conversion_type": "signup", "user_id": email, "is_acquisition": True, "funnel": f"trial {other}",
        "idempotency_key": f"signup-{email}", "ip": ip4, "properties": {"referred_by": staff, "from": text_ip}}})
    assert signup.status_code == 201, signup.get_json()
    duplicate = _post(app, "/api/v1/conversions", key, {"conversion": {
        "conversion_type": "signup", "user_id": email, "is_acquisition": True, "idempotency_key": f"signup-{email}"}})
    assert duplicate.status_code == 200 and duplicate.get_json()["id"] == signup.get_json()["id"]
    payment = _post(app, "/api/v1/conversions", key, {"conversion": {
        "conversion_type": "payment", "user_id": email, "revenue": 49.0, "inherit_acquisition": True}},
        **{"X-Idempotency-Key": f"pay-{email}"})
    assert payment.status_code == 201, payment.get_json()
    return {"signup": signup.get_json()["id"], "payment": payment.get_json()["id"]}


def _sgtm_flows(app: Flask, key: str, token: str, email: str, ip4: str, ip6: str) -> str:
    """sGTM page view and purchase on an account selling through Shopify: the purchase is held as a link
    (SGTM-30), its transaction id an e-mail; the reload is the same purchase."""
    now_ms = int(app.config["MBUZZ"].now().timestamp() * 1000)
    view = _post(app, "/sgtm/v1/collect", key, _sgtm_body(token, now_ms, ip6, email, event_name="page_view",
                                                          user_id=email, event_id=f"pv-{email}"))
    assert view.status_code == 202, view.get_json()
    purchase = _sgtm_body(token, now_ms, ip4, email, event_name="purchase", transaction_id=email, value="59.00",
                          currency="AUD", user_id=email, properties={"note": f"gift from {email} at {ip4}"})
    first = _post(app, "/sgtm/v1/collect", key, purchase)
    assert first.status_code == 202 and first.get_json()["outputs"][-1]["status"] == "held", first.get_json()
    reload = _post(app, "/sgtm/v1/collect", key, purchase)
    assert reload.get_json()["outputs"][-1]["duplicate"] is True, reload.get_json()
    return email


def _flows_still_work(db: Any, answers: dict[str, Any], transaction_id: str, email: str, other: str) -> None:
    user_key = scrub_identifier(email)
    users = db.scalars(sa.select(m.User).where(m.User.account_id == "acct_02", m.User.user_key == user_key)).all()
    assert len(users) == 1  # identify, events and both conversions name one user
    conversions = {c.id: c for c in db.scalars(sa.select(m.Conversion).where(m.Conversion.account_id == "acct_02"))}
    assert {conversions[answers["signup"]].user_id, conversions[answers["payment"]].user_id} == {users[0].id}
    assert conversions[answers["payment"]].inherited_from_conversion_id == answers["signup"]  # ATT inheritance
    types = set(db.scalars(sa.select(m.Event.event_type).where(m.Event.account_id == "acct_02")))
    assert scrub_name(email) in types  # what the dashboard shows for an e-mail as event type
    assert {e.funnel for e in db.scalars(sa.select(m.Event).where(m.Event.account_id == "acct_02"))} == {
        scrub_name(other)}
    links = db.scalars(sa.select(m.SgtmOrderLink).where(m.SgtmOrderLink.account_id == "acct_01")).all()
    assert [link.transaction_id for link in links] == [scrub_identifier(transaction_id)]  # the reload: one link
    assert links[0].status == "pending"


def test_Q45_rejection_names_are_scrubbed(app: Flask, acct: AccountKeys) -> None:
    """API-24 keeps what was rejected for 7 days: an e-mail used as an event type must not be kept raw there."""
    email = f"q45.{uuid.uuid4().hex[:10]}@example.com"
    resp = app.test_client().post("/api/v1/events", json={"events": [{"event_type": email, "visitor_id": "bad id!"}]},
                                  headers=acct.headers())
    assert resp.status_code == 202 and resp.get_json()["rejected"]
    with app.config["MBUZZ"].sessions() as db:
        names = db.scalars(sa.select(m.Rejection.name).where(m.Rejection.account_id == acct.account_id)).all()
    assert names == [scrub_name(email)]
