"""The schema can be distributed by account (issue 18 item 9; docs/scale-out.md; core/storage/distribution.py).

Every table is placed (distributed by ``account_id``, reference, or coordinator-local); every distributed table's
primary and unique keys lead with ``account_id``; every foreign key between distributed tables includes it; no
reference or local table refers to a distributed one. Checked on the models and on the migrated database, and the
checker itself is shown to flag each breach.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date

import pytest
import sqlalchemy as sa
from alembic import command

from core.storage import distribution
from core.storage.db import alembic_config, make_engine
from core.storage.distribution import TableKeys, citus_statements, from_database, from_metadata, problems
from core.storage.models import every_table


def test_every_table_of_the_models_is_placed_and_keyed_by_its_account() -> None:
    assert problems(from_metadata(every_table())) == []


def test_the_migrated_database_holds_the_same_keys(database_url: str, is_postgres: bool) -> None:
    engine = make_engine(database_url)
    try:
        tables = from_database(engine)
    finally:
        engine.dispose()
    if not is_postgres:  # SQLite numbers only a lone INTEGER PRIMARY KEY (migration 0015): Citus is PostgreSQL
        dirty = next(t for t in tables if t.name == "report_dirty_days")
        assert dirty.primary_key == ["id"]
        dirty.primary_key = ["account_id", "id"]
    assert problems(tables) == []
    assert {t.name for t in tables} == set(every_table().tables)


def _tenant(name: str, primary_key: list[str], **more: object) -> TableKeys:
    return TableKeys(name, {"account_id", "id", "email", "visitor_id", "environment"}, primary_key, **more)  # type: ignore[arg-type]


@pytest.fixture
def extra_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distribution, "DISTRIBUTED", {**distribution.DISTRIBUTED, "t_new": "", "t_other": ""})
    monkeypatch.setattr(distribution, "REFERENCE", {**distribution.REFERENCE, "t_ref": ""})
    monkeypatch.setattr(distribution, "LOCAL", {**distribution.LOCAL, "t_local": ""})


def _only(found: list[str], table: str) -> list[str]:
    return [line for line in found if line.startswith(f"{table}:")]


@pytest.mark.usefixtures("extra_tables")
def test_a_tenant_table_keyed_without_its_account_first_is_flagged() -> None:
    tables = from_metadata(every_table())
    bad = [_tenant("t_new", ["id"], unique_keys=[["email"], ["environment", "account_id"]]),
           _tenant("t_other", ["id", "account_id"])]
    found = problems([*tables, *bad, _tenant("t_ref", ["id"]), _tenant("t_local", ["id"])])
    assert _only(found, "t_new") == [
        "t_new: primary key ['id'] does not lead with account_id",
        "t_new: unique key ['email'] does not lead with account_id",
        "t_new: unique key ['environment', 'account_id'] does not lead with account_id",
    ]
    assert _only(found, "t_other") == ["t_other: primary key ['id', 'account_id'] does not lead with account_id"]
    assert _only(found, "t_ref") == [] and _only(found, "t_local") == []  # global tables keep their own keys


@pytest.mark.usefixtures("extra_tables")
def test_a_foreign_key_between_tenant_tables_must_carry_the_account() -> None:
    tables = from_metadata(every_table())
    without = _tenant("t_new", ["account_id", "id"], foreign_keys=[(["visitor_id"], "visitors", ["id"])])
    with_it = _tenant("t_other", ["account_id", "id"],
                      foreign_keys=[(["account_id", "visitor_id"], "visitors", ["account_id", "id"]),
                                    (["account_id"], "accounts", ["id"])])  # distributed -> reference: allowed
    reference = _tenant("t_ref", ["id"], foreign_keys=[(["account_id", "id"], "sessions", ["account_id", "id"])])
    local = _tenant("t_local", ["id"], foreign_keys=[(["id"], "t_ref", ["id"])])
    found = problems([*tables, without, with_it, reference, local])
    assert found == [
        "t_new: foreign key ['visitor_id'] -> visitors without account_id",
        "t_ref: a reference table cannot refer to distributed sessions",
    ]


def test_an_unplaced_or_vanished_table_is_flagged() -> None:
    tables = [t for t in from_metadata(every_table()) if t.name != "events"]
    found = problems([*tables, _tenant("t_unknown", ["account_id", "id"])])
    assert found == ["t_unknown: not placed (core/storage/distribution.py: distributed, reference or local)",
                     "events: placed but not in the schema"]


def test_the_citus_statements_place_every_shared_and_tenant_table() -> None:
    statements = citus_statements()
    assert len(statements) == len(distribution.REFERENCE) + len(distribution.DISTRIBUTED)
    assert statements[0] == "SELECT create_reference_table('accounts');"
    assert "SELECT create_distributed_table('events', 'account_id', colocate_with => 'account_settings');" in statements


# ------------------------------------------------------------------------------------------------ migration 0015


@pytest.fixture
def scratch_postgres(database_url: str, is_postgres: bool) -> Iterator[str]:
    if not is_postgres:
        pytest.skip("migration 0015 changes PostgreSQL only")
    base = database_url.rsplit("/", 1)[0]
    name = f"mbuzz_0015_{uuid.uuid4().hex[:8]}"
    admin = make_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_0015_rekeys_report_dirty_days_and_keeps_every_mark(scratch_postgres: str) -> None:
    config = alembic_config(scratch_postgres)
    command.upgrade(config, "0014")
    engine = make_engine(scratch_postgres)
    marks = sa.table("report_dirty_days", sa.column("id"), sa.column("account_id"), sa.column("environment"),
                     sa.column("day"))
    try:
        with engine.begin() as conn:
            conn.execute(marks.insert(), [{"account_id": f"acc_{n % 3}", "environment": "test",
                                           "day": date(2026, 1, 1 + n)} for n in range(9)])
        before = _rows(engine)

        command.upgrade(config, "0015")
        assert sa.inspect(engine).get_pk_constraint("report_dirty_days")["constrained_columns"] == ["account_id", "id"]
        assert _rows(engine) == before
        with engine.begin() as conn:  # the serial still numbers new marks
            conn.execute(marks.insert(), [{"account_id": "acc_9", "environment": "live", "day": date(2026, 2, 1)}])
        assert _rows(engine)[-1][:2] == (10, "acc_9")

        command.downgrade(config, "0014")
        assert sa.inspect(engine).get_pk_constraint("report_dirty_days")["constrained_columns"] == ["id"]
        assert _rows(engine)[:9] == before
    finally:
        engine.dispose()


def _rows(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT id, account_id, environment, day FROM report_dirty_days ORDER BY id"))]
