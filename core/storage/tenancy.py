"""Tenant scoping as a checkable rule (issue 18 item 3; docs/architecture.md "Tenant scoping").

Every read, update or delete of a tenant's rows names its account (quality.md Q-40: nothing of account B through
a key of account A). Queries build the clause through one helper (``Ctx.scoped`` in the processors,
``of_tenant`` elsewhere), which names the environment too; a primary-key lookup (``db.get``) names the account
and its caller compares the environment (API-14). A statement that reads across accounts on purpose (a
maintenance sweep, the lookup that finds a key's account) says so with the ``ALL_TENANTS`` execution option and
a reason.

:func:`unscoped` is the check itself, on the SQL text as sent to the database; the test suite runs it on every
statement the product code runs in any test (tests/conftest.py), so a query built without its account fails the
test that ran it.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import sqlalchemy as sa

from core.storage.models import every_table
from core.tenant import Tenant

ALL_TENANTS = "mbuzz_all_tenants"  # execution option: the reason this statement reads across tenants


def _tables_with(*columns: str) -> frozenset[str]:
    return frozenset(t.name for t in every_table().tables.values() if all(c in t.c for c in columns))


@cache
def tenant_tables() -> frozenset[str]:
    """Every table whose rows belong to one account, the connectors' included (read on first use, once every
    package's tables are loaded). Not `installations`: a row per shop (shopify.md SHP-7), found by its shop domain
    or id before any tenant is known; its account is an attribute (None until connected)."""
    return _tables_with("account_id") - {"installations"}


@cache
def environment_tables() -> frozenset[str]:
    """The tenant tables whose rows also belong to one of the account's environments."""
    return _tables_with("account_id", "environment")

_REFERENCE = re.compile(r'\b(?:from|join|update)\s+"?([a-z_][a-z0-9_]*)"?', re.IGNORECASE)
_ACCOUNT = re.compile(r"\baccount_id\b\s*(?:=|\bin\b|is\b)", re.IGNORECASE)


def unscoped(sql: str) -> list[str]:
    """The tenant tables ``sql`` reads, updates or deletes from without naming an account (empty: scoped)."""
    if _ACCOUNT.search(sql) is not None:
        return []
    return sorted({name.lower() for name in _REFERENCE.findall(sql)} & tenant_tables())


def of_tenant(model: Any, tenant: Tenant) -> sa.ColumnElement[bool]:
    """The WHERE clause of ``model``'s rows of ``tenant``."""
    clauses: list[sa.ColumnElement[bool]] = [model.account_id == tenant.account_id]
    if hasattr(model, "environment"):
        clauses.append(model.environment == tenant.environment)
    return sa.and_(*clauses)


def all_tenants(reason: str) -> dict[str, str]:
    """Execution options of a statement that reads across tenants on purpose: ``.execution_options(**...)``."""
    return {ALL_TENANTS: reason}
