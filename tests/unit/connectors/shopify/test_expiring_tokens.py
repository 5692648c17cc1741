"""Expiring offline tokens on every path (shopify.md SHP-21, SHP-23, SHP-25; issue 14).

Public apps must use expiring offline tokens from 2027-01-01; Shopify then refuses non-expiring ones. Both grants
ask for `expiring=1`, and an installation still holding a non-expiring token (installed before) is moved to an
expiring one at its next embedded load (token exchange of the page's session token), by
`flask mbuzz shopify-migrate-tokens`, or by the daily maintenance (token exchange of the old token itself) —
all against the local fake Shopify, asserting the exact request Shopify receives.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from connectors.shopify.maintenance import run_daily_maintenance
from tests.unit.connectors.shopify.install_env import (
    API_KEY,
    AURORA,
    NOW,
    SECRET,
    Env,
    host_param,
    session_token,
    signed_query,
    token_rule,
)
from tools.fake_shopify import FakeShopify

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

OFFLINE = "urn:shopify:params:oauth:token-type:offline-access-token"
OLD_TOKEN = "shpat_nonexpiring0123456789abcdef01"


def _non_expiring(env: Env) -> None:
    """Aurora as installed before issue 14: a token without expiry and no refresh token."""
    env.update_installation(AURORA, access_token_enc=env.encrypt(OLD_TOKEN), token_expires_at=None,
                            refresh_token_enc=None, refresh_expires_at=None)


def _migration_rule(fake: FakeShopify, status: int = 200) -> None:
    token_rule(fake, AURORA, name="migrate", status=status, access_token="shpat_expiring_new", expires_in=3600,
               refresh_token="shprt_expiring_new", refresh_token_expires_in=7776000,
               subset={"client_id": API_KEY, "client_secret": SECRET,
                       "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                       "subject_token": OLD_TOKEN, "subject_token_type": OFFLINE,
                       "requested_token_type": OFFLINE, "expiring": "1"})


def _assert_moved(env: Env) -> None:
    installation = env.installation(AURORA)
    assert installation is not None and installation.access_token_enc and installation.refresh_token_enc
    assert env.decrypt(installation.access_token_enc) == "shpat_expiring_new"
    assert env.decrypt(installation.refresh_token_enc) == "shprt_expiring_new"
    assert (installation.token_expires_at, installation.refresh_expires_at, installation.token_status) == \
        (NOW + timedelta(seconds=3600), NOW + timedelta(seconds=7776000), "valid")
    assert env.anywhere_in_db("shpat_expiring_new") == [] and env.anywhere_in_db("shprt_expiring_new") == []


def test_SHP20_SHP21_embedded_load_moves_a_non_expiring_token(env: Env, fake: FakeShopify) -> None:
    _non_expiring(env)
    id_token = session_token(AURORA)
    token_rule(fake, AURORA, name="exchange", access_token="shpat_expiring_new", expires_in=3600,
               refresh_token="shprt_expiring_new", refresh_token_expires_in=7776000,
               subset={"subject_token": id_token, "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
                       "requested_token_type": OFFLINE, "expiring": "1"})
    query = signed_query({"embedded": "1", "host": host_param(AURORA), "id_token": id_token, "shop": AURORA,
                          "timestamp": str(int(NOW.timestamp()) - 20)})
    assert env.client.get(f"/shopify/app?{query}").status_code == 200
    assert fake.called_mocks() == ["exchange"]
    _assert_moved(env)
    fake.clear()  # the next load finds an expiring token: no exchange
    assert env.client.get(f"/shopify/app?{query}").status_code == 200
    assert [r for r in fake.requests if r.kind == "token"] == []


def test_SHP23_migrate_tokens_command_moves_and_reports(env: Env, fake: FakeShopify) -> None:
    _non_expiring(env)
    _migration_rule(fake)
    runner = env.app.test_cli_runner()
    result = runner.invoke(args=["mbuzz", "shopify-migrate-tokens"])
    assert result.exit_code == 0, result.output
    assert f"{AURORA} (inst_01): moved to an expiring token" in result.output
    assert "1 of 1 installation(s) moved" in result.output
    assert "shpat" not in result.output and "shprt" not in result.output
    assert fake.called_mocks() == ["migrate"]
    _assert_moved(env)
    again = runner.invoke(args=["mbuzz", "shopify-migrate-tokens"])  # nothing left to move: no call to Shopify
    assert again.exit_code == 0 and "0 of 0 installation(s)" in again.output
    assert fake.called_mocks() == ["migrate"]


def test_SHP23_a_refused_migration_changes_nothing_and_fails_the_command(env: Env, fake: FakeShopify) -> None:
    _non_expiring(env)
    _migration_rule(fake, status=400)
    before = env.installation(AURORA)
    result = env.app.test_cli_runner().invoke(args=["mbuzz", "shopify-migrate-tokens", "--shop", AURORA])
    assert result.exit_code == 1
    assert f"{AURORA} (inst_01): not moved: token migration: HTTP 400 (invalid_grant)" in result.output
    assert OLD_TOKEN not in result.output
    after = env.installation(AURORA)
    assert before is not None and after is not None
    assert (after.access_token_enc, after.token_expires_at, after.token_status) == \
        (before.access_token_enc, None, "valid")  # the old token keeps working until Shopify stops it
    bad = env.app.test_cli_runner().invoke(args=["mbuzz", "shopify-migrate-tokens", "--shop", "evil.com"])
    assert bad.exit_code != 0 and "--shop must be a *.myshopify.com domain" in bad.output


def test_SHP23_expiring_or_uninstalled_installations_are_left_alone(env: Env, fake: FakeShopify) -> None:
    result = env.app.test_cli_runner().invoke(args=["mbuzz", "shopify-migrate-tokens"])  # the seed's token expires
    assert result.exit_code == 0 and "0 of 0" in result.output
    _non_expiring(env)
    env.update_installation(AURORA, status="uninstalled")
    assert env.app.test_cli_runner().invoke(args=["mbuzz", "shopify-migrate-tokens"]).exit_code == 0
    assert fake.requests == []


def test_SHP23_the_daily_maintenance_moves_non_expiring_tokens(env: Env, fake: FakeShopify) -> None:
    _non_expiring(env)
    _migration_rule(fake)
    counts = run_daily_maintenance(env.services)
    assert (counts["tokens_migrated"], counts["token_migrations_failed"]) == (1, 0)
    _assert_moved(env)
