"""Process settings (issue 18 item 5): one object, read once per process, each package declaring its own part."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from connectors.sgtm.config import SgtmSettings
from connectors.shopify.config import ShopifySettings
from core.config import CoreSettings
from gateway.config import Settings

ROOT = Path(__file__).resolve().parents[3]
# The one read left, named here so no other can appear unnoticed: the Redis key prefix is part of the key and queue
# names built when core.queue is imported (its templates, the RQ queue names jobs are enqueued under).
ENVIRONMENT_READERS = {"core/queue.py"}


def _reads_environment(tree: ast.AST) -> bool:
    return any(isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
               and isinstance(node.value, ast.Name) and node.value.id == "os" for node in ast.walk(tree))


def test_no_core_module_reads_the_environment_but_the_settings() -> None:
    readers = {str(path.relative_to(ROOT)) for path in (ROOT / "core").rglob("*.py")
               if path != ROOT / "core" / "config.py" and "migrations" not in path.parts
               and _reads_environment(ast.parse(path.read_text(encoding="utf-8")))}
    assert readers == ENVIRONMENT_READERS


def test_every_part_is_read_into_one_object() -> None:
    env = {"DATABASE_URL": "postgresql://db/x", "MBUZZ_DRAIN_BATCH": "500", "MBUZZ_KEY_CACHE_TTL_S": "2.5",
           "MBUZZ_REDIS_PREFIX": "tenant-a", "SHOPIFY_API_SECRET": "shh", "MBUZZ_RATE_SGTM": "10 per second",
           "MBUZZ_PUBLIC_URL": "https://mbuzz.example.com/"}
    settings = Settings.from_env(env)
    assert isinstance(settings, CoreSettings | ShopifySettings | SgtmSettings)
    assert (settings.database_url, settings.drain_batch, settings.key_cache_ttl_s, settings.redis_prefix) == (
        "postgresql://db/x", 500, 2.5, "tenant-a")
    assert (settings.shopify_api_secret, settings.ratelimit_sgtm) == ("shh", "10 per second")
    assert settings.public_url == "https://mbuzz.example.com"
    assert Settings.from_env(env, drain_batch=7).drain_batch == 7  # an override wins over the environment


def test_defaults_hold_without_the_environment() -> None:
    settings = Settings.from_env({})
    assert (settings.database_url, settings.redis_url, settings.drain_batch, settings.sweep_interval_s) == (
        "sqlite:///mbuzz.db", None, 2000, 5.0)
    assert settings.secret_key != Settings.from_env({}).secret_key  # a fresh random secret when none is set


@pytest.mark.parametrize(("name", "value", "message"), [
    ("MBUZZ_DRAIN_BATCH", "many", "MBUZZ_DRAIN_BATCH must be an integer between 1 and 100000, got 'many'"),
    ("MBUZZ_DRAIN_BATCH", "0", "MBUZZ_DRAIN_BATCH must be between 1 and 100000, got 0"),
    ("MBUZZ_SWEEP_INTERVAL_S", "soon", "MBUZZ_SWEEP_INTERVAL_S must be a number between 0.1 and 3600, got 'soon'"),
    ("PORT", "70000", "PORT must be between 1 and 65535, got 70000"),
])
def test_a_bad_value_stops_the_process_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value) == message


def test_a_large_bound_is_written_out() -> None:
    with pytest.raises(ValueError, match=r"^MBUZZ_DRAIN_LOCK_MS must be between 1000 and 3600000, got 5$"):
        Settings.from_env({"MBUZZ_DRAIN_LOCK_MS": "5"})


class _Recording(dict[str, str]):
    """An empty environment that notes every name asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def test_the_readme_names_every_setting() -> None:
    env = _Recording()
    Settings.from_env(env)
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Configuration (environment)"):readme.index("## Operator CLI")]
    assert len(env.asked) >= 30
    assert sorted(name for name in env.asked if f"`{name}`" not in table) == []
