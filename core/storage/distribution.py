"""Where each table goes when PostgreSQL grows past one machine with Citus (docs/scale-out.md; issue 18 item 9).

Three kinds of table (spec README, Storage: every tenant table is scoped by its account):

- **distributed** by ``account_id``, all colocated: a tenant's rows of every such table live on one node, so a
  query or transaction naming one account runs on one node with every SQL feature. Citus requires a distributed
  table's primary and unique keys to include the distribution column, and a foreign key between two distributed
  tables to include it on both sides; we hold them to the stricter rule that the keys *lead* with ``account_id``
  (also the order every tenant index already has, tenancy.py's ``of_tenant``).
- **reference**: small tables read from everywhere, replicated to every node, found by something else than an
  account before any tenant is known (a key's digest, a dashboard e-mail, a shop's domain).
- **local**: global ledgers of the Shopify connector kept on the coordinator only (plain PostgreSQL tables);
  their rows are found by shop, nonce or code, never joined with tenant tables in one statement.

``problems`` is the check; tests/unit/core/storage/test_distribution.py runs it on the models and on the migrated
database, so a tenant table whose keys do not lead with ``account_id``, a foreign key between tenant tables
without it, or a table nobody placed, fails the suite. Nothing here needs Citus to run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

DISTRIBUTION_COLUMN = "account_id"

# table -> why it is placed so. Every table of the schema is in exactly one of the three.
DISTRIBUTED: Mapping[str, str] = {
    name: "a tenant's rows; read and written by account (Q-40)"
    for name in (
        "account_settings", "visitors", "users", "visitor_links", "sessions", "session_bindings", "events",
        "conversions", "attribution_credits", "visitor_aliases", "conversion_adjustments", "attribution_fits",
        "reattribution_batches", "idempotency_keys", "rejections", "usage_counters", "shopify_orders",
        "shopify_checkout_links", "shopify_customers", "sgtm_order_links", "report_credit_days",
        "report_conversion_days", "report_dirty_days", "report_rollup_states",
    )
}
REFERENCE: Mapping[str, str] = {
    "accounts": "the tenants themselves: one row per account, read with most requests (suspension, plan)",
    "api_keys": "found by the key's digest before its account is known (API-13); unique digest across accounts",
    "dashboard_users": "found by e-mail at login before the account is known (DSH-1); unique e-mail",
    "installations": "one row per shop, found by its domain before any tenant (SHP-7); account None until connect",
}
LOCAL: Mapping[str, str] = {
    "shopify_webhook_deliveries": "the webhook ledger, keyed by shop (SHP-8); written before the shop's tenant is read",
    "shopify_oauth_states": "OAuth nonces of a shop being installed, before any account (SHP-22)",
    "shopify_connect_codes": "found by the code's hash before its account is known (SHP-28); a handful of rows",
    "shopify_data_requests": "customer data requests keyed by shop (SHP-87)",
    "shopify_settings_audit": "an installation's settings changes (SHP-82), keyed by installation",
}


@dataclass
class TableKeys:
    """What the rules need of one table, from the models or from a live database."""

    name: str
    columns: set[str]
    primary_key: list[str]
    unique_keys: list[list[str]] = field(default_factory=list)  # constraints and unique indexes
    foreign_keys: list[tuple[list[str], str, list[str]]] = field(default_factory=list)  # (cols, table, referred)


def from_metadata(metadata: sa.MetaData) -> list[TableKeys]:
    tables = []
    for table in metadata.tables.values():
        uniques = [[c.name for c in u.columns] for u in table.constraints if isinstance(u, sa.UniqueConstraint)]
        uniques += [[c.name for c in i.columns] for i in table.indexes if i.unique]
        fks = [([e.parent.name for e in fk.elements], fk.referred_table.name, [e.column.name for e in fk.elements])
               for fk in table.foreign_key_constraints]
        tables.append(TableKeys(table.name, {c.name for c in table.columns},
                                [c.name for c in table.primary_key.columns], uniques, fks))
    return tables


def from_database(bind: sa.Connection | sa.Engine, skip: Iterable[str] = ("alembic_version",)) -> list[TableKeys]:
    inspector = sa.inspect(bind)
    tables = []
    for name in inspector.get_table_names():
        if name in skip:
            continue
        uniques = [list(u["column_names"]) for u in inspector.get_unique_constraints(name)]
        uniques += [[str(c) for c in i["column_names"]] for i in inspector.get_indexes(name) if i["unique"]]
        fks = [(list(fk["constrained_columns"]), fk["referred_table"], list(fk["referred_columns"]))
               for fk in inspector.get_foreign_keys(name)]
        tables.append(TableKeys(name, {c["name"] for c in inspector.get_columns(name)},
                                list(inspector.get_pk_constraint(name)["constrained_columns"]), uniques, fks))
    return tables


def placement(table: str) -> str | None:
    for kind, tables in (("distributed", DISTRIBUTED), ("reference", REFERENCE), ("local", LOCAL)):
        if table in tables:
            return kind
    return None


def _tenant_problems(table: TableKeys) -> list[str]:
    found = []
    if DISTRIBUTION_COLUMN not in table.columns:
        found.append(f"{table.name}: distributed but has no {DISTRIBUTION_COLUMN}")
    if table.primary_key[:1] != [DISTRIBUTION_COLUMN]:
        found.append(f"{table.name}: primary key {table.primary_key} does not lead with {DISTRIBUTION_COLUMN}")
    for unique in table.unique_keys:
        if unique[:1] != [DISTRIBUTION_COLUMN]:
            found.append(f"{table.name}: unique key {unique} does not lead with {DISTRIBUTION_COLUMN}")
    return found


def _foreign_key_problems(table: TableKeys) -> list[str]:
    found = []
    kind = placement(table.name)
    for columns, referred, referred_columns in table.foreign_keys:
        target = placement(referred)
        if target == "distributed":
            pairs = set(zip(columns, referred_columns, strict=True))
            if kind != "distributed":
                found.append(f"{table.name}: a {kind} table cannot refer to distributed {referred}")
            elif (DISTRIBUTION_COLUMN, DISTRIBUTION_COLUMN) not in pairs:
                found.append(f"{table.name}: foreign key {columns} -> {referred} without {DISTRIBUTION_COLUMN}")
        elif target == "local" and kind != "local":
            found.append(f"{table.name}: a {kind} table cannot refer to coordinator-only {referred}")
    return found


def problems(tables: Iterable[TableKeys]) -> list[str]:
    """Every breach of the placement rules (module docstring); empty when the schema can be distributed."""
    found: list[str] = []
    seen = set()
    for table in tables:
        seen.add(table.name)
        kind = placement(table.name)
        if kind is None:
            found.append(f"{table.name}: not placed (core/storage/distribution.py: distributed, reference or local)")
            continue
        if kind == "distributed":
            found += _tenant_problems(table)
        found += _foreign_key_problems(table)
    stale = (set(DISTRIBUTED) | set(REFERENCE) | set(LOCAL)) - seen
    found += [f"{name}: placed but not in the schema" for name in sorted(stale)]
    overlap = (set(DISTRIBUTED) & set(REFERENCE)) | (set(DISTRIBUTED) & set(LOCAL)) | (set(REFERENCE) & set(LOCAL))
    found += [f"{name}: placed twice" for name in sorted(overlap)]
    return found


def citus_statements() -> list[str]:
    """The statements that place an existing (migrated) database's tables on a Citus cluster, run once on the
    coordinator: reference tables first, then the distributed ones colocated with ``account_settings``."""
    statements = [f"SELECT create_reference_table('{name}');" for name in sorted(REFERENCE)]
    first, *rest = DISTRIBUTED
    statements.append(f"SELECT create_distributed_table('{first}', '{DISTRIBUTION_COLUMN}');")
    statements += [f"SELECT create_distributed_table('{name}', '{DISTRIBUTION_COLUMN}', colocate_with => '{first}');"
                   for name in rest]
    return statements
