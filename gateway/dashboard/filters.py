"""The shared page filters (dashboard.md DSH-20): date range, model, funnel; all in the query string.

A filter the URL gets wrong never fails the page: it falls back to the default and the page says so, since a
shared link with a stale model name should still show something useful.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from flask import request

from core.attribution import MODELS
from core.reports import Range, ReportError, resolve_range

__all__ = ["PRESETS", "Filters", "filters_from_request"]

PRESETS = ("7d", "30d", "90d")


@dataclass(frozen=True)
class Filters:
    range: Range
    preset: str | None  # None: a custom start/end
    model: str
    compare: str | None
    funnel: str | None
    available: tuple[str, ...] = ()  # the account's enabled models, in the order of API-94
    notices: list[str] = field(default_factory=list)

    def query(self, **changes: str | None) -> dict[str, str]:
        """The query string of this selection with `changes` applied (for links that keep the filters)."""
        params: dict[str, str | None] = {"model": self.model, "funnel": self.funnel, "compare": self.compare}
        if self.preset:
            params["date_range"] = self.preset
        else:
            params.update(start_date=self.range.start.isoformat(), end_date=self.range.end.isoformat())
        params.update(changes)
        return {k: v for k, v in params.items() if v}


def arg(name: str) -> str | None:
    """A query parameter without NUL characters (PostgreSQL text cannot hold them; API-120-D3 does the same for
    the data API), or None when absent or empty."""
    return (request.args.get(name) or "").replace("\x00", "") or None


def filters_from_request(tz: str, enabled_models: list[str], today: date | None = None) -> Filters:
    notices: list[str] = []
    if today is None:
        today = datetime.now(ZoneInfo(tz)).date()
    start, end = arg("start_date"), arg("end_date")
    preset = None if (start or end) else (arg("date_range") or "30d")
    try:
        rng = resolve_range(preset, start, end, tz, today)
    except ReportError as exc:
        notices.append(f"{exc} Showing the last 30 days.")
        preset, rng = "30d", resolve_range("30d", None, None, tz, today)
    models = [m for m in MODELS if m in enabled_models] or list(MODELS)
    model = arg("model") or ("linear" if "linear" in models else models[0])
    if model not in models:
        notices.append(f"Unknown model {model!r}; showing {models[0]}.")
        model = models[0]
    compare = arg("compare")
    if compare is not None and compare not in models:
        compare = None
    funnel = (arg("funnel") or "").strip()[:255] or None
    return Filters(rng, preset, model, compare, funnel, tuple(models), notices)
