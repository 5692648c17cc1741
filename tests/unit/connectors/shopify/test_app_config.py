"""The Shopify app configuration files (shopify.md SHP-90, SHP-91, SHP-97; tested as SHP-100 asks).

Both TOML files parse with `tomllib` and carry exactly the keys and values of the spec; the extension's package.json
pins `@shopify/web-pixels-extension`; the Admin API version is the gateway's one constant; `make shopify-config`
fills the placeholders.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from connectors.shopify.api_version import API_VERSION, version_status
from gateway.config import Settings

ROOT = Path(__file__).resolve().parents[4]
APP = ROOT / "connectors" / "shopify" / "app"
APP_TOML = APP / "shopify.app.toml"
EXTENSION = APP / "extensions" / "multibuzz-pixel"
HOOKS = "https://REPLACE_WITH_HOST/shopify/webhooks"


def load(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def test_app_toml_has_the_content_of_shp_97() -> None:
    """SHP-97: every key and value of the spec's shopify.app.toml, and nothing else."""
    assert load(APP_TOML) == {
        "client_id": "REPLACE_WITH_CLIENT_ID",
        "name": "Multibuzz Attribution",
        "handle": "multibuzz-attribution",
        "application_url": "https://REPLACE_WITH_HOST/shopify/app",
        "embedded": True,
        "access_scopes": {
            "scopes": "read_orders,read_customers,write_pixels,read_customer_events",
            "use_legacy_install_flow": False,
        },
        "auth": {"redirect_urls": ["https://REPLACE_WITH_HOST/shopify/auth/callback"]},
        "webhooks": {
            "api_version": "2026-10",
            "subscriptions": [
                {"topics": ["app/uninstalled"], "uri": HOOKS},
                {"compliance_topics": ["customers/data_request", "customers/redact", "shop/redact"], "uri": HOOKS},
            ],
        },
        "pos": {"embedded": False},
    }


def test_SHP6_SHP97_app_toml_speaks_the_gateways_api_version_and_no_obsolete_keys() -> None:
    """One constant names the Admin API version: the app configuration's webhooks use the version the gateway's
    Admin calls use, it is within Shopify's 12 months of support on the day of writing (2026-12-07), and the key
    the current Shopify CLI removes on deploy (`[build] include_config_on_deploy`) is not there."""
    config = load(APP_TOML)
    assert config["webhooks"]["api_version"] == API_VERSION == Settings().shopify_api_version
    assert version_status(API_VERSION, date(2026, 12, 7)).supported
    assert "build" not in config


def test_app_toml_never_requests_script_tags() -> None:
    """SHP-97: `write_script_tags` is never requested; the legacy install flow is off; compliance topics present."""
    config = load(APP_TOML)
    scopes = config["access_scopes"]["scopes"].split(",")
    assert "write_script_tags" not in scopes and "read_script_tags" not in scopes
    assert "write_script_tags" not in APP_TOML.read_text(encoding="utf-8")
    assert config["access_scopes"]["use_legacy_install_flow"] is False
    compliance = [t for s in config["webhooks"]["subscriptions"] for t in s.get("compliance_topics", [])]
    assert sorted(compliance) == ["customers/data_request", "customers/redact", "shop/redact"]


def test_extension_toml_has_the_keys_of_shp_91() -> None:
    """SHP-91: strict web pixel extension, analytics-only privacy, three required single-line settings."""
    config = load(EXTENSION / "shopify.extension.toml")
    assert config["type"] == "web_pixel_extension"
    assert config["name"] == "multibuzz-pixel"
    assert config["runtime_context"] == "strict"
    assert config["customer_privacy"] == {
        "analytics": True,
        "marketing": False,
        "preferences": False,
        "sale_of_data": "disabled",
    }
    settings = config["settings"]
    assert settings["type"] == "object"
    assert set(settings["fields"]) == {"accountID", "ingestKey", "endpoint"}
    for name, field in settings["fields"].items():
        assert field["type"] == "single_line_text_field", name
        assert field["validations"] == [{"name": "min", "value": "1"}], name
        assert field["name"], name


def test_extension_files_of_shp_90() -> None:
    """SHP-90: the extension folder holds its toml, package.json (caret-pinned dependency) and src/index.js."""
    assert (EXTENSION / "src" / "index.js").is_file()
    package = json.loads((EXTENSION / "package.json").read_text(encoding="utf-8"))
    dependencies = package["dependencies"]
    assert list(dependencies) == ["@shopify/web-pixels-extension"]
    version = dependencies["@shopify/web-pixels-extension"]
    assert version.startswith("^") and all(part.isdigit() for part in version[1:].split("."))
    assert "devDependencies" not in package


MAKE = shutil.which("make")


@pytest.mark.skipif(MAKE is None, reason="make is not on PATH")
def test_make_shopify_config_fills_the_placeholders(tmp_path: Path) -> None:
    """SHP-97: `make shopify-config HOST=… CLIENT_ID=…` writes a valid copy with both placeholders replaced."""
    out = tmp_path / "shopify.app.local.toml"
    proc = subprocess.run(
        [str(MAKE), "-s", "-C", str(ROOT), "shopify-config", "HOST=mbuzz.example.com", "CLIENT_ID=0123abcd",
         f"SHOPIFY_CONFIG_OUT={out}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    assert "REPLACE_WITH" not in text
    config = load(out)
    assert config["client_id"] == "0123abcd"
    assert config["application_url"] == "https://mbuzz.example.com/shopify/app"
    assert config["auth"]["redirect_urls"] == ["https://mbuzz.example.com/shopify/auth/callback"]
    assert {s["uri"] for s in config["webhooks"]["subscriptions"]} == {"https://mbuzz.example.com/shopify/webhooks"}
    template = load(APP_TOML)
    assert {k: v for k, v in config.items() if k not in ("client_id", "application_url", "auth", "webhooks")} == {
        k: v for k, v in template.items() if k not in ("client_id", "application_url", "auth", "webhooks")
    }


@pytest.mark.skipif(MAKE is None, reason="make is not on PATH")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["CLIENT_ID=0123abcd"], "HOST is missing"),
        (["HOST=mbuzz.example.com"], "CLIENT_ID is missing"),
        (["HOST=https://mbuzz.example.com", "CLIENT_ID=0123abcd"], "HOST must be a host name"),
        (["HOST=mbuzz.example.com", "CLIENT_ID=a|b"], "CLIENT_ID must be"),
    ],
)
def test_make_shopify_config_fails_clearly(args: list[str], message: str, tmp_path: Path) -> None:
    """SHP-97: a missing or malformed HOST or CLIENT_ID stops with a message and writes nothing."""
    out = tmp_path / "shopify.app.local.toml"
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "CLIENT_ID")}
    proc = subprocess.run(
        [str(MAKE), "-s", "-C", str(ROOT), "shopify-config", *args, f"SHOPIFY_CONFIG_OUT={out}"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not out.exists()


def test_local_config_is_git_ignored() -> None:
    """SHP-97: the filled copy never gets committed."""
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "connectors/shopify/app/shopify.app.local.toml" in ignored
