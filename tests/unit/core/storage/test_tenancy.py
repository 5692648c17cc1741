"""The tenant-scoping check (issue 18 item 3; quality.md Q-40; core/storage/tenancy.py).

tests/conftest.py runs :func:`unscoped` on every statement every test executes; these tests pin down what it
flags, on SQL as SQLAlchemy renders it for both databases and as the hand-written queries read.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from core.storage.models import Conversion, Session
from core.storage.tenancy import ALL_TENANTS, all_tenants, environment_tables, of_tenant, tenant_tables, unscoped
from core.tenant import Tenant

TENANT = Tenant("acc_1", "test")


def _sql(statement: sa.Executable, dialect: sa.Dialect) -> str:
    return str(statement.compile(dialect=dialect))


def test_Q40_a_query_built_with_its_tenant_passes_on_both_databases() -> None:
    query = sa.select(Session.id).where(of_tenant(Session, TENANT), Session.visitor_id == "v")
    for dialect in (postgresql.dialect(), sqlite.dialect()):
        assert unscoped(_sql(query, dialect)) == []


def test_Q40_a_forgotten_account_clause_is_flagged() -> None:
    by_id = sa.select(Conversion).where(Conversion.id == "conv_1")
    by_environment = sa.select(Session.id).where(Session.environment == "test")
    update = sa.update(Conversion).where(Conversion.id == "conv_1").values(status="refunded")
    delete = sa.delete(Session).where(Session.visitor_id == "v")
    for statement, table in ((by_id, "conversions"), (by_environment, "sessions"), (update, "conversions"),
                             (delete, "sessions")):
        for dialect in (postgresql.dialect(), sqlite.dialect()):
            assert unscoped(_sql(statement, dialect)) == [table]


def test_Q40_a_primary_key_lookup_names_the_account() -> None:
    by_key = sa.select(Conversion).where(Conversion.account_id == "acc_1", Conversion.id == "conv_1")
    assert unscoped(_sql(by_key, postgresql.dialect())) == []


def test_Q40_hand_written_sql_and_joins_are_read_too() -> None:
    scoped = ("UPDATE sessions AS s SET last_activity_at = u.at FROM unnest(:ids) AS u(id, at) "
              "WHERE s.account_id = :account AND s.environment = :environment AND s.id = u.id")
    assert unscoped(scoped) == []
    joined = "SELECT c.id FROM conversions c JOIN attribution_credits a ON a.conversion_id = c.id WHERE c.id = :id"
    assert unscoped(joined) == ["attribution_credits", "conversions"]
    assert unscoped("INSERT INTO events (account_id, environment, id) VALUES (:a, :e, :i)") == []
    assert unscoped("COPY attribution_credits (account_id) FROM STDIN (FORMAT BINARY)") == []


def test_Q40_the_tables_it_knows_and_the_cross_tenant_mark() -> None:
    assert {"sessions", "events", "conversions", "attribution_credits", "visitors"} <= environment_tables()
    assert {"api_keys", "dashboard_users", "account_settings"} <= tenant_tables()
    assert "accounts" not in tenant_tables()
    # the connectors' own tables (declared next to their code, issue 18 item 2) are checked alike
    assert {"shopify_connect_codes", "shopify_checkout_links", "shopify_customers"} <= tenant_tables()
    assert all_tenants("the Shopify sweep reads every shop's due retries") == {
        ALL_TENANTS: "the Shopify sweep reads every shop's due retries"}
