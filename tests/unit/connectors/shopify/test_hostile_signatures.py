"""Hostile signatures never reach a 500 (issue 14, item 7; shopify.md SHP-17, SHP-18, SHP-20, SHP-22, SHP-23,
SHP-32..SHP-35, SHP-78).

Shopify signs webhook bodies in `X-Shopify-Hmac-Sha256` and the App URL / OAuth callback queries in `hmac`. Both
arrive as client text: werkzeug decodes header bytes as latin-1 (any of 0x00-0xFF) and percent-decoded query
values as UTF-8, and `hmac.compare_digest` raises TypeError for a non-ASCII `str`, which used to answer 500.
These properties send arbitrary bytes (Hypothesis, up to 8 KiB, plus the targeted cases) and require 401 (400
where SHP-33 and SHP-15 say so), with the database, the ingest log and Shopify untouched. The same bytes sent
raw over a socket to real servers are in `test_hostile_live.py`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from connectors.shopify import models as sm
from connectors.shopify.envelopes import shop_domain
from connectors.shopify.install import create_manual_installation
from core.storage import models as m
from core.storage.db import make_engine, migrate
from gateway import create_app
from tests.conftest import make_settings
from tests.unit.connectors.sgtm.test_normalize import SEED
from tests.unit.connectors.shopify.install_env import AURORA, BIRCH, NOW, SECRET, Env, session_token, signed_query
from tools.fixtures import seed, watching_envelopes

SIGNING_KEY = "manual-shop-signing-key-0f1e2d3c"
MANUAL_SHOP = "hostile-manual.myshopify.com"
BODY = json.dumps({"id": 5396439498987, "note": "hostile signature test"}).encode()


def sign(body: bytes, secret: str) -> str:
    """What Shopify sends in `X-Shopify-Hmac-Sha256` (SHP-33)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


CORRECT = sign(BODY, SECRET)
MANUAL_CORRECT = sign(BODY, SIGNING_KEY)

# Header text as werkzeug hands it over: bytes decoded as latin-1. CR and LF end a header line, so the test
# client refuses them; the raw-socket tests send them.
header_text = st.binary(max_size=8192).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"").decode("latin-1"))

# The targeted cases every signature property also runs.
HOSTILE_SIGNATURES = [
    "",  # missing: 401 missing_hmac
    "é",
    "\xff" * 44,  # non-ASCII of the right length
    "\x00",
    base64.b64encode(b"\x01" * 16).decode(),  # valid base64 of a 16-byte digest
    base64.b64encode(hashlib.sha512(BODY).digest()).decode(),  # valid base64, 64 bytes
    "not base64 at all!",
    CORRECT + "junk",  # the right signature with trailing junk
    "junk" + CORRECT,
    CORRECT[:-1],  # one character short
    CORRECT.replace("=", "\xe9"),  # the right signature with a non-ASCII character in it
    CORRECT.lower(),  # base64 is case-sensitive
    hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest(),  # hex instead of base64
    "A" * 10240,  # 10 KB
]


def every_row(engine: sa.Engine) -> dict[str, list[str]]:
    """Every row of every table, so that "nothing changed" means nothing at all."""
    with engine.connect() as conn:
        return {t.name: sorted(repr(tuple(row)) for row in conn.execute(sa.select(t)))
                for t in m.Base.metadata.sorted_tables}


@dataclass
class Stage:
    """One seeded app on a database of this module (PostgreSQL or SQLite, as the run chose)."""

    app: Flask
    client: FlaskClient
    manual_path: str  # /shopify/webhooks/m/<token> of MANUAL_SHOP, signed with SIGNING_KEY
    appended: list[dict[str, Any]] = field(default_factory=list)  # connector envelopes not looked at yet

    def snapshot(self) -> dict[str, list[str]]:
        return every_row(self.app.config["MBUZZ"].engine)

    def commands(self) -> list[dict[str, Any]]:
        """Connector commands appended to the ingest log since the last call."""
        taken = list(self.appended)
        self.appended.clear()
        return taken

    def refused_without_change(self, send: Callable[[], TestResponse]) -> TestResponse:
        """Send; the database must be exactly as before and no command appended."""
        before = self.snapshot()
        self.commands()
        resp = send()
        assert resp.status_code != 500, resp.get_data(as_text=True)
        assert self.snapshot() == before, "a refused request changed the database"
        assert self.commands() == [], "a refused request appended commands"
        return resp


@pytest.fixture(scope="module")
def own_database(database_url: str, tmp_path_factory: pytest.TempPathFactory,
                 request: pytest.FixtureRequest) -> Iterator[str]:
    """A database for the requesting module alone (a whole-database snapshot stays small and fast)."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    if not database_url.startswith("postgresql"):
        url = f"sqlite:///{tmp_path_factory.mktemp(module) / 'hostile.db'}"
        migrate(url)
        yield url
        return
    base, name = database_url.rsplit("/", 1)
    own = f"{name}_{module}"  # the session database's name is unique per process, so this one is too
    admin = make_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{own}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{own}"'))
    migrate(f"{base}/{own}")
    yield f"{base}/{own}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{own}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def stage(own_database: str) -> Iterator[Stage]:
    app = create_app(make_settings(own_database, shopify_api_secret=SECRET,
                                   shopify_api_key=SEED["config"]["SHOPIFY_API_KEY"]))
    seed(app, SEED)
    made = create_manual_installation(app.config["MBUZZ"], MANUAL_SHOP, SIGNING_KEY, "acct_02", "live")
    stage = Stage(app, app.test_client(), urlsplit(made.webhook_url).path)
    with watching_envelopes(stage.appended):
        yield stage
    app.config["MBUZZ"].engine.dispose()


def _headers(signature: str | None, shop: str = AURORA, **extra: str) -> dict[str, str]:
    headers = {"X-Shopify-Shop-Domain": shop, "X-Shopify-Topic": "orders/create",
               "X-Shopify-Webhook-Id": "w-hostile", "X-Shopify-Event-Id": "e-hostile",
               "X-Shopify-Triggered-At": "2026-05-20T03:14:07.512Z", "Content-Type": "application/json", **extra}
    if signature is not None:
        headers["X-Shopify-Hmac-Sha256"] = signature
    return headers


def _signature_error(value: str) -> str:
    """SHP-33 (1)/(2): an empty header is a missing one; anything else that does not verify is invalid."""
    return "missing_hmac" if value == "" else "invalid_hmac"


# --- webhooks: the signature header ---------------------------------------------------------------------------

def _with_targeted_cases(test: Callable[..., None]) -> Callable[..., None]:
    """Hypothesis' `@example` for every targeted signature case."""
    for case in HOSTILE_SIGNATURES:
        test = example(value=case)(test)
    return test


@settings(max_examples=60, deadline=None)
@_with_targeted_cases
@given(value=header_text)
def test_SHP33_any_signature_header_but_the_right_one_is_401_and_changes_nothing(stage: Stage, value: str) -> None:
    resp = stage.refused_without_change(
        lambda: stage.client.post("/shopify/webhooks", data=BODY, headers=_headers(value)))
    assert (resp.status_code, resp.get_json()) == (401, {"error": _signature_error(value)})


@settings(max_examples=40, deadline=None)
@_with_targeted_cases
@given(value=header_text)
def test_SHP78_any_manual_signature_header_but_the_right_one_is_401_and_changes_nothing(stage: Stage,
                                                                                       value: str) -> None:
    resp = stage.refused_without_change(lambda: stage.client.post(
        stage.manual_path, data=BODY, headers=_headers(value, shop=MANUAL_SHOP)))
    assert (resp.status_code, resp.get_json()) == (401, {"error": _signature_error(value)})


def test_SHP33_SHP78_the_right_signatures_are_accepted(stage: Stage) -> None:
    """The control of the two properties above: the same requests, correctly signed, are stored (so their 401s
    come from the signature alone). Also: the manual URL refuses the app secret and app mode the manual key."""
    wrong = stage.refused_without_change(lambda: stage.client.post(
        stage.manual_path, data=BODY, headers=_headers(CORRECT, shop=MANUAL_SHOP)))
    assert (wrong.status_code, wrong.get_json()) == (401, {"error": "invalid_hmac"})
    wrong = stage.refused_without_change(lambda: stage.client.post(
        "/shopify/webhooks", data=BODY, headers=_headers(MANUAL_CORRECT)))
    assert (wrong.status_code, wrong.get_json()) == (401, {"error": "invalid_hmac"})
    for path, signature, shop, webhook_id in (("/shopify/webhooks", CORRECT, AURORA, "w-good-app"),
                                              (stage.manual_path, MANUAL_CORRECT, MANUAL_SHOP, "w-good-manual")):
        headers = _headers(signature, shop=shop, **{"X-Shopify-Webhook-Id": webhook_id,
                                                    "X-Shopify-Event-Id": webhook_id})
        resp = stage.client.post(path, data=BODY, headers=headers)
        assert (resp.status_code, resp.get_json()) == (200, {"status": "accepted"})
        with stage.app.config["MBUZZ"].sessions() as db:
            assert db.scalar(sa.select(sm.ShopifyWebhookDelivery.shop_domain).where(
                sm.ShopifyWebhookDelivery.webhook_id == webhook_id)) == shop


# --- webhooks: the other headers read around verification ---------------------------------------------------

OTHER_HEADERS = ("X-Shopify-Shop-Domain", "X-Shopify-Topic", "X-Shopify-Webhook-Id", "X-Shopify-Event-Id",
                 "X-Shopify-Triggered-At", "X-Shopify-API-Version")
hostile_headers = st.fixed_dictionaries({name: header_text for name in OTHER_HEADERS})


@settings(max_examples=40, deadline=None)
@example(headers={name: "\x00\xff" * 4000 for name in OTHER_HEADERS}, signature="\xe9")
@given(headers=hostile_headers, signature=header_text)
def test_SHP33_SHP78_hostile_headers_with_a_wrong_signature_are_401_and_change_nothing(
        stage: Stage, headers: dict[str, str], signature: str) -> None:
    for path in ("/shopify/webhooks", stage.manual_path):
        resp = stage.refused_without_change(lambda p=path: stage.client.post(  # type: ignore[misc]
            p, data=BODY, headers={**headers, "X-Shopify-Hmac-Sha256": signature}))
        assert (resp.status_code, resp.get_json()) == (401, {"error": _signature_error(signature)})


_bodies = itertools.count()


def _stored_as(value: str, limit: int) -> str:
    """What SHP-32-D1 stores of a verified delivery's header."""
    return value.replace("\x00", "").strip()[:limit]


@settings(max_examples=40, deadline=None)
@example(headers={name: "\x00" for name in OTHER_HEADERS})
@example(headers={"X-Shopify-Shop-Domain": AURORA + "\x00", "X-Shopify-Topic": "orders/\x00create"})
@example(headers={"X-Shopify-Shop-Domain": AURORA, "X-Shopify-Topic": "\xff" * 100, "X-Shopify-Webhook-Id": "\x00a",
                  "X-Shopify-Event-Id": "\x85" * 300, "X-Shopify-Triggered-At": "\x00" * 50})
@given(headers=st.fixed_dictionaries({"X-Shopify-Shop-Domain": st.one_of(st.just(AURORA), header_text)},
                                     optional={name: header_text for name in OTHER_HEADERS[1:]}))
def test_SHP32_SHP33_hostile_headers_of_a_verified_delivery_never_reach_a_500(stage: Stage,
                                                                           headers: dict[str, str]) -> None:
    """A correctly signed body with hostile shop, topic, id and time headers: 401 for a shop that fails SHP-15,
    400 without a topic (both changing nothing), else 200 with the ledger row holding the headers as stored
    (SHP-32-D1: NUL dropped, stripped, cut to the column). PostgreSQL refuses NUL in text: this was a 500."""
    body = json.dumps({"id": next(_bodies), "note": "verified, hostile headers"}).encode()
    sent = {**headers, "X-Shopify-Hmac-Sha256": sign(body, SECRET)}
    shop_ok = shop_domain(headers["X-Shopify-Shop-Domain"]) is not None
    topic = _stored_as(headers.get("X-Shopify-Topic", ""), 64)
    if not shop_ok or not topic:
        resp = stage.refused_without_change(lambda: stage.client.post("/shopify/webhooks", data=body, headers=sent))
        expected = (401, {"error": "invalid_shop_domain"}) if not shop_ok else (400, {"error": "missing_topic"})
        assert (resp.status_code, resp.get_json()) == expected
        return
    resp = stage.client.post("/shopify/webhooks", data=body, headers=sent)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    webhook_id = _stored_as(headers.get("X-Shopify-Webhook-Id", ""), 255) or \
        f"none:{hashlib.sha256(body).hexdigest()}"
    with stage.app.config["MBUZZ"].sessions() as db:
        row = db.scalars(sa.select(sm.ShopifyWebhookDelivery).where(
            sm.ShopifyWebhookDelivery.webhook_id == webhook_id)).first()
    if resp.get_json() == {"status": "duplicate"}:  # an earlier example sent the same id or event
        return
    assert row is not None and row.topic == topic and row.body_sha256 == hashlib.sha256(body).hexdigest()
    assert row.event_id == (_stored_as(headers.get("X-Shopify-Event-Id", ""), 255) or None)
    assert row.triggered_at == (_stored_as(headers.get("X-Shopify-Triggered-At", ""), 40) or None)


@settings(max_examples=25, deadline=None)
@example(token="\x00")
@example(token="é" * 300)
@given(token=st.text(st.characters(blacklist_characters="/"), min_size=1, max_size=300))
def test_SHP78_hostile_connector_tokens_are_401_and_change_nothing(stage: Stage, token: str) -> None:
    path = "/shopify/webhooks/m/" + quote(token.encode("utf-8", "surrogatepass"), safe="")
    resp = stage.refused_without_change(lambda: stage.client.post(
        path, data=BODY, headers=_headers(MANUAL_CORRECT, shop=MANUAL_SHOP)))
    assert (resp.status_code, resp.get_json()) == (401, {"error": "unknown_connector"})


# --- the OAuth and App URL query `hmac` (SHP-17) ----------------------------------------------------------------

def _db_rows(env: Env) -> dict[str, list[str]]:
    return every_row(env.services.engine)


def _oauth_queries() -> dict[str, str]:
    """Otherwise-valid queries of the three signed routes, each ending in its correct `&hmac=<hex>`."""
    stamp = str(int(NOW.timestamp()))
    return {
        "/shopify/auth": signed_query({"shop": BIRCH, "timestamp": stamp}),
        "/shopify/auth/callback": signed_query({"code": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "shop": BIRCH,
                                                "state": "n0nce", "timestamp": stamp}),
        "/shopify/app": signed_query({"embedded": "1", "id_token": session_token(AURORA), "shop": AURORA,
                                      "timestamp": stamp}),
    }


def _replace_hmac(query: str, encoded: str) -> str:
    head, _, correct = query.rpartition("&hmac=")
    assert len(correct) == 64
    return f"{head}&hmac={encoded}"


HOSTILE_QUERY_HMACS = [b"", b"\xff", "é".encode(), b"%", b"\x00" * 64, b"0" * 64, b"A" * 10240,
                       "０".encode() * 64]  # fullwidth digits: `str.isdigit` says yes


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(raw=b"\xff\xfe")
@example(raw="é".encode())
@example(raw=b"")
@example(raw=b"A" * 10240)
@given(raw=st.binary(max_size=8192))
def test_SHP17_hostile_query_hmac_is_401_and_changes_nothing(env: Env, raw: bytes) -> None:
    """SHP-20 (after the shop check), SHP-22 (`hmac` present must verify), SHP-23 (1): any `hmac` value but the
    right one, percent-encoded bytes of any kind, is a 401; no state row, cookie, installation or outbound call.
    (The `env` fixture is shared by the examples on purpose: each checks that it changed nothing.)"""
    for path, query in _oauth_queries().items():
        before = _db_rows(env)
        env.fake.clear()
        resp = env.client.get(f"{path}?{_replace_hmac(query, quote(raw, safe=''))}")
        assert resp.status_code == 401, (path, resp.status_code)
        assert "Set-Cookie" not in resp.headers
        assert _db_rows(env) == before
        assert env.fake.requests == []


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_SHP17_targeted_query_hmacs_and_the_control(env: Env) -> None:
    """The targeted cases on each route, a second `hmac` (never verifies), and the control: the untouched
    queries get past the signature (302 to Shopify's consent screen, 401 for the unknown state, 200 page)."""
    queries = _oauth_queries()
    for path, query in queries.items():
        correct = query.rpartition("&hmac=")[2]
        cases = [quote(raw, safe="") for raw in HOSTILE_QUERY_HMACS]
        cases += [correct + "00", correct + "%C3%A9", "%C3%A9" + correct[1:], correct[:-1] + "%FF"]
        for encoded in cases:
            before = _db_rows(env)
            resp = env.client.get(f"{path}?{_replace_hmac(query, encoded)}")
            assert resp.status_code == 401, (path, encoded[:40], resp.status_code)
            assert _db_rows(env) == before
        resp = env.client.get(f"{path}?{query}&hmac={correct}")
        assert resp.status_code == 401, (path, "two hmac parameters")
    assert env.client.get(f"/shopify/auth?{queries['/shopify/auth']}").status_code == 302
    callback = env.client.get(f"/shopify/auth/callback?{queries['/shopify/auth/callback']}")
    assert "does not verify" not in callback.get_data(as_text=True)  # refused later, at the state (SHP-23 (3))
    assert callback.status_code == 401
    assert env.client.get(f"/shopify/app?{queries['/shopify/app']}").status_code == 200
    assert env.fake.requests == []


# --- values read after a valid query signature (SHP-18 timestamps) ----------------------------------------------

@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(stamp="²")  # `"²".isdigit()` is true, `int("²")` fails: was a 500
@example(stamp="9" * 400)  # overflows the float subtraction: was a 500
@example(stamp="9" * 5000)  # over Python's int-parsing limit: was a 500
@example(stamp="".join(chr(0xFF10 + int(d)) for d in str(int(NOW.timestamp()))))  # fullwidth: int() reads it
@example(stamp=" \x00")
@given(stamp=st.text(max_size=64).filter(lambda s: not (s.strip().isascii() and s.strip().isdigit())))
def test_SHP18_signed_but_hostile_timestamp_is_401(env: Env, stamp: str) -> None:
    """A correctly signed App URL whose `timestamp` is not ASCII decimal digits is stale (401), never a 500."""
    query = signed_query({"embedded": "1", "id_token": session_token(AURORA), "shop": AURORA, "timestamp": stamp})
    before = _db_rows(env)
    resp = env.client.get(f"/shopify/app?{query}")
    assert resp.status_code == 401
    assert _db_rows(env) == before


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_SHP18_SHP23_signed_callback_with_hostile_timestamps_is_401_after_the_state(env: Env) -> None:
    """SHP-23 (4) after a real state (3): a hostile timestamp is 401 and no token is requested."""
    for stamp in ("²", "9" * 400, "9" * 5000, "-1", "1e9", str(int(NOW.timestamp())) + "\x00"):
        resp = env.client.get(f"/shopify/auth?shop={BIRCH}")
        state = parse_qs(urlsplit(resp.headers["Location"]).query)["state"][0]
        query = signed_query({"code": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "shop": BIRCH, "state": state,
                              "timestamp": stamp})
        callback = env.client.get(f"/shopify/auth/callback?{query}")
        assert callback.status_code == 401, stamp[:20]
        assert "too old" in callback.get_data(as_text=True)
    assert env.fake.requests == []
    assert env.installation(BIRCH) is None


def test_SHP18_fresh_reads_only_ascii_digits() -> None:
    from connectors.shopify.querysign import fresh

    stamp = int(NOW.timestamp())
    assert fresh(f" {stamp} ", NOW, 300)
    assert fresh(f"{stamp - 300}", NOW, 300) and not fresh(f"{stamp - 301}", NOW, 300)
    for bad in ("²", "9" * 16, "9" * 5000, "".join(chr(0xFF10 + int(d)) for d in str(stamp)), "\x00", ""):
        assert not fresh(bad, NOW, 300)
    assert fresh(str(stamp + 60), NOW + timedelta(0), 300)


def test_SHP33_body_hmac_compares_any_text_as_bytes() -> None:
    from connectors.shopify.querysign import body_hmac_valid, digest_equal, query_hmac_valid

    assert body_hmac_valid(BODY, CORRECT, [SECRET])
    assert body_hmac_valid(BODY, f" {CORRECT}\t", [SECRET])  # surrounding whitespace is not part of it
    for hostile in ("é", "\udcff", "\xff" * 44, CORRECT + "\x00", "", CORRECT + "\x85", "\xa0" + CORRECT,
                    CORRECT + "\x0b", CORRECT + "\n"):  # only space and tab surround a header value
        assert not body_hmac_valid(BODY, hostile, [SECRET, "previous"])
    assert not query_hmac_valid("shop=a.myshopify.com&hmac=%FF", [SECRET])
    assert not query_hmac_valid("shop=a.myshopify.com&hmac=\udcff", [SECRET])
    assert digest_equal("abc", "abc") and not digest_equal("abc", "abç")
