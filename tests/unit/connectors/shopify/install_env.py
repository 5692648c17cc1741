"""What the install, embedded-page and Admin API tests share: a seeded app on its own SQLite database whose
outbound Shopify calls go to a real local fake Shopify (connectors/shopify/fake_admin.py), a settable clock,
and helpers to sign App URL queries and session tokens at run time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from connectors.shopify.querysign import canonical_query
from core.crypto import cipher
from core.storage import models as m
from core.storage.db import migrate
from gateway import create_app
from tests.conftest import make_settings
from tests.unit.connectors.sgtm.test_normalize import SEED
from tools.fake_shopify import FakeShopify
from tools.fixtures import seed

API_KEY = "5f9d1c3b7a2e4f6081d3c5b7a9e1f203"
SECRET = "test_app_secret"
PUBLIC = "https://mbuzz.test"
NOW = datetime(2026, 5, 20, 3, 30, tzinfo=UTC)
AURORA = "aurora-lamps.myshopify.com"
BIRCH = "birch-goods.myshopify.com"
ALL_TOPICS = ["ORDERS_PAID", "ORDERS_CREATE", "ORDERS_CANCELLED", "REFUNDS_CREATE", "CUSTOMERS_CREATE",
              "CUSTOMERS_UPDATE", "SHOP_UPDATE"]


@dataclass
class Env:
    app: Flask
    client: FlaskClient
    fake: FakeShopify

    @property
    def services(self) -> Any:
        return self.app.config["MBUZZ"]

    def at(self, when: datetime) -> None:
        self.services.clock = lambda: when

    def installation(self, shop: str) -> m.Installation | None:
        with self.services.sessions() as db:
            row: m.Installation | None = db.scalars(sa.select(m.Installation).where(
                m.Installation.shop_domain == shop)).first()
            if row is not None:
                db.expunge(row)
            return row

    def update_installation(self, shop: str, **values: Any) -> None:
        with self.services.sessions.begin() as db:
            db.execute(sa.update(m.Installation).where(m.Installation.shop_domain == shop).values(**values))

    def decrypt(self, token_enc: str) -> str:
        settings = self.services.settings
        return cipher(settings.encryption_keys, settings.secret_key).decrypt(token_enc.encode()).decode()

    def encrypt(self, plaintext: str) -> str:
        settings = self.services.settings
        return cipher(settings.encryption_keys, settings.secret_key).encrypt(plaintext.encode()).decode()

    def anywhere_in_db(self, text: str) -> list[str]:
        """Every `table.column` holding `text` (as a substring of any value)."""
        found = []
        with self.services.sessions() as db:
            for table in m.Base.metadata.sorted_tables:
                for row in db.execute(sa.select(table)).mappings():
                    found += [f"{table.name}.{k}" for k, v in row.items() if v is not None and text in str(v)]
        return found


def build_env(tmp_path: Path, fake: FakeShopify, **overrides: Any) -> Env:
    url = f"sqlite:///{tmp_path / 'shopify.db'}"
    migrate(url)
    values: dict[str, Any] = {"shopify_api_key": API_KEY, "shopify_api_secret": SECRET, "public_url": PUBLIC,
                              "shopify_outbound_base": fake.base_url}
    values.update(overrides)
    app = create_app(make_settings(url, **values))
    seed(app, SEED)
    env = Env(app, app.test_client(), fake)
    env.at(NOW)
    return env


@contextmanager
def fake_shopify() -> Iterator[FakeShopify]:
    """The fake Shopify with the two shops the tests use (the seed's Aurora Lamps and a new Birch Goods)."""
    with FakeShopify() as server:
        server.add_shop(AURORA, id="gid://shopify/Shop/954889", name="Aurora Lamps",
                        primaryDomain={"host": "aurora-lamps.com"}, currencyCode="AUD",
                        ianaTimezone="Australia/Sydney")
        server.add_shop(BIRCH, id="gid://shopify/Shop/777001", name="Birch Goods",
                        primaryDomain={"host": "birchgoods.example"},
                        domains=[{"host": "birchgoods.example"}, {"host": BIRCH}], currencyCode="USD",
                        ianaTimezone="America/New_York")
        yield server


def signed_query(params: dict[str, str], secret: str = SECRET) -> str:
    """A query string with the SHP-17 `hmac` Shopify would add."""
    query = urlencode(params)
    digest = hmac.new(secret.encode(), canonical_query(query).encode(), hashlib.sha256).hexdigest()
    return f"{query}&hmac={digest}"


def host_param(shop: str) -> str:
    return base64.b64encode(f"admin.shopify.com/store/{shop.split('.')[0]}".encode()).decode()


def session_token(shop: str = AURORA, now: datetime = NOW, secret: str = SECRET, alg: str = "HS256",
                  **claims: Any) -> str:
    """An App Bridge session token signed at run time (SHP-30)."""
    at = int(now.timestamp())
    payload: dict[str, Any] = {"iss": f"https://{shop}/admin", "dest": f"https://{shop}", "aud": API_KEY,
                               "sub": "84920001", "jti": "5f0e2b9a-77c1-4a3e-9d1b-2c3d4e5f6a7b",
                               "sid": "a6b7c8d9e0f1", "exp": at + 60, "nbf": at - 5, "iat": at - 5}
    payload.update(claims)
    for name in [k for k, v in payload.items() if v is None]:
        del payload[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the test secrets are short on purpose
        return jwt.encode(payload, secret, algorithm=alg)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_rule(fake: FakeShopify, shop: str, access_token: str = "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",
               scope: str = "read_orders,read_customers,write_pixels,read_customer_events", status: int = 200,
               name: str = "token", subset: dict[str, Any] | None = None, **extra: Any) -> None:
    answer = {"access_token": access_token, "scope": scope, **extra} if status == 200 else {"error": "invalid_grant"}
    fake.on_token(name, shop, subset or {}, status, answer)
