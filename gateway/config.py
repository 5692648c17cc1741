"""The app's settings: every package's part in one object, read once per process (issue 18 item 5).

The core's part (`core.config.CoreSettings`) and each connector's (`connectors/*/config.py`) declare their own
fields and how the environment sets them; this class is all of them together, so the web app, the worker and the
CLI read the environment once (`Settings.from_env`) and pass the one object on. Code in the core or a connector
types it by its own part.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.sgtm.config import SgtmSettings
from connectors.shopify.config import ShopifySettings
from core.config import CoreSettings

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings(CoreSettings, ShopifySettings, SgtmSettings):
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Every part's fields from the environment (`os.environ` unless given); `overrides` win."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for part in PARTS:  # every part reads its own names
            values.update(part.env_values(source))
        return cls(**{**values, **overrides})


PARTS: tuple[type[CoreSettings] | type[ShopifySettings] | type[SgtmSettings], ...] = Settings.__bases__
