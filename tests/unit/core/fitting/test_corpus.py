"""ATT-23: the fit corpus built from stored sessions, links and conversions.

A hand-checked scenario runs on both databases; on PostgreSQL the SQL builder is compared with the reference
builder on a generated data set under every journey setting.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from core.attribution import AttributionSettings
from core.attribution.fits import JourneyPath
from core.fitting.corpus import CorpusSpec, build_corpus, reference_corpus, sql_corpus
from core.ids import new_id
from core.storage import models as m
from core.tenant import Tenant
from tests.conftest import new_account

F = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class Data:
    """Rows written straight into the tables: the corpus reads stored state, however it got there."""

    def __init__(self, db: Session, tenant: Tenant) -> None:
        self.db, self.tenant = db, tenant

    def _scope(self) -> dict[str, Any]:
        return {"account_id": self.tenant.account_id, "environment": self.tenant.environment}

    def visitor(self, key: str) -> str:
        vid = new_id("vis")
        self.db.add(m.Visitor(**self._scope(), id=vid, visitor_key=key, first_seen_at=F - 400 * DAY,
                              last_seen_at=F, created_at=F - 400 * DAY))
        return vid

    def session(self, visitor_id: str, channel: str, at: datetime, excluded: bool = False) -> str:
        sid = new_id("sess", at)
        self.db.add(m.Session(**self._scope(), id=sid, visitor_id=visitor_id, started_at=at, last_activity_at=at,
                              channel=channel, excluded=excluded, created_at=at))
        return sid

    def link(self, visitor_id: str, user_id: str, valid_from: datetime | None = None,
             valid_to: datetime | None = None) -> None:
        self.db.add(m.VisitorLink(**self._scope(), id=new_id("lnk"), visitor_id=visitor_id, user_id=user_id,
                                  linked_at=valid_from or F - 400 * DAY, valid_from=valid_from, valid_to=valid_to))

    def conversion(self, visitor_id: str, at: datetime, user_id: str | None = None, status: str = "active",
                   kind: str = "purchase", inherited_from: str | None = None) -> str:
        cid = new_id("conv", at)
        self.db.add(m.Conversion(**self._scope(), id=cid, conversion_type=kind, visitor_id=visitor_id,
                                 user_id=user_id, converted_at=at, converted_at_source="timestamp", received_at=at,
                                 currency="USD", status=status, inherited_from_conversion_id=inherited_from))
        return cid


def _spec(**settings: Any) -> CorpusSpec:
    return CorpusSpec(as_of=F, window_days=90, settings=AttributionSettings(**settings))


def _as_set(paths: list[JourneyPath]) -> set[tuple[tuple[str, ...], bool, int]]:
    return {(p.channels, p.converted, p.count) for p in paths}


def test_ATT23_hand_checked_corpus(app: Flask) -> None:
    tenant = Tenant(new_account(app).account_id, "test")
    with app.config["MBUZZ"].sessions.begin() as db:
        d = Data(db, tenant)
        v1 = d.visitor("v1")  # anonymous: a converting path, then a non-converting one after R
        d.session(v1, "organic_search", F - 10 * DAY)
        d.session(v1, "direct", F - 10 * DAY + timedelta(minutes=2))  # ATT-9 burst: dropped
        d.session(v1, "email", F - 3 * DAY)
        d.session(v1, "referral", F - 4 * DAY, excluded=True)  # ATT-4: not qualified
        d.conversion(v1, F - 2 * DAY)
        d.session(v1, "paid_social", F - DAY)
        v2 = d.visitor("v2")  # a cancelled conversion is no converting path, but it is a reset point
        d.session(v2, "video", F - 8 * DAY)
        d.conversion(v2, F - 6 * DAY, status="cancelled")
        d.session(v2, "display", F - 5 * DAY)
        v3, v4 = d.visitor("v3"), d.visitor("v4")  # one user on two devices (ATT-5)
        d.link(v3, "idt_u")
        d.link(v4, "idt_u")
        d.session(v3, "email", F - 6 * DAY)
        d.session(v4, "paid_search", F - 4 * DAY)
        first = d.conversion(v4, F - 3 * DAY, user_id="idt_u")
        d.conversion(v4, F - 2 * DAY, user_id="idt_u", inherited_from=first)  # ATT-43: excluded
        v5 = d.visitor("v5")
        d.session(v5, "affiliate", F - 100 * DAY)  # before F − W: no path
        d.session(v5, "social", F + timedelta(seconds=1))  # after F: no path
    with app.config["MBUZZ"].sessions.begin() as db:
        paths = build_corpus(db, tenant, _spec())
    assert _as_set(paths) == {
        (("organic_search", "email"), True, 1),
        (("email", "paid_search"), True, 1),
        (("paid_social",), False, 1),
        (("display",), False, 1),
    }


def _generated(db: Session, tenant: Tenant, seed: int) -> None:
    """Users on several devices with relinks, bursts of direct visits, resets, cancellations, a long journey."""
    r = random.Random(seed)
    d = Data(db, tenant)
    channels = ["direct", "email", "organic_search", "paid_search", "paid_social", "referral"]
    visitors = [d.visitor(f"g{i}") for i in range(80)]
    users = [f"idt_{i:03d}" for i in range(20)]
    for i, v in enumerate(visitors):
        if i % 3 == 0:
            d.link(v, r.choice(users))
        elif i % 7 == 0:  # relinked: first user until T, another from T (ID-4)
            t = F - r.randrange(5, 60) * DAY
            d.link(v, users[i % 20], None, t)
            d.link(v, users[(i + 1) % 20], t, None)
        at = F - r.randrange(1, 130) * DAY
        for _ in range(r.randrange(0, 9)):
            at += timedelta(seconds=r.choice([30, 200, 299, 300, 301, 4000, 90_000, 400_000]))
            if at > F:
                break
            d.session(v, r.choice(channels), at, excluded=r.random() < 0.05)
        for _ in range(r.randrange(0, 3)):
            when = F - timedelta(seconds=r.randrange(0, 100 * 86_400))
            d.conversion(v, when, user_id=r.choice([None, users[i % 20]]), kind=r.choice(["purchase", "signup"]),
                         status="cancelled" if r.random() < 0.1 else "active")
    for v in visitors[2:5]:  # ATT-8: sessions starting at the same instant, ordered by id
        for channel in ("paid_search", "email", "direct"):
            d.session(v, channel, F - 2 * DAY)
    d.conversion(visitors[2], F - 2 * DAY + timedelta(minutes=1))
    long = visitors[1]  # ATT-10: more than 1,000 touchpoints
    for k in range(1005):
        d.session(long, channels[k % 6], F - 20 * DAY + timedelta(minutes=10 * k))
    d.conversion(long, F - DAY)


@pytest.mark.postgres
@pytest.mark.parametrize("settings", [
    {}, {"journey_reset": "any_conversion"}, {"journey_reset": "same_type"}, {"direct_burst_collapse": False},
    {"lookback_days": 7},
], ids=["defaults", "reset-any", "reset-same-type", "no-collapse", "lookback-7"])
def test_ATT23_sql_corpus_equals_the_reference(app: Flask, is_postgres: bool, settings: dict[str, Any]) -> None:
    if not is_postgres:
        pytest.skip("the SQL builder is PostgreSQL's")
    tenant = Tenant(new_account(app).account_id, "test")
    with app.config["MBUZZ"].sessions.begin() as db:
        _generated(db, tenant, seed=11)
    spec = _spec(**settings)
    with app.config["MBUZZ"].sessions.begin() as db:
        expected = reference_corpus(db, tenant, spec)
        got = sql_corpus(db, tenant, spec)
    assert sum(p.count for p in expected) > 40
    if "lookback_days" not in settings:  # the long journey lies 13..20 days before the conversion
        assert any(len(p.channels) == 1000 for p in expected)
    assert got == expected


@pytest.mark.postgres
def test_ATT23_sql_corpus_codes_channels_outside_the_taxonomy_beyond_one_byte(app: Flask, is_postgres: bool) -> None:
    """Old or test data may hold channel names outside CH-1's twelve: 300 of them still count as 300 channels."""
    if not is_postgres:
        pytest.skip("the SQL builder is PostgreSQL's")
    tenant = Tenant(new_account(app).account_id, "test")
    with app.config["MBUZZ"].sessions.begin() as db:
        d = Data(db, tenant)
        for i in range(300):
            v = d.visitor(f"legacy{i}")
            d.session(v, f"legacy-{i}", F - 3 * DAY)
            d.session(v, "email", F - 2 * DAY)
            if i % 2:
                d.conversion(v, F - DAY)
    with app.config["MBUZZ"].sessions.begin() as db:
        expected = reference_corpus(db, tenant, _spec())
        got = sql_corpus(db, tenant, _spec())
    assert got == expected and len(expected) == 300


def test_ATT23_corpus_is_scoped_to_the_tenant(app: Flask) -> None:
    tenant = Tenant(new_account(app).account_id, "test")
    with app.config["MBUZZ"].sessions.begin() as db:
        d = Data(db, tenant)
        v = d.visitor("x")
        d.session(v, "email", F - DAY)
        d.conversion(v, F - timedelta(hours=1))
        other = Data(db, replace(tenant, environment="live"))
        w = other.visitor("y")
        other.session(w, "display", F - DAY)
    with app.config["MBUZZ"].sessions.begin() as db:
        assert _as_set(build_corpus(db, tenant, _spec())) == {(("email",), True, 1)}
        assert _as_set(build_corpus(db, replace(tenant, environment="live"), _spec())) == {(("display",), False, 1)}


def test_ATT33_fits_do_not_depend_on_insert_order(app: Flask) -> None:
    """ATT-67 scenario 10: the same data inserted in another order gives the same corpus and fit values."""
    from core.fitting.service import current_fits, run_fit
    from core.settings import save_settings

    sessions = app.config["MBUZZ"].sessions
    first, second = (Tenant(new_account(app).account_id, "test") for _ in range(2))
    with sessions.begin() as db:
        _generated(db, first, seed=23)
    with sessions.begin() as db:
        rows: list[Any] = []
        for model in (m.Visitor, m.VisitorLink, m.Session, m.Conversion):
            for row in db.scalars(sa.select(model).where(model.account_id == first.account_id)):
                values = {c.key: getattr(row, c.key) for c in sa.inspect(model).column_attrs}
                rows.append(model(**{**values, "account_id": second.account_id}))
        random.Random(5).shuffle(rows)
        for row in rows:  # one flush per row: the physical order really differs
            db.add(row)
            db.flush()
    with sessions.begin() as db:
        assert build_corpus(db, first, _spec()) == build_corpus(db, second, _spec())
        for tenant in (first, second):
            save_settings(db, tenant.account_id, {"min_conversions": 1, "min_journeys": 1})
            run_fit(db, tenant, F)
        fits = [current_fits(db, t) for t in (first, second)]
    for model in ("markov_chain", "shapley_value"):
        assert fits[0][model].status == fits[1][model].status == "ready"
        assert len(fits[0][model].fit.values) == 6 and fits[0][model].fit.values == fits[1][model].fit.values
