"""Fixtures of the install, embedded-page and Admin API tests (see install_env.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.connectors.shopify.install_env import Env, build_env, fake_shopify
from tools.fake_shopify import FakeShopify


@pytest.fixture()
def fake() -> Iterator[FakeShopify]:
    """A real local fake Shopify (HTTP server in a thread) that every outbound Shopify call of `env` reaches."""
    with fake_shopify() as server:
        yield server


@pytest.fixture()
def env(tmp_path: Path, fake: FakeShopify) -> Env:
    """A seeded app on its own SQLite database, configured as the fixtures' seed, clock at NOW."""
    return build_env(tmp_path, fake)
