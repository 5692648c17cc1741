"""Fixtures of the browser tests (dashboard.md "How it is tested"): one live gunicorn per test module, in inline
mode (no Redis) against the worker's own test database, and one headless Debian Chromium driven by Playwright.

Chromium missing is a failure, not a skip: `make test` installs it with `.ci/browser`. Nothing here runs
`playwright install`; the browser is always /usr/bin/chromium.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, sync_playwright

from core import accounts
from tests.integration.processes import ROOT, env_for, gunicorn

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"


@dataclass(frozen=True)
class Login:
    account_id: str
    email: str
    password: str


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} is missing: the dashboard browser tests need Debian's chromium. Install it with "
                    "`bash .ci/browser` (as root; `make test` does this), never with `playwright install`.",
                    pytrace=False)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def live_url(database_url: str, worker_id: str) -> Iterator[str]:
    """A real gunicorn on a free port; REDIS_URL empty = inline processing (API-64), so nothing is shared with
    the other xdist worker but PostgreSQL, where this worker has its own database."""
    logs = ARTIFACTS / "e2e"
    logs.mkdir(parents=True, exist_ok=True)
    env = env_for(database_url, "", MBUZZ_PUBLIC_URL="http://127.0.0.1")
    with gunicorn(env, workers=2, log=logs / f"gunicorn-{worker_id}.log") as (url, _proc):
        yield url


@pytest.fixture()
def login(app: Flask) -> Login:
    """A fresh account with its dashboard owner, created in the database the live server reads."""
    email = f"owner-{uuid.uuid4().hex[:10]}@e2e.example"
    password = secrets.token_urlsafe(12)
    with app.config["MBUZZ"].sessions.begin() as db:
        account, _test_key, _live_key = accounts.create_account(db, f"E2E Shop {email[6:12]}", email, password)
    return Login(account.id, email, password)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
