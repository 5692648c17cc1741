"""Accounts, dashboard users and API keys (api.md API-10..API-13).

Keys are 16 random bytes from ``secrets``; only their SHA-256 digest and a 12-character display prefix are
stored, so a database leak reveals no usable key (Q-42).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.ids import new_id
from core.storage.models import Account, AccountSettings, ApiKey, DashboardUser
from core.storage.tenancy import all_tenants
from core.tenant import ENVIRONMENTS

KEY_PATTERN = re.compile(r"sk_(test|live)_[0-9a-f]{32}")
LAST_USED_RESOLUTION = timedelta(minutes=1)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


@dataclass(frozen=True)
class CreatedKey:
    plaintext: str
    prefix: str
    environment: str
    id: str


@dataclass(frozen=True)
class KeyLookup:
    """What authentication found for a well-formed token; ``problem`` is the API-12 failure, if any."""

    problem: str | None  # None | 'unknown' | 'revoked' | 'suspended'
    account_id: str | None = None
    account_name: str | None = None
    environment: str | None = None
    key_prefix: str | None = None
    key_id: str | None = None
    monthly_event_quota: int | None = None
    currency: str = "USD"  # ATT-1 default currency, so the edge can round revenue to its minor units
    kind: str = "secret"  # secret | sgtm (write-only, sgtm.md SGTM-19)


def key_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# The prefix says what a key may do: secret keys use the REST API, sGTM keys only /sgtm/v1/collect (SGTM-19).
KEY_PREFIXES = {"secret": "sk_", "sgtm": "pk_sgtm_"}


def create_api_key(
    db: Session, account_id: str, environment: str, name: str | None = None, kind: str = "secret"
) -> CreatedKey:
    if environment not in ENVIRONMENTS:
        raise ValueError("environment must be test or live")
    if kind not in KEY_PREFIXES:
        raise ValueError(f"kind must be one of {', '.join(KEY_PREFIXES)}")
    plaintext = f"{KEY_PREFIXES[kind]}{environment}_{secrets.token_hex(16)}"
    key = ApiKey(
        account_id=account_id,
        id=new_id("key"),
        environment=environment,
        kind=kind,
        key_digest=key_digest(plaintext),
        key_prefix=plaintext[:12],
        name=name,
        created_at=datetime.now(UTC),
    )
    db.add(key)
    db.flush()
    return CreatedKey(plaintext=plaintext, prefix=key.key_prefix, environment=environment, id=key.id)


def create_account(
    db: Session, name: str, email: str | None = None, password: str | None = None
) -> tuple[Account, CreatedKey, CreatedKey]:
    now = datetime.now(UTC)
    account = Account(id=new_id("acct"), name=name, status="active", created_at=now)
    db.add(account)
    db.add(AccountSettings(account_id=account.id, settings={}, config_versions={}, updated_at=now))
    if email is not None:
        db.add(
            DashboardUser(
                account_id=account.id,
                id=new_id("usr"),
                email=email.strip().lower(),
                password_hash=hash_password(password or secrets.token_urlsafe(16)),
                created_at=now,
            )
        )
    db.flush()
    test_key = create_api_key(db, account.id, "test", name="Default test key")
    live_key = create_api_key(db, account.id, "live", name="Default live key")
    return account, test_key, live_key


_OPERATOR = all_tenants("the operator revokes a key by prefix or id in any account, or in the one given")


def revoke_api_key(db: Session, prefix_or_id: str, account_id: str | None = None) -> list[str]:
    """Revokes the unrevoked key with that display prefix (or key id); returns its digest to clear caches (API-13).

    ``account_id`` limits it to one account's keys (the dashboard); the operator's CLI may name any key.

    Prefixes carry only 16 bits of the key, so two accounts can share one: an ambiguous prefix revokes nothing
    and the error lists the matching key ids to choose from.
    """
    now = datetime.now(UTC)
    scope = ApiKey.account_id == account_id if account_id is not None else sa.true()
    matching = list(
        db.scalars(
            sa.select(ApiKey.id).where(
                sa.or_(ApiKey.key_prefix == prefix_or_id, ApiKey.id == prefix_or_id), ApiKey.revoked_at.is_(None),
                scope,
            ).execution_options(**_OPERATOR)
        )
    )
    if len(matching) > 1:
        raise ValueError(f"{len(matching)} active keys have the prefix {prefix_or_id}; give one of their ids: "
                         + ", ".join(matching))
    digests = list(
        db.scalars(
            sa.update(ApiKey)
            .where(
                sa.or_(ApiKey.key_prefix == prefix_or_id, ApiKey.id == prefix_or_id),
                ApiKey.revoked_at.is_(None),
                scope,
            )
            .values(revoked_at=now)
            .returning(ApiKey.key_digest)
            .execution_options(**_OPERATOR)
        )
    )
    return digests


def lookup_key(db: Session, token: str) -> KeyLookup:
    """API-12 steps 4–6 for a token that already passed the format check."""
    row = db.execute(
        sa.select(ApiKey, Account, AccountSettings.settings)
        .join(Account, Account.id == ApiKey.account_id)
        .outerjoin(AccountSettings, AccountSettings.account_id == ApiKey.account_id)
        .where(ApiKey.key_digest == key_digest(token))
    ).first()
    if row is None:
        return KeyLookup(problem="unknown")
    key, account, settings = row
    if key.revoked_at is not None:
        return KeyLookup(problem="revoked")
    if account.status != "active":
        return KeyLookup(problem="suspended")
    now = datetime.now(UTC)
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        key.last_used_at = now  # API-11: written at most once a minute per key
    return KeyLookup(
        problem=None,
        account_id=account.id,
        account_name=account.name,
        environment=key.environment,
        key_prefix=key.key_prefix,
        key_id=key.id,
        monthly_event_quota=account.monthly_event_quota,
        currency=str((settings or {}).get("currency") or "USD"),
        kind=key.kind,
    )


def account_count(db: Session) -> int:
    return int(db.scalar(sa.select(sa.func.count()).select_from(Account)) or 0)
