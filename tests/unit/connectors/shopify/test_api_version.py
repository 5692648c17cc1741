"""The Admin API version the gateway speaks, and what happens when it ages out (shopify.md SHP-6; issue 14).

Shopify supports each stable version for 12 months. The version is one constant; past its support the worker logs
a warning (at start and in the daily maintenance) and `/api/v1/health?deep=1` reports it — tested by moving the
app's injectable clock, never by waiting.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from connectors.shopify.api_version import API_VERSION, version_status
from connectors.shopify.maintenance import run_daily_maintenance
from core.storage.db import migrate
from tests.unit.connectors.shopify.install_env import API_KEY, SECRET, Env, build_env
from tools.fake_shopify import FakeShopify

ROOT = Path(__file__).resolve().parents[4]

SUPPORT_ENDS = datetime(2027, 10, 1, tzinfo=UTC)  # 2026-10 + 12 months


@pytest.mark.parametrize(("version", "today", "supported", "until"), [
    ("2026-10", date(2026, 12, 7), True, date(2027, 10, 1)),
    ("2026-10", date(2027, 9, 30), True, date(2027, 10, 1)),
    ("2026-10", date(2027, 10, 1), False, date(2027, 10, 1)),  # the first day after 12 months
    ("2025-10", date(2026, 12, 7), False, date(2026, 10, 1)),  # the version this app shipped before issue 14
    ("2026-01", date(2026, 12, 31), True, date(2027, 1, 1)),
    ("unstable", date(2026, 12, 7), False, None),
    ("2026-11", date(2026, 12, 7), False, None),  # Shopify releases quarterly: no such version
    ("", date(2026, 12, 7), False, None),
])
def test_SHP6_a_version_is_supported_for_12_months(version: str, today: date, supported: bool,
                                                   until: date | None) -> None:
    status = version_status(version, today)
    assert (status.supported, status.supported_until) == (supported, until)
    assert (version or "''") in status.message


def test_SHP6_the_shipped_version_is_the_newest_stable_one() -> None:
    assert API_VERSION == "2026-10"


def test_SHP6_deep_health_reports_an_unsupported_version(env: Env) -> None:
    client = env.client
    env.at(datetime(2026, 12, 7, tzinfo=UTC))
    body = client.get("/api/v1/health?deep=1").get_json()
    assert body["checks"]["shopify_api_version"] == "ok" and "warnings" not in body
    env.at(SUPPORT_ENDS)
    resp = client.get("/api/v1/health?deep=1")
    body = resp.get_json()
    assert resp.status_code == 200 and body["status"] == "ok"  # reported, not down: Shopify still answers
    assert body["checks"]["shopify_api_version"] == "unsupported"
    assert len(body["warnings"]) == 1 and f"Shopify API {API_VERSION} is older than 12 months" in body["warnings"][0]
    assert "warnings" not in client.get("/api/v1/health").get_json()  # only the deep check reports it


def test_SHP6_deep_health_without_the_shopify_app_says_absent(tmp_path: Path, fake: FakeShopify) -> None:
    env = build_env(tmp_path, fake, shopify_api_key=None, shopify_api_version="2024-01")
    body = env.client.get("/api/v1/health?deep=1").get_json()
    assert body["checks"]["shopify_api_version"] == "absent" and "warnings" not in body


def test_SHP6_a_configured_old_version_is_reported(tmp_path: Path, fake: FakeShopify) -> None:
    env = build_env(tmp_path, fake, shopify_api_version="2025-10")  # SHOPIFY_API_VERSION overrides the constant
    env.at(datetime(2026, 12, 7, tzinfo=UTC))
    body = env.client.get("/api/v1/health?deep=1").get_json()
    assert body["checks"]["shopify_api_version"] == "unsupported"
    assert "support ended 2026-10-01" in body["warnings"][0]


def test_SHP6_the_worker_warns_at_start(tmp_path: Path) -> None:
    """A real worker process (burst) configured with the version this app shipped before (2025-10, whose support
    ended on 2026-10-01) logs the warning before it starts working."""
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    migrate(url)
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:6379/0", "SHOPIFY_API_KEY": API_KEY,
           "SHOPIFY_API_SECRET": SECRET, "SHOPIFY_API_VERSION": "2025-10"}
    proc = subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "gateway", "mbuzz", "worker",
                           "--burst"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Shopify API 2025-10 is older than 12 months (support ended 2026-10-01)" in proc.stderr


def test_SHP6_the_daily_maintenance_warns(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.at(SUPPORT_ENDS)
    caplog.set_level(logging.WARNING, logger="mbuzz.shopify")
    assert run_daily_maintenance(env.services)["api_version_unsupported"] == 1
    assert any(f"Shopify API {API_VERSION} is older than 12 months" in r.getMessage() for r in caplog.records)
    caplog.clear()
    env.at(datetime(2026, 12, 7, tzinfo=UTC))
    assert run_daily_maintenance(env.services)["api_version_unsupported"] == 0
    assert not any("older than 12 months" in r.getMessage() for r in caplog.records)
