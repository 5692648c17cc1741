"""The models are the migrated schema (issue 18 items 2 and 7): the tables the core and the connectors declare —
wherever they are declared — are exactly what the one Alembic history builds, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.storage.db import make_engine
from core.storage.models import every_table


def test_the_declared_tables_are_the_migrated_ones(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            postgres = conn.dialect.name == "postgresql"  # SQLite reports its own type names
            context = MigrationContext.configure(conn, opts={"compare_type": postgres})
            differences = compare_metadata(context, every_table())
    finally:
        engine.dispose()
    assert differences == []

