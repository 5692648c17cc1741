"""The report pages (dashboard.md DSH-10..DSH-15): thin views over `core.reports` and `core.reads`.

Every query is scoped by the viewer's tenant (account + environment toggle, DSH-5); an id from another account
or environment is simply not found (404). Every table can be downloaded as CSV with the same filters
(`?format=csv`, DSH-23).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import abort, current_app, render_template, request

from core.attribution import MODELS
from core.reads import conversion_body, money
from core.reports import attribution_report, daily_totals, every_row, list_conversions, list_events
from core.settings import load_config
from core.storage.models import AttributionCredit, Conversion, Event, Rejection, User, Visitor
from core.storage.models import Session as VisitSession
from gateway.csv_stream import csv_download
from gateway.dashboard import bp
from gateway.dashboard.auth import Viewer, logged_in, login_required
from gateway.dashboard.charts import bar_chart, channel_colour, line_chart
from gateway.dashboard.filters import Filters, arg, filters_from_request

PAGE = 50
FRESHNESS_SAMPLE = 101  # latest events whose median receive lag Overview shows


def _context() -> tuple[Viewer, Any, Filters]:
    who = logged_in()
    with current_app.config["MBUZZ"].sessions() as db:
        config = load_config(db, who.account_id)
    return who, config, filters_from_request(config.timezone, list(config.attribution.enabled_models))


def _wants_csv() -> bool:
    return request.args.get("format") == "csv"


def _share(part: Decimal, whole: Decimal) -> str:
    return f"{(part / whole * 100):.1f}%" if whole else "–"


@bp.route("/")
@login_required
def overview() -> Any:
    """DSH-10: totals, revenue credit by channel for one model, the daily line, data freshness."""
    who, config, flt = _context()
    with current_app.config["MBUZZ"].sessions() as db:
        report = attribution_report(db, who.tenant, flt.range, models=[flt.model], funnel=flt.funnel)
        days = daily_totals(db, who.tenant, flt.range, funnel=flt.funnel)
        latest = db.execute(sa.select(Event.received_at, Event.occurred_at).where(
            Event.account_id == who.account_id, Event.environment == who.environment)
            .order_by(Event.received_at.desc(), Event.id.desc()).limit(FRESHNESS_SAMPLE)).all()
    rows = [r for r in report["rows"] if r["model"] == flt.model]
    currency = _main_currency(report, config)
    by_revenue = sorted((r for r in rows if r["currency"] == currency), key=lambda r: -r["revenue_minor"])
    if _wants_csv():
        return csv_download("overview", flt.range,
                            ["channel", "currency", "conversions", "revenue", "revenue_share"],
                            ([r["channel"], r["currency"], r["conversions"], money(r["revenue_minor"], r["currency"]),
                              r["revenue_share"]] for r in rows))
    chart = bar_chart([(r["channel"], r["revenue_minor"], money(r["revenue_minor"], currency) or "")
                       for r in by_revenue], label=f"Revenue credit by channel ({flt.model})")
    conversions_line = line_chart([(d["day"].isoformat(), d["conversions"]) for d in days],
                                  label="Conversions per day")
    revenue_line = line_chart([(d["day"].isoformat(), Decimal(money(d["revenue_minor"].get(currency, 0), currency)
                                                               or 0)) for d in days],
                              label=f"Revenue per day ({currency})", colour="#16a34a")
    freshness = None
    if latest:  # DSH-10-D1: the median lag of the latest events, so one backdated import does not dominate it
        lags = sorted(max(r.received_at - r.occurred_at, timedelta(0)) for r in latest)
        freshness = {"received_at": latest[0].received_at, "lag": lags[len(lags) // 2]}
    return render_template("dashboard/overview.html", who=who, flt=flt, report=report, rows=by_revenue,
                           currency=currency, chart=chart, conversions_line=conversions_line,
                           revenue_line=revenue_line, freshness=freshness, page="overview")


def _main_currency(report: dict[str, Any], config: Any) -> str:
    totals = report["total_revenue_minor"]
    if totals:
        return str(max(totals, key=lambda c: totals[c]))
    return str(config.currency)


@bp.route("/channels")
@login_required
def channels() -> Any:
    """DSH-11: channel × credit for one model, a second model beside it, and the spread over all models."""
    who, config, flt = _context()
    with current_app.config["MBUZZ"].sessions() as db:
        report = attribution_report(db, who.tenant, flt.range, funnel=flt.funnel)
    currency = _main_currency(report, config)
    table: dict[str, dict[str, Any]] = {}
    for r in report["rows"]:
        if r["currency"] != currency:
            continue
        table.setdefault(r["channel"], {})[r["model"]] = r
    models = report["models"]
    lines: list[dict[str, Any]] = []
    for channel, per_model in table.items():
        shares = [per_model[m]["conversion_share"] if m in per_model else Decimal(0)
                  for m in models if m != "participation"]
        lines.append({"channel": channel, "colour": channel_colour(channel), "main": per_model.get(flt.model),
                      "compare": per_model.get(flt.compare) if flt.compare else None,
                      "low": min(shares, default=Decimal(0)), "high": max(shares, default=Decimal(0))})
    lines.sort(key=lambda line: -(line["main"]["conversions"] if line["main"] else Decimal(0)))
    if _wants_csv():
        header = ["channel", "model", "conversions", "revenue", "conversion_share", "revenue_share",
                  "lowest_share_all_models", "highest_share_all_models"]
        return csv_download("channels", flt.range, header, (
            [ln["channel"], flt.model, ln["main"]["conversions"] if ln["main"] else 0,
             money(ln["main"]["revenue_minor"], currency) if ln["main"] else "0",
             ln["main"]["conversion_share"] if ln["main"] else 0, ln["main"]["revenue_share"] if ln["main"] else 0,
             ln["low"], ln["high"]] for ln in lines))
    return render_template("dashboard/channels.html", who=who, flt=flt, lines=lines, currency=currency,
                           models=models, report=report, page="channels")


@bp.route("/conversions")
@login_required
def conversions() -> Any:
    """DSH-12: the paginated list with its filters."""
    who, _config, flt = _context()
    filters = {"conversion_type": arg("conversion_type"), "funnel": flt.funnel}
    after = _cursor(arg("after"))
    services = current_app.config["MBUZZ"]
    if _wants_csv():
        def csv_lines(db: Any, page: list[Conversion]) -> Iterator[list[Any]]:
            return ([c["converted_at"], c["type"], c["revenue"], c["currency"], c["who"], c["source"],
                     c["acquisition"], c["id"]] for c in _conversion_lines(db, who, page))
        return csv_download("conversions", flt.range, ["converted_at", "conversion_type", "revenue", "currency",
                                                       "user_or_visitor", "source", "is_acquisition", "id"],
                            every_row(services.sessions, list_conversions, who.tenant, flt.range, filters, "desc",
                                      csv_lines))
    with services.sessions() as db:
        page, next_cursor = list_conversions(db, who.tenant, flt.range, filters, PAGE, after, "desc")
        lines = _conversion_lines(db, who, page)
        types = list(db.scalars(sa.select(Conversion.conversion_type).where(
            Conversion.account_id == who.account_id, Conversion.environment == who.environment).distinct()
            .limit(100)))
    return render_template("dashboard/conversions.html", who=who, flt=flt, lines=lines, types=sorted(types),
                           chosen_type=filters["conversion_type"],
                           next_cursor=_encode_cursor(next_cursor), page="conversions")


def _cursor(text: str | None) -> tuple[Any, ...] | None:
    if not text or "~" not in text:
        return None
    at, _, row_id = text.partition("~")
    try:
        return (datetime.fromisoformat(at), row_id)
    except ValueError:
        return None


def _encode_cursor(keyset: tuple[Any, ...] | None) -> str | None:
    return f"{keyset[0].isoformat()}~{keyset[1]}" if keyset else None


def _keys_of(db: Any, who: Viewer, visitor_ids: set[str], user_ids: set[str]) -> tuple[dict[str, str],
                                                                                         dict[str, str]]:
    visitors = dict(db.execute(sa.select(Visitor.id, Visitor.visitor_key).where(
        Visitor.account_id == who.account_id, Visitor.id.in_(visitor_ids))).all()) if visitor_ids else {}
    users = dict(db.execute(sa.select(User.id, User.user_key).where(
        User.account_id == who.account_id, User.id.in_(user_ids))).all()) if user_ids else {}
    return visitors, users


def _conversion_lines(db: Any, who: Viewer, page: list[Conversion]) -> list[dict[str, Any]]:
    visitors, users = _keys_of(db, who, {c.visitor_id for c in page if c.visitor_id},
                               {c.user_id for c in page if c.user_id})
    return [{"id": c.id, "converted_at": c.converted_at, "type": c.conversion_type,
             "revenue": money(c.revenue_minor, c.currency or "USD"), "currency": c.currency,
             "who": users.get(c.user_id or "") or visitors.get(c.visitor_id or "") or "",
             "source": _source_label(c.source), "acquisition": c.is_acquisition, "status": c.status}
            for c in page]


def _source_label(source: str | None) -> str:
    if source is None:
        return "api"
    return "shopify" if source.startswith("shopify") else source


@bp.route("/conversions/<conversion_id>")
@login_required
def conversion_detail(conversion_id: str) -> Any:
    """DSH-13: the journey, touchpoint by touchpoint, with every model's credit."""
    who, config, flt = _context()
    with current_app.config["MBUZZ"].sessions() as db:
        conv = db.scalars(sa.select(Conversion).where(
            Conversion.account_id == who.account_id, Conversion.environment == who.environment,
            Conversion.id == conversion_id)).first()
        if conv is None:
            abort(404)
        body = conversion_body(db, who.tenant, conv, list(config.attribution.enabled_models))
        credits = list(db.scalars(sa.select(AttributionCredit).where(
            AttributionCredit.account_id == who.account_id, AttributionCredit.environment == who.environment,
            AttributionCredit.conversion_id == conv.id).order_by(AttributionCredit.touchpoint_index)))
        session_ids = {c.session_id for c in credits if c.session_id}
        sessions = {s.id: s for s in db.scalars(sa.select(VisitSession).where(
            VisitSession.account_id == who.account_id, VisitSession.id.in_(session_ids)))} if session_ids else {}
        db.expunge_all()
    touchpoints: dict[int, dict[str, Any]] = {}
    models = [m for m in MODELS if m in config.attribution.enabled_models]
    for credit in credits:
        point = touchpoints.setdefault(credit.touchpoint_index, {
            "index": credit.touchpoint_index, "channel": credit.channel, "colour": channel_colour(credit.channel),
            "session": sessions.get(credit.session_id or ""), "utm": (credit.utm_source, credit.utm_medium,
                                                                      credit.utm_campaign), "credits": {}})
        point["credits"][credit.model] = (credit.credit, money(credit.revenue_credit_minor, conv.currency or "USD"))
    timeline = [touchpoints[i] for i in sorted(touchpoints)]
    return render_template("dashboard/conversion.html", who=who, flt=flt, conv=conv, body=body, timeline=timeline,
                           models=models, page="conversions")


@bp.route("/events")
@login_required
def events() -> Any:
    """DSH-14: the latest events (the page refreshes its table every 5 s unless paused), and the last 24 h of
    rejected items with their errors."""
    who, _config, flt = _context()
    event_type = arg("event_type")
    filters = {"event_type": event_type, "funnel": flt.funnel}
    services = current_app.config["MBUZZ"]
    if _wants_csv():
        return csv_download("events", flt.range, ["occurred_at", "event_type", "funnel", "url", "id"], every_row(
            services.sessions, list_events, who.tenant, flt.range, filters, "desc",
            lambda _db, page: ([e.occurred_at, e.event_type, e.funnel or "", e.url or "", e.id] for e in page)))
    with services.sessions() as db:
        page, _next = list_events(db, who.tenant, flt.range, filters, PAGE, None, "desc")
        visitors, _users = _keys_of(db, who, {e.visitor_id for e in page if e.visitor_id}, set())
        since = datetime.now(UTC) - timedelta(hours=24)
        rejected = list(db.scalars(sa.select(Rejection).where(
            Rejection.account_id == who.account_id, Rejection.environment == who.environment,
            Rejection.created_at >= since).order_by(Rejection.created_at.desc()).limit(50)))
        db.expunge_all()
    template = "dashboard/events_table.html" if request.args.get("fragment") else "dashboard/events.html"
    return render_template(template, who=who, flt=flt, events=page, visitors=visitors, rejected=rejected,
                           event_type=event_type, page="events")


@bp.route("/funnels")
@login_required
def funnels() -> Any:
    """DSH-15: a funnel's steps in order of first appearance, with counts, step conversion, and the split by
    the visitor's first-touch channel."""
    who, _config, flt = _context()
    with current_app.config["MBUZZ"].sessions() as db:
        names = sorted(n for n in db.scalars(sa.select(Event.funnel).where(
            Event.account_id == who.account_id, Event.environment == who.environment,
            Event.funnel.is_not(None)).distinct().limit(200)) if n)
        chosen = flt.funnel or (names[0] if names else None)
        steps = _funnel_steps(db, who, flt, chosen) if chosen else []
    if _wants_csv():
        return csv_download("funnel", flt.range, ["step", "visitors", "step_conversion", "first_touch_channel",
                                                  "channel_visitors"],
                            ([s["name"], s["visitors"], s["rate"], ch, n] for s in steps
                             for ch, n in (s["by_channel"] or {"": 0}).items()))
    return render_template("dashboard/funnels.html", who=who, flt=flt, names=names, chosen=chosen, steps=steps,
                           page="funnels")


def _funnel_steps(db: Any, who: Viewer, flt: Filters, funnel: str) -> list[dict[str, Any]]:
    start = datetime.combine(flt.range.start, datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(flt.range.end + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    scoped = sa.and_(Event.account_id == who.account_id, Event.environment == who.environment,
                     Event.funnel == funnel, Event.occurred_at >= start, Event.occurred_at < end)
    order = list(db.execute(sa.select(Event.event_type, sa.func.min(Event.occurred_at).label("first"),
                                      sa.func.count(sa.distinct(Event.visitor_id)).label("visitors"))
                            .where(scoped).group_by(Event.event_type).order_by("first")).all())
    first_touch = (sa.select(VisitSession.channel).where(
        VisitSession.account_id == who.account_id, VisitSession.environment == who.environment,
        VisitSession.visitor_id == Event.visitor_id).order_by(VisitSession.started_at).limit(1)
        .correlate(Event).scalar_subquery())
    steps: list[dict[str, Any]] = []
    for name, _first, visitors in order:
        split = dict(db.execute(sa.select(first_touch.label("channel"), sa.func.count(sa.distinct(Event.visitor_id)))
                                .where(scoped, Event.event_type == name).group_by("channel")).all())
        previous = steps[-1]["visitors"] if steps else None
        steps.append({"name": name, "visitors": visitors, "by_channel": {k or "unknown": v for k, v in split.items()},
                      "rate": f"{visitors / previous * 100:.1f}%" if previous else "–"})
    return steps
