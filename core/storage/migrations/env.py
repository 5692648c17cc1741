"""Alembic environment: the URL comes from the Config built by core.storage.db.alembic_config."""

from __future__ import annotations

from alembic import context

from core.storage.db import make_engine
from core.storage.models import every_table
from core.storage.tenancy import all_tenants

config = context.config


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url
    engine = make_engine(url)
    with engine.connect() as connection:
        connection.execution_options(**all_tenants("migrations rewrite whole tables"))
        context.configure(connection=connection, target_metadata=every_table(), render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
