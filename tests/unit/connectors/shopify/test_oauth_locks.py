"""The install and connect state machine under concurrency, on PostgreSQL (shopify.md SHP-20, SHP-23, SHP-28,
SHP-85).

Two app instances (two gunicorn workers, each with its own engine and connection pool) serve the two racing
requests, released together by a barrier. To make the overlap certain rather than likely, the test first takes
the row lock (or the unique-index slot) that the product's own guard relies on, in a third transaction; both
requests then pass every earlier check and queue up on that lock, which the test sees in `pg_stat_activity`
before releasing it. Whatever order PostgreSQL then picks, the answers and the stored rows must be those of one
winner. Nothing here waits a fixed time: every wait polls with a deadline.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.test import TestResponse

from connectors.shopify import models as sm
from connectors.shopify.install import create_connect_code
from connectors.shopify.oauth import COOKIE
from core.crypto import cipher
from core.ids import new_id
from core.storage import models as m
from core.storage.db import make_engine
from gateway import create_app
from tests.conftest import make_settings, new_account
from tests.integration.processes import wait_until
from tests.unit.connectors.sgtm.test_normalize import SEED
from tests.unit.connectors.shopify.install_env import (
    API_KEY,
    NOW,
    PUBLIC,
    SECRET,
    bearer,
    host_param,
    session_token,
    signed_query,
    token_rule,
)
from tools.fake_shopify import FakeShopify
from tools.fixtures import seed

pytestmark = [pytest.mark.postgres, pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")]

STATE_EXPIRED = "This install link has expired or was opened in another browser. Start again."
INVALID_CODE = {"success": False, "errors": ["invalid or expired code"]}
ALREADY_CONNECTED = {"success": False, "errors": ["the shop is already connected to an account"]}


@dataclass
class Race:
    apps: tuple[Flask, Flask]
    fake: FakeShopify
    engine: sa.Engine  # the test's own connections: the lock holder and the pg_stat_activity reader

    def new_shop(self) -> str:
        shop = f"race-{secrets.token_hex(5)}.myshopify.com"
        self.fake.add_shop(shop, name=f"Race {shop[5:15]}")
        token_rule(self.fake, shop)  # any token request for this shop is granted (code grant or exchange)
        return shop

    def installations(self, shop: str) -> list[m.Installation]:
        with self.apps[0].config["MBUZZ"].sessions() as db:
            rows = list(db.scalars(sa.select(m.Installation).where(m.Installation.shop_domain == shop)))
            db.expunge_all()
            return rows

    def add_installation(self, shop: str, status: str, account_id: str | None) -> str:
        settings = self.apps[0].config["MBUZZ"].settings
        token = cipher(settings.encryption_keys, settings.secret_key).encrypt(b"shpat_race").decode()
        installation_id = new_id("inst", NOW)
        with self.apps[0].config["MBUZZ"].sessions.begin() as db:
            db.add(m.Installation(id=installation_id, shop_domain=shop, domains=[], environment="live", mode="app",
                                  status=status, account_id=account_id, access_token_enc=token, settings={},
                                  installed_at=NOW, created_at=NOW, updated_at=NOW))
        return installation_id

    def lock_waiters(self, statement: str) -> int:
        """Backends of this database waiting for a lock while running a statement that starts like `statement`."""
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE :like"), {"like": statement + "%"}) or 0)

    def run(self, hold: Callable[[sa.Connection], object], waiting_on: str,
            calls: list[Callable[[], TestResponse]]) -> list[TestResponse]:
        """Hold a lock with `hold`, start `calls` together, see them all queue on it, release, collect answers."""
        answers: list[Any] = [None] * len(calls)
        barrier = threading.Barrier(len(calls))

        def call(i: int) -> None:
            barrier.wait(timeout=10)
            try:
                answers[i] = calls[i]()
            except BaseException as exc:  # reported by the assertion below, never lost in the thread
                answers[i] = exc

        with self.engine.connect() as holder:
            transaction = holder.begin()
            try:
                hold(holder)
                threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(len(calls))]
                for thread in threads:
                    thread.start()
                overlapped = wait_until(lambda: self.lock_waiters(waiting_on) == len(calls), 20, 0.02)
            finally:
                transaction.rollback()  # release: the racers proceed in whatever order PostgreSQL picks
            for thread in threads:
                thread.join(60)
        assert all(isinstance(a, TestResponse) for a in answers), answers
        assert overlapped, f"the requests did not all reach `{waiting_on}` together: {answers}"
        return answers


@pytest.fixture(scope="module")
def race(database_url: str, is_postgres: bool) -> Iterator[Race]:
    if not is_postgres:
        pytest.skip("row locks between concurrent transactions are tested on PostgreSQL")
    with FakeShopify() as fake:
        apps = tuple(create_app(make_settings(database_url, shopify_api_key=API_KEY, shopify_api_secret=SECRET,
                                              public_url=PUBLIC, shopify_outbound_base=fake.base_url))
                     for _ in range(2))
        for app in apps:
            app.config["MBUZZ"].clock = lambda: NOW
        seed(apps[0], SEED)
        engine = make_engine(database_url)
        try:
            yield Race((apps[0], apps[1]), fake, engine)
        finally:
            engine.dispose()
            for app in apps:
                app.config["MBUZZ"].engine.dispose()


def _begin(app: Flask, shop: str) -> tuple[str, str]:
    """`GET /shopify/auth` in one browser: the state nonce and the signed cookie that carries it."""
    resp = app.test_client(use_cookies=False).get(f"/shopify/auth?shop={shop}")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    state = parse_qs(urlsplit(resp.headers["Location"]).query)["state"][0]
    cookie = resp.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]
    return state, cookie


def _callback(app: Flask, shop: str, state: str, cookie: str, code: str) -> Callable[[], TestResponse]:
    query = signed_query({"code": code, "host": host_param(shop), "shop": shop, "state": state,
                          "timestamp": str(int(NOW.timestamp()) - 10)})
    client = app.test_client(use_cookies=False)
    return lambda: client.get(f"/shopify/auth/callback?{query}", headers={"Cookie": f"{COOKIE}={cookie}"})


def _app_page(app: Flask, shop: str) -> Callable[[], TestResponse]:
    """The App URL as the Shopify admin opens it (SHP-20): signed query and a fresh `id_token`."""
    query = signed_query({"embedded": "1", "host": host_param(shop), "id_token": session_token(shop, now=NOW),
                          "shop": shop, "timestamp": str(int(NOW.timestamp()))})
    client = app.test_client(use_cookies=False)
    return lambda: client.get(f"/shopify/app?{query}")


def _connect(app: Flask, shop: str, code: str) -> Callable[[], TestResponse]:
    client = app.test_client(use_cookies=False)
    return lambda: client.post("/shopify/api/connect", json={"code": code}, headers=bearer(session_token(shop)))


def _token_requests(race: Race, shop: str) -> int:
    return sum(1 for r in race.fake.requests if r.kind == "token" and r.shop == shop)


@contextmanager
def _no_leftover(race: Race) -> Iterator[None]:
    yield
    assert race.lock_waiters("") == 0  # every racer finished: nothing still queued on a lock


def test_SHP23_one_state_used_by_two_callbacks_at_once_installs_once(race: Race) -> None:
    shop = race.new_shop()
    state, cookie = _begin(race.apps[0], shop)
    digest = hashlib.sha256(state.encode()).hexdigest()
    with _no_leftover(race):
        answers = race.run(
            lambda holder: holder.execute(sa.text(
                "SELECT 1 FROM shopify_oauth_states WHERE nonce_sha256 = :d FOR UPDATE"), {"d": digest}),
            "UPDATE shopify_oauth_states",
            [_callback(app, shop, state, cookie, "a1b2c3d4e5f60718293a4b5c6d7e8f90") for app in race.apps])
    assert sorted(a.status_code for a in answers) == [302, 401]
    (winner,) = [a for a in answers if a.status_code == 302]
    (loser,) = [a for a in answers if a.status_code == 401]
    assert winner.headers["Location"] == f"https://admin.shopify.com/store/{shop.split('.')[0]}/apps/{API_KEY}"
    assert STATE_EXPIRED in loser.get_data(as_text=True)  # SHP-23 (3): the state is single use
    assert _token_requests(race, shop) == 1  # the refused callback never reached Shopify
    (installation,) = race.installations(shop)
    assert (installation.status, installation.token_status) == ("pending_connect", "valid")
    with race.apps[0].config["MBUZZ"].sessions() as db:
        row = db.get(sm.ShopifyOAuthState, digest)
        assert row is not None and row.used_at == NOW


def test_SHP28_one_code_redeemed_by_two_shops_at_once_connects_one(race: Race) -> None:
    first, second = race.new_shop(), race.new_shop()
    for shop in (first, second):
        race.add_installation(shop, "pending_connect", None)
    account = new_account(race.apps[0], "Race Owner").account_id
    code = create_connect_code(race.apps[0].config["MBUZZ"], account, "live")
    with _no_leftover(race):
        answers = race.run(
            lambda holder: holder.execute(sa.text(
                "SELECT 1 FROM shopify_connect_codes WHERE code_sha256 = :d FOR UPDATE"),
                {"d": hashlib.sha256(code.encode()).hexdigest()}),
            "UPDATE shopify_connect_codes",
            [_connect(race.apps[0], first, code), _connect(race.apps[1], second, code)])
    assert sorted(a.status_code for a in answers) == [200, 422]
    winner = first if answers[0].status_code == 200 else second
    loser = second if winner == first else first
    assert [a.get_json() for a in answers if a.status_code == 200] == [{"account_id": account, "environment": "live"}]
    assert [a.get_json() for a in answers if a.status_code == 422] == [INVALID_CODE]
    (won,), (lost,) = race.installations(winner), race.installations(loser)
    assert (won.status, won.account_id) == ("active", account)
    assert (lost.status, lost.account_id) == ("pending_connect", None)  # the single-use code bound one shop


def test_SHP28_one_shop_redeeming_its_code_in_two_tabs_at_once_connects_once(race: Race) -> None:
    shop = race.new_shop()
    installation_id = race.add_installation(shop, "pending_connect", None)
    account = new_account(race.apps[0], "Race Tabs").account_id
    code = create_connect_code(race.apps[0].config["MBUZZ"], account, "test")
    with _no_leftover(race):
        answers = race.run(
            lambda holder: holder.execute(sa.text("SELECT 1 FROM installations WHERE id = :i FOR UPDATE"),
                                          {"i": installation_id}),
            "SELECT installations.%FOR UPDATE",  # _locked_unconnected: the installation row FOR UPDATE
            [_connect(app, shop, code) for app in race.apps])
    # SHP-28: the second tab finds the shop connected: 409, not a second use of the code.
    assert sorted((a.status_code, str(a.get_json())) for a in answers) == \
        [(200, str({"account_id": account, "environment": "test"})), (409, str(ALREADY_CONNECTED))]
    (installation,) = race.installations(shop)
    assert (installation.id, installation.status, installation.account_id, installation.environment) == \
        (installation_id, "active", account, "test")


def test_SHP23_SHP85_two_first_installs_of_one_shop_at_once_make_one_installation(race: Race) -> None:
    shop = race.new_shop()
    browsers = [(app, *_begin(app, shop)) for app in race.apps]  # two browsers, each with its own state

    def hold(holder: sa.Connection) -> None:
        # An install of the same shop that has inserted its row but not committed: both racers pass their
        # SELECT ... FOR UPDATE (no row yet) and then queue on the shop_domain unique index.
        holder.execute(sa.insert(m.Installation).values(
            id=new_id("inst", NOW), shop_domain=shop, domains=[], plan_partner_development=False,
            environment="live", mode="app", status="pending_connect", token_status="valid", settings={},
            created_at=NOW, updated_at=NOW))

    with _no_leftover(race):
        answers = race.run(hold, "INSERT INTO installations",
                           [_callback(app, shop, state, cookie, f"code-{i}")
                            for i, (app, state, cookie) in enumerate(browsers)])
    assert [a.status_code for a in answers] == [302, 302], [a.get_data(as_text=True)[:300] for a in answers]
    assert _token_requests(race, shop) == 2  # both installs were granted a token by Shopify
    (installation,) = race.installations(shop)  # SHP-85: one row per shop, whoever inserted first
    assert (installation.status, installation.mode, installation.token_status) == ("pending_connect", "app", "valid")
    assert installation.shop_name is not None  # the post-install job ran for it


def test_SHP20_SHP85_two_reinstalls_of_one_shop_at_once_reuse_its_row(race: Race) -> None:
    shop = race.new_shop()
    installation_id = race.add_installation(shop, "uninstalled", "acct_02")
    with race.apps[0].config["MBUZZ"].sessions.begin() as db:  # uninstalled: no tokens left (SHP-84)
        db.execute(sa.update(m.Installation).where(m.Installation.id == installation_id)
                   .values(access_token_enc=None, uninstalled_at=NOW))
    with _no_leftover(race):
        answers = race.run(
            lambda holder: holder.execute(sa.text("SELECT 1 FROM installations WHERE id = :i FOR UPDATE"),
                                          {"i": installation_id}),
            "SELECT installations.%FOR UPDATE",  # _upsert: the shop's row FOR UPDATE
            [_app_page(app, shop) for app in race.apps])
    assert [a.status_code for a in answers] == [200, 200], [a.get_data(as_text=True)[:300] for a in answers]
    assert _token_requests(race, shop) == 2  # both tabs exchanged their session token
    (installation,) = race.installations(shop)
    assert (installation.id, installation.status, installation.account_id, installation.uninstalled_at) == \
        (installation_id, "active", "acct_02", None)
    assert installation.access_token_enc is not None and installation.token_status == "valid"
