"""The Shopify connector's process settings (shopify.md SHP-6, SHP-28, SHP-33, SHP-71), owned here (issue 18 item 2).

Read once per process with the rest (`gateway.config.Settings.from_env`, which is all the parts in one object);
the connector's code reaches them through `shopify_settings(services)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.shopify.api_version import API_VERSION
from core.config import env_text
from edge.services import AppServices

__all__ = ["ShopifySettings", "shopify_settings"]


@dataclass(frozen=True)
class ShopifySettings:
    shopify_api_secret: str | None = None  # SHOPIFY_API_SECRET: webhooks are verified with it (SHP-6)
    shopify_api_secret_previous: str | None = None  # accepted too while the secret is rotated (SHP-33)
    shopify_api_key: str | None = None  # SHOPIFY_API_KEY: the app's client id (SHP-6)
    shopify_api_version: str = API_VERSION  # SHP-6
    shopify_scopes: str = "read_orders,read_customers,write_pixels,read_customer_events"
    shopify_auto_connect_account: str | None = None  # MBUZZ_SHOPIFY_AUTO_CONNECT_ACCOUNT: SHP-28 (c)
    # Where outbound Shopify calls go: `https://{shop}` in production; tests point it at a local fake Shopify
    # server (`{base}/{shop}`), so nothing reaches the network.
    shopify_outbound_base: str | None = None
    ratelimit_pixel_key: str = "3000 per minute"  # MBUZZ_RATE_PIXEL_KEY: SHP-71
    ratelimit_pixel_ip: str = "120 per minute"  # MBUZZ_RATE_PIXEL_IP

    @classmethod
    def env_values(cls, env: Mapping[str, str]) -> dict[str, Any]:
        return {
            "shopify_api_secret": env_text(env, "SHOPIFY_API_SECRET"),
            "shopify_api_secret_previous": env_text(env, "SHOPIFY_API_SECRET_PREVIOUS"),
            "shopify_api_key": env_text(env, "SHOPIFY_API_KEY"),
            "shopify_api_version": env_text(env, "SHOPIFY_API_VERSION", API_VERSION),
            "shopify_scopes": env_text(env, "SHOPIFY_SCOPES", cls.shopify_scopes),
            "shopify_auto_connect_account": env_text(env, "MBUZZ_SHOPIFY_AUTO_CONNECT_ACCOUNT"),
            "shopify_outbound_base": env_text(env, "MBUZZ_SHOPIFY_OUTBOUND_BASE"),
            "ratelimit_pixel_key": env_text(env, "MBUZZ_RATE_PIXEL_KEY", cls.ratelimit_pixel_key),
            "ratelimit_pixel_ip": env_text(env, "MBUZZ_RATE_PIXEL_IP", cls.ratelimit_pixel_ip),
        }


def shopify_settings(services: AppServices) -> ShopifySettings:
    """The app's settings as this connector declares them (the app's one settings object includes this part)."""
    settings = services.settings
    if not isinstance(settings, ShopifySettings):
        raise TypeError("the app's settings do not include the Shopify connector's (gateway.config.Settings)")
    return settings
