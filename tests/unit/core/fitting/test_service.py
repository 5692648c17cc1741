"""Fit storage and staleness (attribution.md ATT-30, ATT-31)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask

from core.attribution import AttributionSettings, ModelFit
from core.fitting.service import CurrentFit, current_fits, fit_snapshot, is_stale, run_fit, stale_tenants
from core.settings import save_settings
from core.tenant import Tenant
from tests.conftest import new_account
from tests.unit.core.fitting.test_corpus import Data

NOW = datetime.now(UTC).replace(microsecond=0)
SNAPSHOT = fit_snapshot(AttributionSettings(), 90)


def _fits(age: timedelta, status: str = "ready", **settings: object) -> dict[str, CurrentFit]:
    snapshot = {**SNAPSHOT, **settings}
    return {m: CurrentFit(f"fit_{m}", NOW - age, status, snapshot, ModelFit(status))
            for m in ("markov_chain", "shapley_value")}


def test_ATT31_staleness_rules() -> None:
    assert is_stale({}, SNAPSHOT, NOW)  # none yet
    assert not is_stale(_fits(timedelta(hours=23)), SNAPSHOT, NOW)
    assert is_stale(_fits(timedelta(hours=24, seconds=1)), SNAPSHOT, NOW)  # older than 24 h
    assert is_stale(_fits(timedelta(minutes=1), lookback_days=7), SNAPSHOT, NOW)  # other settings
    assert not is_stale(_fits(timedelta(minutes=59), "insufficient_data"), SNAPSHOT, NOW)
    assert is_stale(_fits(timedelta(minutes=61), "insufficient_data"), SNAPSHOT, NOW)  # retried after 1 h
    only_one = _fits(timedelta(minutes=1))
    del only_one["shapley_value"]
    assert is_stale(only_one, SNAPSHOT, NOW)


def test_ATT31_maintenance_finds_recent_tenants_with_stale_fits(app: Flask) -> None:
    sessions = app.config["MBUZZ"].sessions
    tenants = {name: Tenant(new_account(app).account_id, "test") for name in ("stale", "fresh", "quiet", "off")}
    with sessions.begin() as db:
        for name, tenant in tenants.items():
            d = Data(db, tenant)
            v = d.visitor(name)
            d.session(v, "email", NOW - timedelta(days=11))
            d.conversion(v, NOW - timedelta(days=10 if name == "quiet" else 2))
        save_settings(db, tenants["off"].account_id, {"enabled_models": ["linear"]})
    with sessions.begin() as db:
        run_fit(db, tenants["fresh"], NOW)
        assert set(current_fits(db, tenants["fresh"])) == {"markov_chain", "shapley_value"}
    with sessions() as db:
        found = set(stale_tenants(db, NOW))
    assert tenants["stale"] in found
    assert not found & {tenants["fresh"], tenants["quiet"], tenants["off"]}
