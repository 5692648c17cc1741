"""Settings changes and recalculation reattribute in batches (attribution.md ATT-1, ATT-2, ATT-48, ATT-51, ATT-54).

Inline mode (no Redis): the batches run right after the settings commit. Runs on PostgreSQL and SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from core.reattribution import service
from core.reattribution.service import apply_settings_change, create_batch, recalculate_scope
from core.reattribution.tasks import run_inline
from core.settings import SettingsError, change_settings, load_config
from core.storage import models as m
from core.tenant import Tenant
from tests.conftest import AccountKeys, new_account
from tests.integration.helpers import post

NOW = datetime.now(UTC).replace(microsecond=0)


def _at(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat().replace("+00:00", "Z")


def _visit(client: FlaskClient, keys: AccountKeys, visitor: str, source: str, days_ago: float) -> None:
    resp = post(client, keys, "/sessions", {"visitor_id": visitor, "session_id": f"{visitor}-{days_ago}",
                                            "url": f"https://shop.example/?utm_source={source}&utm_medium={source}",
                                            "started_at": _at(days_ago)})
    assert resp.status_code == 202, resp.get_json()


def _convert(client: FlaskClient, keys: AccountKeys, visitor: str, days_ago: float) -> str:
    resp = post(client, keys, "/conversions", {"conversion_type": "purchase", "visitor_id": visitor,
                                               "revenue": "30.00", "timestamp": _at(days_ago)})
    assert resp.status_code == 201, resp.get_json()
    return str(resp.get_json()["id"])


def _rows(app: Flask, conversion_id: str, model: str = "linear") -> list[tuple[Any, ...]]:
    with app.config["MBUZZ"].sessions() as db:
        return [tuple(r) for r in db.execute(
            sa.select(m.AttributionCredit.channel, m.AttributionCredit.credit, m.AttributionCredit.revenue_credit_minor,
                      m.AttributionCredit.model_config_version)
            .where(m.AttributionCredit.conversion_id == conversion_id, m.AttributionCredit.model == model)
            .order_by(m.AttributionCredit.touchpoint_index))]


def _journeys(client: FlaskClient, keys: AccountKeys) -> dict[str, str]:
    _visit(client, keys, "a", "newsletter", 20)
    _visit(client, keys, "a", "facebook", 3)
    _visit(client, keys, "b", "partner", 10)
    _visit(client, keys, "c", "tiktok", 40)
    return {"a": _convert(client, keys, "a", 2), "b": _convert(client, keys, "b", 1),
            "c": _convert(client, keys, "c", 1)}


def _change(app: Flask, keys: AccountKeys, **changes: Any) -> list[m.ReattributionBatch]:
    sessions = app.config["MBUZZ"].sessions
    with sessions.begin() as db:
        batches = apply_settings_change(db, keys.account_id, changes)
        targets = [(Tenant(b.account_id, b.environment), b.id) for b in batches]
    for tenant, batch_id in targets:
        run_inline(sessions, tenant, batch_id)
    with sessions() as db:
        return list(db.scalars(sa.select(m.ReattributionBatch).where(
            m.ReattributionBatch.id.in_([b for _, b in targets])).order_by(m.ReattributionBatch.environment)))


def test_ATT51_lookback_change_reattributes_every_conversion(app: Flask, client: FlaskClient,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """ATT-67 scenario 13: lookback 30 → 7, then 7 → 60 (an unattributed conversion gains its journey)."""
    keys = new_account(app)
    ids = _journeys(client, keys)
    assert len(_rows(app, ids["a"])) == 2
    assert _rows(app, ids["c"]) == []  # 40 days before: outside 30
    monkeypatch.setattr(service, "CHUNK", 2)
    progress: list[tuple[int, int | None]] = []
    real = service._reattribute_one

    def watched(*args: Any) -> None:
        with app.config["MBUZZ"].sessions() as db:
            batch = db.scalars(sa.select(m.ReattributionBatch).where(
                m.ReattributionBatch.account_id == keys.account_id, m.ReattributionBatch.environment == "test",
                m.ReattributionBatch.status == "running")).first()
            if batch is not None:
                progress.append((batch.processed, batch.total))
        real(*args)

    monkeypatch.setattr(service, "_reattribute_one", watched)
    live, test = _change(app, keys, lookback_days=7)
    # a has stale rows; b and c are included because a journey setting changed (c stays unattributed)
    assert (test.status, test.processed, test.total, test.failed_count) == ("completed", 3, 3, 0)
    assert (live.status, live.processed, live.total) == ("completed", 0, 0)  # nothing in live
    assert progress == [(0, 3), (0, 3), (2, 3)]  # counted when claimed; chunks of two: 0/3, 2/3, then 3/3
    a_rows = _rows(app, ids["a"])
    assert [(r[1], r[2], r[3]) for r in a_rows] == [(1, 3000, 2)]  # only the session 3 days before is left
    assert _rows(app, ids["b"]) == []  # 10 days before: now unattributed
    with app.config["MBUZZ"].sessions() as db:
        assert load_config(db, keys.account_id).config_versions["linear"] == 2
        conv_b = db.get(m.Conversion, (keys.account_id, ids["b"]))
        assert conv_b is not None and conv_b.sessions_analyzed == 0 and conv_b.lookback_days_used == 7

    progress.clear()
    _, test = _change(app, keys, lookback_days=60)  # the unattributed ones gain their journeys
    assert (test.status, test.processed, test.total) == ("completed", 3, 3)
    assert progress == [(0, 3), (0, 3), (2, 3)]
    assert len(_rows(app, ids["a"])) == 2 and len(_rows(app, ids["b"])) == 1 and len(_rows(app, ids["c"])) == 1
    assert {r[3] for i in ids.values() for r in _rows(app, i)} == {3}


def test_ATT54_a_failing_conversion_keeps_its_rows_and_is_counted(app: Flask, client: FlaskClient,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """ATT-67 scenario 9: the credit insert fails for one conversion mid-batch."""
    keys = new_account(app)
    ids = _journeys(client, keys)
    before = _rows(app, ids["a"])
    real = service.attribute_conversion

    def failing(ctx: Any, conv: m.Conversion) -> Any:
        result = real(ctx, conv)  # old rows deleted, new rows inserted ...
        if conv.id == ids["a"]:
            raise RuntimeError("credit insert failed")  # ... and the transaction rolls back
        return result

    monkeypatch.setattr(service, "attribute_conversion", failing)
    _, test = _change(app, keys, time_decay_half_life_days=3)
    assert (test.status, test.processed, test.failed_count, test.total) == ("completed", 1, 1, 2)
    assert _rows(app, ids["a"]) == before  # intact: version 1, the old credits
    assert {r[3] for r in _rows(app, ids["b"], "time_decay")} == {2}


def test_ATT48_recalculating_twice_changes_nothing(app: Flask, client: FlaskClient) -> None:
    keys = new_account(app)
    ids = _journeys(client, keys)
    tenant = Tenant(keys.account_id, "test")
    sessions = app.config["MBUZZ"].sessions

    def everything() -> list[tuple[Any, ...]]:
        with sessions() as db:
            return [tuple(r) for r in db.execute(sa.select(
                m.AttributionCredit.conversion_id, m.AttributionCredit.model, m.AttributionCredit.session_id,
                m.AttributionCredit.credit, m.AttributionCredit.revenue_credit_minor, m.AttributionCredit.fit_id,
                m.AttributionCredit.fallback_reason).where(m.AttributionCredit.account_id == keys.account_id)
                .order_by(m.AttributionCredit.conversion_id, m.AttributionCredit.model,
                          m.AttributionCredit.touchpoint_index))]

    snapshots = []
    for _ in range(2):
        with sessions.begin() as db:
            batch_id = create_batch(db, tenant, "recalculate", ["markov_chain", "shapley_value"],
                                    recalculate_scope()).id
        run_inline(sessions, tenant, batch_id)
        with sessions() as db:
            batch = db.get(m.ReattributionBatch, (keys.account_id, batch_id))
            assert batch is not None and (batch.status, batch.processed) == ("completed", len(ids))
        snapshots.append(everything())
    assert snapshots[0] == snapshots[1]
    # The first conversion was attributed before any fit existed; recalculating uses the current fit.
    assert {r[5] for r in snapshots[0] if r[1] == "markov_chain"} != {None}


def test_ATT1_invalid_settings_name_the_field_and_change_nothing(app: Flask) -> None:
    keys = new_account(app)
    sessions = app.config["MBUZZ"].sessions
    cases = {
        "lookback_days": (0, "lookback_days must be an integer from 1 to 365, got 0"),
        "markov_order": (1.5, "markov_order must be an integer, got 1.5"),
        "u_shaped_first_share": ("0.7", "u_shaped_first_share + u_shaped_last_share must be at most 1"),
        "currency": ("XYZ", "currency must be an active ISO 4217 code, got 'XYZ'"),
        "timezone": ("Mars/Base", "timezone must be an IANA time zone name, got 'Mars/Base'"),
        "fit_window_days": (400, "fit_window_days must be an integer from 7 to 365, got 400"),
        "enabled_models": ([], "enabled_models must not be empty"),
    }
    for key, (value, message) in cases.items():
        with sessions.begin() as db, pytest.raises(SettingsError) as caught:
            change_settings(db, keys.account_id, {key: value})
        assert str(caught.value) == message
    with sessions.begin() as db, pytest.raises(SettingsError, match="unknown setting lookback; allowed: "):
        change_settings(db, keys.account_id, {"lookback": 7})
    with sessions() as db:
        assert db.get(m.AccountSettings, keys.account_id) is None or \
            db.get(m.AccountSettings, keys.account_id).settings == {}  # type: ignore[union-attr]


def test_ATT2_a_change_moves_only_the_models_it_affects(app: Flask) -> None:
    keys = new_account(app)
    sessions = app.config["MBUZZ"].sessions
    with sessions.begin() as db:
        assert apply_settings_change(db, keys.account_id, {"currency": "eur", "timezone": "Europe/Paris"}) == []
        change = change_settings(db, keys.account_id, {"time_decay_half_life_days": 3})
        assert change.models == ("time_decay",) and not change.journey_changed
        assert change_settings(db, keys.account_id, {"time_decay_half_life_days": 3}).models == ()  # unchanged
        change_settings(db, keys.account_id, {"enabled_models": ["linear", "first_touch"]})  # disabling: nothing
        enabled = change_settings(db, keys.account_id, {"enabled_models": ["linear", "first_touch", "u_shaped"]})
        assert enabled.models == ("u_shaped",) and enabled.newly_enabled == ("u_shaped",)
        config = load_config(db, keys.account_id)
    assert config.currency == "EUR"
    assert config.config_versions == {"first_touch": 1, "last_touch": 1, "linear": 1, "time_decay": 2,
                                      "u_shaped": 2, "participation": 1, "markov_chain": 1, "shapley_value": 1}


def test_ATT51_settings_cli_reattributes_and_lists_batches(app: Flask, client: FlaskClient) -> None:
    keys = new_account(app)
    ids = _journeys(client, keys)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["mbuzz", "settings", keys.account_id, "lookback_days=7"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "settings saved" and len(lines) == 3 and all(" completed" in x for x in lines[1:])
    assert _rows(app, ids["b"]) == []
    bad = runner.invoke(args=["mbuzz", "settings", keys.account_id, "lookback_days=0"])
    assert bad.exit_code == 2 and "lookback_days must be an integer from 1 to 365, got 0" in bad.output
    listed = runner.invoke(args=["mbuzz", "batches", keys.account_id, "--environment", "test"])
    assert listed.exit_code == 0 and listed.output.strip() == "0 active batch(es)"
