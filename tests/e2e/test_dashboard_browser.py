"""The dashboard in a real browser against a live server (dashboard.md "How it is tested", DSH-2, DSH-5,
DSH-10..DSH-18, DSH-16's "revoke is immediate", DSH-20's filters).

Headless Debian Chromium, driven by Playwright, talks to a real gunicorn (inline mode) on the worker's own
test database; data goes in through the public HTTP API with a key created on the API keys page, exactly as
the getting-started guide tells a new user to do. Every page visited is saved as a full-page screenshot under
test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Response, expect

from tests.e2e.conftest import Login

pytestmark = [pytest.mark.postgres]

UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/124.0.0.0 Safari/537.36")
HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_VALUE = '<img src=x onerror="alert(2)">'


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Visit:
    """One browser tab on the dashboard: records dialogs and script errors, saves a screenshot of each page."""

    def __init__(self, browser: Browser, base: str, folder: Path) -> None:
        self.base, self.folder = base, folder
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=base)
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", self._console)
        self.shots: list[str] = []

    def _console(self, msg: ConsoleMessage) -> None:
        # HTTP statuses are asserted where they matter (the failed login answers 401 on purpose; no favicon)
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.errors.append(f"{msg.text} ({msg.location.get('url')})")

    def goto(self, path: str) -> Response:
        response = self.page.goto(path)
        assert response is not None and response.ok, f"GET {path}: {response.status if response else 'no answer'}"
        return response

    def shot(self, name: str) -> None:
        path = self.folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path.name)

    def rows(self, testid: str) -> list[list[str]]:
        """The cells' visible text of a table's body, row by row."""
        return self.page.locator(f'[data-testid="{testid}"] tbody tr').evaluate_all(
            "rows => rows.map(r => Array.from(r.cells, c => c.innerText.trim()))")

    def headers(self, testid: str) -> list[str]:
        return self.page.locator(f'[data-testid="{testid}"] thead th').evaluate_all(
            "cells => cells.map(c => c.innerText.trim())")

    def apply_filters(self, **selects: str) -> None:
        """DSH-20: choose values in the page's filter form and press Apply (a GET: the choice lands in the URL)."""
        form = self.page.locator('form[aria-label="Filters"]')
        for name, value in selects.items():
            form.locator(f'select[name="{name}"]').select_option(value)
        with self.page.expect_navigation():
            form.get_by_role("button", name="Apply").click()
        for name, value in selects.items():
            assert f"{name}={value}" in self.page.url, self.page.url

    def log_in(self, login: Login, wrong_first: bool = False) -> None:
        self.goto("/dashboard/")  # not logged in: sent to the login page, remembering where we were going
        expect(self.page).to_have_url(re.compile(r"/dashboard/login\?next="))
        if wrong_first:
            self.shot("01-login")
            self._submit_login(login.email, login.password + "-wrong")
            expect(self.page.get_by_role("alert")).to_have_text("Wrong e-mail or password.")
            expect(self.page).to_have_url(re.compile(r"/dashboard/login"))
            self.shot("02-login-error")
        self._submit_login(login.email, login.password)
        expect(self.page).to_have_url(f"{self.base}/dashboard/")
        expect(self.page.get_by_role("heading", level=1)).to_have_text("Overview")

    def _submit_login(self, email: str, password: str) -> None:
        self.page.get_by_label("E-mail").fill(email)
        self.page.get_by_label("Password").fill(password)
        with self.page.expect_navigation():
            self.page.get_by_role("button", name="Log in").click()

    def create_key(self, environment: str, name: str) -> str:
        """DSH-16: the full key is shown once, on the answer to the create form."""
        self.goto("/dashboard/keys")
        form = self.page.locator('form[aria-label="Create a key"]')
        form.get_by_label("Name").fill(name)
        form.get_by_label("Environment").select_option(environment)
        form.get_by_label("Kind").select_option("secret")
        with self.page.expect_navigation():
            form.get_by_role("button", name="Create key").click()
        key = self.page.get_by_test_id("new-key").inner_text().strip()
        assert re.fullmatch(rf"sk_{environment}_[0-9a-f]{{32}}", key), key
        return key

    def switch_environment(self, environment: str) -> None:
        """DSH-5: the test/live toggle in the navigation, remembered in the session."""
        with self.page.expect_navigation():
            self.page.locator(f'nav button[name="environment"][value="{environment}"]').click()
        expect(self.page.locator(f'nav button[name="environment"][value="{environment}"]')).to_have_attribute(
            "aria-pressed", "true")

    def close(self) -> None:
        self.context.close()


class Api:
    """The public HTTP API with one key, as an integrator's backend calls it."""

    def __init__(self, base: str, key: str) -> None:
        self.base = base + "/api/v1"
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(self.base + path, json=body, headers=self.headers, timeout=15)

    def session(self, visitor: str, session_id: str, url: str, started_at: datetime) -> dict[str, Any]:
        resp = self.post("/sessions", {"session": {"visitor_id": visitor, "session_id": session_id, "url": url,
                                                   "started_at": _ts(started_at), "user_agent": UA,
                                                   "ip": "203.0.113.7"}})
        assert resp.status_code == 202, resp.text
        return dict(resp.json())

    def events(self, *events: dict[str, Any]) -> dict[str, Any]:
        resp = self.post("/events", {"events": list(events)})
        assert resp.status_code == 202, resp.text
        return dict(resp.json())


def test_login_key_data_reports_model_switch_and_revoke(
    browser: Browser, live_url: str, login: Login, screenshots: Path
) -> None:
    tab = Visit(browser, live_url, screenshots)
    try:
        _journey(tab, live_url, login)
    finally:
        tab.close()


def _journey(tab: Visit, base: str, login: Login) -> None:
    page = tab.page

    # 1. login: a wrong password is refused with a message, the right one lands on Overview
    tab.log_in(login, wrong_first=True)

    # 2. a test key, created on the API keys page and read from it; it is never shown again
    key = tab.create_key("test", "e2e browser key")
    tab.shot("03-keys-created")
    tab.goto("/dashboard/keys")
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    assert key not in page.content()
    row = page.get_by_test_id("keys-table").locator("tbody tr", has_text=key[:12])
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(6)).to_have_text("active")

    # 3. one visitor, two visits from different channels, a few events, then a purchase
    api = Api(base, key)
    visitor = f"e2e-{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    first_at, second_at = now - timedelta(days=2), now - timedelta(hours=1)
    touch1 = api.session(visitor, "visit-1", "https://shop.example/?utm_source=google&utm_medium=cpc"
                                             "&utm_campaign=brand", first_at)
    touch2 = api.session(visitor, "visit-2", "https://shop.example/spring?utm_source=newsletter&utm_medium=email"
                                             "&utm_campaign=spring", second_at)
    sent = api.events(
        {"event_type": "page_view", "visitor_id": visitor, "session_id": "visit-1", "funnel": "checkout",
         "timestamp": _ts(first_at + timedelta(seconds=30)), "properties": {"url": "https://shop.example/"}},
        {"event_type": "add_to_cart", "visitor_id": visitor, "session_id": "visit-2", "funnel": "checkout",
         "timestamp": _ts(second_at + timedelta(minutes=1)), "properties": {"product_id": "SKU-123", "price": 60}},
        {"event_type": "checkout_completed", "visitor_id": visitor, "session_id": "visit-2", "funnel": "checkout",
         "timestamp": _ts(second_at + timedelta(minutes=2)), "properties": {"order_id": "order-1"}},
    )
    assert sent["accepted"] == 3 and sent["rejected"] == [], sent
    conv = api.post("/conversions", {"conversion": {"visitor_id": visitor, "conversion_type": "purchase",
                                                    "revenue": "120.00", "currency": "USD", "funnel": "checkout"}})
    assert conv.status_code == 201, conv.text
    answer = conv.json()
    models = answer["attribution"]["models"]
    # what the API says the journey is; the pages must show the same thing
    first_channel = [c["channel"] for c in models["first_touch"]]
    last_channel = [c["channel"] for c in models["last_touch"]]
    assert (touch1["channel"], touch2["channel"]) == ("paid_search", "email"), (touch1, touch2)
    assert first_channel == ["paid_search"] and last_channel == ["email"], models

    # the data is in the test environment: live stays empty (DSH-5), the toggle shows it
    tab.goto("/dashboard/")
    expect(page.get_by_test_id("total-conversions")).to_have_text("0")
    tab.switch_environment("test")
    expect(page).to_have_url(re.compile(r"/dashboard/"))

    # 4. Overview: one conversion, 120.00 USD of revenue; then first vs last touch from the Model selector
    expect(page.get_by_test_id("total-conversions")).to_have_text("1")
    expect(page.locator(".tile", has_text="revenue").first.locator(".v")).to_have_text("120.00 USD")
    tab.shot("04-overview")
    tab.apply_filters(model="first_touch")
    overview_first = {r[0]: r[1:] for r in tab.rows("overview-channels")}
    tab.shot("05-overview-first-touch")
    tab.apply_filters(model="last_touch")
    overview_last = {r[0]: r[1:] for r in tab.rows("overview-channels")}
    tab.shot("06-overview-last-touch")
    assert overview_first == {"paid_search": ["1.00", "120.00", "100.0%"]}, overview_first
    assert overview_last == {"email": ["1.00", "120.00", "100.0%"]}, overview_last

    # 5. Channels: first_touch with last_touch beside it, chosen in the filter form; then the other way round
    tab.goto("/dashboard/channels")
    tab.apply_filters(model="first_touch", compare="last_touch")
    heads = tab.headers("channels-table")
    assert heads[:8] == ["Channel", "first_touch conversions", "revenue (USD)", "share", "last_touch conversions",
                         "revenue", "share", "spread across models"], heads
    channels_first = {r[0]: r[1:7] for r in tab.rows("channels-table")}
    tab.shot("07-channels-first-vs-last")
    assert channels_first["paid_search"] == ["1.00", "120.00", "100.0%", "0.00", "0.00", "0.0%"], channels_first
    assert channels_first["email"] == ["0.00", "0.00", "0.0%", "1.00", "120.00", "100.0%"], channels_first
    tab.apply_filters(model="last_touch", compare="first_touch")
    channels_last = {r[0]: r[1:7] for r in tab.rows("channels-table")}
    tab.shot("08-channels-last-vs-first")
    assert channels_last["email"][:3] == ["1.00", "120.00", "100.0%"], channels_last
    assert channels_last["paid_search"][:3] == ["0.00", "0.00", "0.0%"], channels_last
    assert channels_first["paid_search"][2] != channels_last["paid_search"][2]

    # Conversions: the row, then its detail with the two-touch journey and every model's credit
    tab.goto("/dashboard/conversions")
    rows = tab.rows("conversions-table")
    assert len(rows) == 1, rows
    assert rows[0][1:6] == ["purchase", "120.00", "USD", visitor[:40], "api"], rows
    tab.shot("09-conversions")
    with page.expect_navigation():
        page.get_by_test_id("conversions-table").locator("tbody tr a").first.click()
    expect(page).to_have_url(re.compile(rf"/dashboard/conversions/{answer['id']}"))
    expect(page.get_by_role("heading", level=1)).to_have_text("purchase · 120.00 USD")
    heads = tab.headers("journey")
    journey = tab.rows("journey")
    tab.shot("10-conversion-detail")
    assert [r[2] for r in journey] == ["paid_search", "email"], journey
    assert "google / cpc / brand" in journey[0][3] and "newsletter / email / spring" in journey[1][3], journey
    col = {name: i for i, name in enumerate(heads)}
    for name in ("first_touch", "last_touch", "linear"):
        assert name in col, heads
    first_credit = [r[col["first_touch"]].split("\n") for r in journey]
    last_credit = [r[col["last_touch"]].split("\n") for r in journey]
    linear_credit = [r[col["linear"]].split("\n") for r in journey]
    assert first_credit[0] == ["1.0000", "120.00"] and not first_credit[1][0].startswith("1"), first_credit
    assert last_credit[1] == ["1.0000", "120.00"] and not last_credit[0][0].startswith("1"), last_credit
    assert linear_credit == [["0.5000", "60.00"], ["0.5000", "60.00"]], linear_credit
    # every model the page shows a column for credits the whole conversion once; participation (ATT-20, a
    # reach measure) gives each distinct channel a full 1
    for name in heads[6:]:
        expected = 2.0 if name == "participation" else 1.0
        total = sum(float(r[col[name]].split("\n")[0]) for r in journey if r[col[name]] != "–")
        assert abs(total - expected) < 0.001, (name, journey)

    # Events: the live feed lists the three event names, newest first
    tab.goto("/dashboard/events")
    names = [r[1] for r in tab.rows("events-table")]
    assert names == ["checkout_completed", "add_to_cart", "page_view"], names
    tab.shot("11-events")

    # Funnels, Integrations, Settings: they render for this account
    tab.goto("/dashboard/funnels")
    steps = {r[0]: r[1] for r in tab.rows("funnel-steps")}
    assert steps == {"page_view": "1", "add_to_cart": "1", "checkout_completed": "1"}, steps
    tab.shot("12-funnels")
    tab.goto("/dashboard/integrations")
    expect(page.get_by_role("heading", level=1)).to_have_text("Integrations")
    tab.shot("13-integrations")
    tab.goto("/dashboard/settings")
    expect(page.get_by_role("heading", level=1)).to_have_text("Settings")
    tab.shot("14-settings")

    # 6. revoke the key on the API keys page (confirm dialog accepted); the very next API call gets 401
    tab.goto("/dashboard/keys")
    row = page.get_by_test_id("keys-table").locator("tbody tr", has_text=key[:12])
    confirms: list[str] = []

    def accept(dialog: Dialog) -> None:
        confirms.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    with page.expect_navigation():
        row.get_by_role("button", name="Revoke").click()
    assert confirms and "Revoke this key?" in confirms[0], confirms
    expect(page.get_by_role("status")).to_contain_text(f"Key {key[:12]}… revoked.")
    expect(row.locator("td").nth(6)).to_have_text("revoked")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    tab.shot("15-keys-revoked")
    refused = api.post("/events", {"event_type": "page_view", "visitor_id": visitor})
    assert refused.status_code == 401, refused.text
    assert "revoked" in refused.json()["error"], refused.text

    assert tab.errors == [], tab.errors


def test_hostile_event_names_are_shown_escaped(
    browser: Browser, live_url: str, login: Login, screenshots: Path
) -> None:
    """An event name and property values holding markup are shown as text on the Events page, in the first
    render, in the live feed's 5-second refresh, and in the rejected list; no script runs, no dialog opens."""
    tab = Visit(browser, live_url, screenshots)
    page = tab.page
    try:
        tab.log_in(login)
        key = tab.create_key("live", "hostile input")
        api = Api(live_url, key)
        visitor = f"e2e-{uuid.uuid4().hex}"
        sent = api.events(
            {"event_type": HOSTILE_NAME, "visitor_id": visitor, "funnel": HOSTILE_NAME,
             "properties": {"note": HOSTILE_VALUE, "url": "https://shop.example/?q=<b>x</b>"}},
            {"event_type": HOSTILE_NAME},  # no visitor: rejected, listed with its name in "Rejected"
        )
        assert sent["accepted"] == 1 and len(sent["rejected"]) == 1, sent
        page.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
        page.clock.install()  # so the live feed's setInterval can be run on demand
        tab.goto("/dashboard/events")
        feed = page.get_by_test_id("events-table")
        expect(feed.locator("tbody tr").first.locator("td").nth(1)).to_have_text(HOSTILE_NAME)
        expect(feed.locator("tbody tr").first.locator("td").nth(2)).to_have_text(HOSTILE_NAME)
        # properties are shown as JSON text (Flask's tojson writes < and > as \u003c / \u003e): same value back
        shown = json.loads(feed.locator("tbody tr").first.locator("td").nth(5).inner_text())
        assert shown["note"] == HOSTILE_VALUE, shown
        rejected = page.get_by_test_id("rejections").locator("tbody tr").first
        expect(rejected).to_contain_text(HOSTILE_NAME)
        with page.expect_response(lambda r: "fragment=1" in r.url) as refreshed:
            page.clock.run_for(5_500)
        assert refreshed.value.ok
        expect(feed.locator("tbody tr").first.locator("td").nth(1)).to_have_text(HOSTILE_NAME)
        assert page.locator("#feed script, #feed img, #feed b, [data-testid=rejections] script").count() == 0
        tab.shot("16-events-hostile")
        tab.goto("/dashboard/funnels")
        expect(page.get_by_test_id("funnel-steps")).to_contain_text(HOSTILE_NAME)
        assert page.locator("[data-testid=funnel-steps] script, [data-testid=funnel-steps] img").count() == 0
        tab.shot("17-funnels-hostile")
        assert tab.dialogs == [], tab.dialogs
        assert tab.errors == [], tab.errors
    finally:
        tab.close()


def test_newcomer_walkthrough_on_the_demo_data(
    app: Any, browser: Browser, live_url: str, login: Login, screenshots: Path
) -> None:
    """The issue's "done when": the demo's channel report under each model, a conversion's journey, then a key,
    an event sent with it, and that event arriving in the Events live feed without a reload."""
    from core import demo
    from core.tenant import Tenant

    services = app.config["MBUZZ"]
    seeded = demo.seed_demo(services.log, Tenant(login.account_id, "live"), datetime.now(UTC), 150, 14,
                            sessions=services.sessions)
    assert seeded.created and seeded.purchases > 5
    tab = Visit(browser, live_url, screenshots)
    page = tab.page
    try:
        tab.log_in(login)  # the dashboard opens on live, where the demo is
        expect(page.get_by_test_id("total-conversions")).to_have_text(str(seeded.conversions))
        tab.shot("20-demo-overview")
        tab.goto("/dashboard/channels")
        models = page.locator('form[aria-label="Filters"] select[name="model"] option').evaluate_all(
            "options => options.map(o => o.value)")
        assert len(models) == 8, models
        reports = {}
        for model in models:
            tab.apply_filters(model=model)
            table = {r[0]: r[1] for r in tab.rows("channels-table")}
            credited = {channel for channel, conversions in table.items() if float(conversions) > 0}
            assert len(credited) >= 5, (model, table)  # many channels earn something under every model
            reports[model] = table
        tab.shot("21-demo-channels")
        assert reports["first_touch"] != reports["last_touch"]  # the models disagree on the demo
        assert float(reports["last_touch"].get("email", "0")) > float(reports["first_touch"].get("email", "0"))

        tab.goto("/dashboard/conversions?conversion_type=purchase")
        with page.expect_navigation():
            page.get_by_test_id("conversions-table").locator("tbody tr a").first.click()
        journey = tab.rows("journey")
        assert journey and all(row[2] for row in journey), journey  # touchpoints, each with its channel
        tab.shot("22-demo-conversion-detail")

        key = tab.create_key("live", "newcomer key")
        tab.goto("/dashboard/events")
        expect(page.get_by_test_id("events-table")).to_be_visible()
        name = f"newcomer_signal_{uuid.uuid4().hex[:6]}"
        Api(live_url, key).events({"event_type": name, "visitor_id": f"e2e-{uuid.uuid4().hex}"})
        # the live feed refreshes every 5 s: the event appears without a reload
        expect(page.get_by_test_id("events-table")).to_contain_text(name, timeout=15_000)
        tab.shot("23-demo-events-live")
        assert tab.errors == [], tab.errors
    finally:
        tab.close()
