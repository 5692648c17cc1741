"""Operator commands (``flask --app gateway mbuzz ...``)."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Flask

from tests.unit.core.attribution.test_vectors import CASES, vectors_path


def test_ATT66_check_vectors_passes_the_shared_file(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["mbuzz", "check-vectors", str(vectors_path())])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"{len(CASES)} of {len(CASES)} vectors match"


def test_ATT66_check_vectors_prints_each_mismatch_and_fails(app: Flask, tmp_path: Path) -> None:
    case = json.loads(json.dumps(next(c for c in CASES if c["id"] == "shapley-example-fit")))
    case["expected"][1]["revenue_credit"] = "20.28"
    good = next(c for c in CASES if c["model"] == "linear")
    path = tmp_path / "vectors.jsonl"
    path.write_text("\n".join([json.dumps(good), json.dumps(case), '{"id": "broken", "model": "linear"}']) + "\n")
    result = app.test_cli_runner().invoke(args=["mbuzz", "check-vectors", str(path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"{path}:2 shapley-example-fit: rows: expected")
    assert lines[1] == f"{path}:3 broken: cannot evaluate: KeyError: 'currency'"
    assert lines[-1] == "1 of 3 vectors match"


def test_SGTM19_create_an_sgtm_key(app: Flask) -> None:
    from tests.conftest import new_account

    keys = new_account(app)
    result = app.test_cli_runner().invoke(args=["mbuzz", "create-api-key", "--account", keys.account_id,
                                                "--environment", "live", "--kind", "sgtm"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token.startswith("pk_sgtm_live_") and len(token) == len("pk_sgtm_live_") + 32
    refused = app.test_client().post("/api/v1/events", json={"event_type": "x", "visitor_id": "v"},
                                     headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401


def test_bootstrap_demo_on_an_empty_database_prints_the_login_and_keys_and_seeds_the_dashboard(
        tmp_path: Path) -> None:
    """The `make run` path (issue 7 "Demo data"): an empty database gets the demo login, keys and traffic."""
    from core.storage.db import migrate
    from gateway import create_app
    from tests.conftest import make_settings

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    migrate(url)
    app = create_app(make_settings(url))
    runner = app.test_cli_runner()
    first = runner.invoke(args=["mbuzz", "bootstrap-demo", "--visitors", "60", "--days", "7"])
    assert first.exit_code == 0, first.output
    assert "dashboard login: demo@example.com" in first.output and "demo data seeded" in first.output
    password = next(line.split(": ", 1)[1] for line in first.output.splitlines()
                    if line.startswith("dashboard password:"))
    live_key = next(line.split(": ", 1)[1] for line in first.output.splitlines() if line.startswith("live API key:"))
    client = app.test_client()
    page = client.get("/dashboard/login")
    token = page.get_data(as_text=True).split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    login = client.post("/dashboard/login", data={"email": "demo@example.com", "password": password,
                                                  "csrf_token": token})
    assert login.status_code == 302
    conversions = client.get("/dashboard/conversions?date_range=30d").get_data(as_text=True)
    assert "purchase" in conversions and "No conversions" not in conversions
    listed = client.get("/api/v1/data/conversions?date_range=30d", headers={"Authorization": f"Bearer {live_key}"})
    assert listed.status_code == 200 and listed.get_json()["data"]
    again = runner.invoke(args=["mbuzz", "bootstrap-demo"])
    assert again.exit_code == 0 and "accounts exist already" in again.output


def test_DSH22_build_rollups_command(app: Flask) -> None:
    from tests.conftest import new_account
    from tests.integration.helpers import post

    keys = new_account(app, "Rollup CLI")
    resp = post(app.test_client(), keys, "/conversions", {"conversion_type": "purchase", "visitor_id": "v-cli"})
    assert resp.status_code == 201
    runner = app.test_cli_runner()
    first = runner.invoke(args=["mbuzz", "build-rollups", "--account", keys.account_id])
    assert first.exit_code == 0 and f"{keys.account_id} test: 1 day(s) recomputed" in first.output, first.output
    again = runner.invoke(args=["mbuzz", "build-rollups", "--account", keys.account_id])
    assert again.exit_code == 0 and "0 day(s) recomputed" in again.output  # up to date: nothing to do
