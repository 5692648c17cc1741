"""Session tokens of the embedded API (shopify.md SHP-29..SHP-31): every F13f case, tokens signed at run time."""

from __future__ import annotations

import base64
import json
import warnings
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest

from connectors.shopify.session_tokens import InvalidSessionToken, bearer_token, decode_session_token
from tests.unit.connectors.sgtm.test_normalize import SHARED
from tests.unit.connectors.shopify.install_env import (
    API_KEY,
    AURORA,
    NOW,
    SECRET,
    Env,
    bearer,
    build_env,
    session_token,
)
from tools.fake_shopify import FakeShopify

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

F13F = json.loads((SHARED / "fixtures" / "shopify" / "F13f.json").read_text())
F13F_EXPECTED = json.loads((SHARED / "fixtures" / "shopify" / "F13f.expected.json").read_text())


def _f13f_token(case: dict[str, Any]) -> str:
    """F13f's recipe: base claims, overrides, removals, then times relative to its `now`."""
    at = int(NOW.timestamp())
    claims = {**F13F["base_claims"], **case.get("overrides", {})}
    claims.update({k: at + v for k, v in {**F13F["base_relative"], **case.get("relative", {})}.items()})
    for name in case.get("remove", []):
        claims.pop(name)
    alg = case.get("alg", "HS256")
    if alg == "none":
        def segment(data: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(claims, case.get("secret", F13F["signing"]["secret"]), algorithm=alg)


@pytest.mark.parametrize("case", F13F["cases"], ids=[c["name"] for c in F13F["cases"]])
def test_SHP30_SHP31_F13f_case(case: dict[str, Any], tmp_path: Path, fake: FakeShopify) -> None:
    config = case.get("config", {})
    env = build_env(tmp_path, fake, shopify_api_secret=config.get("SHOPIFY_API_SECRET", SECRET),
                    shopify_api_secret_previous=config.get("SHOPIFY_API_SECRET_PREVIOUS") or None)
    headers = {} if case.get("no_token") else bearer(_f13f_token(case))
    resp = env.client.get("/shopify/api/status", headers=headers)
    assert resp.status_code == F13F_EXPECTED["statuses"][case["name"]] == case["expect_status"]
    if resp.status_code == 401:
        assert resp.get_json() == {"error": "invalid_session_token"}
    if case["name"] == "valid":
        body = resp.get_json()
        assert {k: body["installation"][k] for k in F13F_EXPECTED["valid_body_subset"]["installation"]} == \
            F13F_EXPECTED["valid_body_subset"]["installation"]


def _settings(**values: Any) -> SimpleNamespace:
    return SimpleNamespace(**{"shopify_api_key": API_KEY, "shopify_api_secret": SECRET,
                              "shopify_api_secret_previous": None, **values})


def test_SHP30_claims_are_returned_and_jti_may_repeat() -> None:
    token = session_token()
    first = decode_session_token(token, _settings(), NOW)
    again = decode_session_token(token, _settings(), NOW + timedelta(seconds=30))  # App Bridge reuses a token
    assert (first.shop, first.sub, first.sid) == (AURORA, "84920001", "a6b7c8d9e0f1")
    assert again.jti == first.jti


@pytest.mark.parametrize("claims", [
    {"iat": int(NOW.timestamp()) + 11},  # issued in the future beyond the leeway
    {"exp": None},  # every required claim must be present
    {"sub": None},
    {"dest": "aurora-lamps.myshopify.com", "iss": "aurora-lamps.myshopify.com/admin"},  # no https://
    {"dest": "https://aurora-lamps.myshopify.com.evil.com"},
    {"iss": "https://aurora-lamps.myshopify.com"},  # not the admin
    {"aud": [API_KEY, "other"]},  # still contains our audience: PyJWT accepts a list, so this one is valid
])
def test_SHP30_SHP31_claim_rules(claims: dict[str, Any]) -> None:
    token = session_token(**claims)
    if isinstance(claims.get("aud"), list):
        assert decode_session_token(token, _settings(), NOW).shop == AURORA
        return
    with pytest.raises(InvalidSessionToken):
        decode_session_token(token, _settings(), NOW)


def test_SHP30_other_algorithms_and_unconfigured_app_are_refused() -> None:
    with pytest.raises(InvalidSessionToken):
        decode_session_token(session_token(alg="HS384"), _settings(), NOW)
    with pytest.raises(InvalidSessionToken):
        decode_session_token(session_token(), _settings(shopify_api_key=None), NOW)
    with pytest.raises(InvalidSessionToken):
        decode_session_token("not.a.jwt", _settings(), NOW)


def test_SHP29_bearer_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token(None) is None


def test_SHP31_tenant_only_from_dest(env: Env) -> None:
    """A shop in the query, in a header or in a cookie never selects the tenant."""
    headers = {**bearer(session_token(AURORA)), "X-Shopify-Shop-Domain": "birch-goods.myshopify.com"}
    resp = env.client.get("/shopify/api/status?shop=birch-goods.myshopify.com", headers=headers)
    assert resp.status_code == 200
    assert resp.get_json()["installation"]["shop_domain"] == AURORA
    env.update_installation(AURORA, status="uninstalled")
    assert env.client.get("/shopify/api/status", headers=bearer(session_token(AURORA))).status_code == 401
