"""Running the Web Pixel's Node.js tooling from pytest (shopify.md SHP-101, issue 14).

The pixel tests need Node.js >= 18 and the two npm packages pinned in tests/unit/connectors/shopify/package-lock.json
(Shopify's
`@shopify/web-pixels-extension`, whose runtime and types the pixel is tested against, and `typescript`). `make
test` installs them (`make node-install`). Outside CI a machine without Node.js or without those packages skips
these tests with a message saying what to run; in CI (CI set) the same situation fails, so they can never be skipped
silently where it matters. Every subprocess has a generous timeout: nothing here depends on machine speed (the
harness runs on a manual clock).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "pixel_harness.mjs"
GENERATOR = HERE / "pixel_events.mjs"
TSCONFIG = HERE / "tsconfig.json"
NODE_MODULES = HERE / "node_modules"
PACKAGE = "@shopify/web-pixels-extension"
PACKAGE_DIR = NODE_MODULES / "@shopify" / "web-pixels-extension"
TSC = NODE_MODULES / "typescript" / "bin" / "tsc"
PINNED: dict[str, str] = json.loads((HERE / "package.json").read_text(encoding="utf-8"))["devDependencies"]
TIMEOUT_S = 120


def _node_version() -> tuple[int, ...] | None:
    node = shutil.which("node")
    if node is None:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v(\d+)\.(\d+)", out.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


NODE_VERSION = _node_version()


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail("CI: " + message)
    pytest.skip(message)


def require_node() -> None:
    if NODE_VERSION is None or NODE_VERSION < (18,):
        _unavailable("Node.js >= 18 is not on PATH: the Web Pixel harness tests (shopify.md SHP-101) are skipped")


def installed_version(name: str) -> str | None:
    manifest = NODE_MODULES / name / "package.json"
    if not manifest.is_file():
        return None
    version: str = json.loads(manifest.read_text(encoding="utf-8"))["version"]
    return version


def require_packages() -> None:
    """Node.js plus the pinned npm packages; a stale install (another version) is a failure, never a skip."""
    require_node()
    missing = [name for name in PINNED if installed_version(name) is None]
    if missing:
        _unavailable(f"{', '.join(missing)} not installed in {NODE_MODULES}: run `make node-install` "
                     "(npm ci in tests/unit/connectors/shopify)")  # fmt: skip
    for name, version in PINNED.items():
        assert installed_version(name) == version, (
            f"{name} {installed_version(name)} is installed but package.json pins {version}: run `make node-install`"
        )


def node(*args: str, stdin: str | None = None, cwd: Path = HERE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", *args], input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd)


def run_harness(scenario: dict[str, Any]) -> dict[str, Any]:
    """One harness run (the extension on the package's real runtime needs --experimental-vm-modules)."""
    require_packages()
    proc = node("--experimental-vm-modules", str(HARNESS), stdin=json.dumps(scenario))
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def tsc(project: Path) -> subprocess.CompletedProcess[str]:
    """`tsc --noEmit -p project` with the pinned TypeScript (the project sets noEmit; the flag makes sure)."""
    require_packages()
    return node(str(TSC), "--noEmit", "--pretty", "false", "-p", str(project))


def generated_events() -> dict[str, Any]:
    """The sample payloads built from the package's own types by pixel_events.mjs."""
    require_packages()
    proc = node(str(GENERATOR))
    assert proc.returncode == 0, proc.stderr
    generated: dict[str, Any] = json.loads(proc.stdout)
    return generated


def same(actual: Any, expected: Any) -> bool:
    """JSON equality with numbers compared by value (125 == 125.0) and booleans never equal to numbers."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        return Decimal(str(actual)) == Decimal(str(expected))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(same(actual[k], expected[k]) for k in actual)
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(same(a, e) for a, e in zip(actual, expected, strict=True))
    return type(actual) is type(expected) and actual == expected
