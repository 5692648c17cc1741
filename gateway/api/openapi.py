"""``GET /api/v1/openapi.json``: an OpenAPI 3.1 document built at start-up from the pydantic models (API-160).

The data API's query parameters (API-120..API-128) are listed here from the same constants the views check
(``core.attribution.MODELS``, ``core.channels.CHANNELS``, ``gateway.api.data`` limits), so a generated request
is valid or invalid for the same reasons the view decides.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson
from flask import Blueprint, Response
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from core.attribution import MODELS as ATTRIBUTION_MODELS
from core.channels import CHANNELS
from core.reports import DATE_RANGES
from gateway.api import schemas as s
from gateway.api.data import DEFAULT_LIMIT, MAX_LIMIT

bp = Blueprint("api_v1_openapi", __name__, url_prefix="/api/v1")

MODELS: list[type[BaseModel]] = [
    s.SessionIn, s.SessionWrapped, s.EventIn, s.FlatEventIn, s.EventsWrapped, s.EventWrapped, s.ConversionIn,
    s.ConversionWrapped, s.IdentifyIn, s.IdentifyWrapped, s.ErrorOut, s.RateLimitedOut, s.UnprocessableOut,
    s.SessionOut, s.EventsOut, s.ConversionOut, s.IdentifyOut, s.ValidateOut, s.HealthOut,
    s.DataConversionsOut, s.DataConversionOut, s.DataEventsOut, s.DataSessionsOut, s.DataAttributionOut,
]


EXAMPLES_DIR = Path(__file__).parent / "examples"  # the api.md §13 fixtures, kept equal to them by a test
EXAMPLES: dict[str, dict[str, list[str]]] = {
    "/sessions": {
        "request": ["sessions_request", "sessions_request_flat", "compat_python_0_10_session_request",
                    "compat_sgtm_session_request"],
        "202": ["sessions_response"],
    },
    "/events": {
        "request": ["events_single_request", "events_user_only_request", "events_batch_request",
                    "compat_php_event_request"],
        "202": ["events_batch_response"],
        "400": ["error_400_invalid_json"],
        "413": ["error_413_too_many_events"],
    },
    "/conversions": {
        "request": ["conversion_event_request", "conversion_visitor_request", "conversion_flat_request",
                    "conversion_keyed_request", "conversion_acquisition_request", "conversion_recurring_request"],
        "201": ["conversion_response_created"],
        "200": ["conversion_response_duplicate"],
        "202": ["conversion_response_pending"],
        "401": ["error_401_missing_header", "error_401_invalid_key"],
        "422": ["error_422_conversion"],
        "429": ["error_429_rate_limited"],
    },
    "/identify": {
        "request": ["identify_request"],
        "200": ["identify_response"],
        "202": ["identify_response_pending"],
        "422": ["error_422_identify"],
    },
    "/validate": {"200": ["validate_response"]},
    "/health": {"200": ["health_response"]},
    "/data/attribution": {"200": ["data_attribution_response"]},
}


def _add_examples(paths: dict[str, Any]) -> None:
    """API-160: the §13 fixtures appear as named examples of their request bodies and responses."""
    for path, table in EXAMPLES.items():
        (operation,) = paths[path].values()
        for where, names in table.items():
            holder = operation["requestBody"] if where == "request" else operation["responses"][where]
            examples = {n: {"value": orjson.loads((EXAMPLES_DIR / f"{n}.json").read_bytes())} for n in names}
            holder["content"]["application/json"]["examples"] = examples


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    table = {
        400: ("Malformed body or parameters", _ref(s.ErrorOut)),
        401: ("Authentication failed (API-12)", _ref(s.ErrorOut)),
        404: ("Not found; an id of another account or environment too (API-14)", _ref(s.ErrorOut)),
        413: ("Body or batch too large", _ref(s.ErrorOut)),
        415: ("Unsupported Content-Encoding", _ref(s.ErrorOut)),
        422: ("Validation failed", _ref(s.UnprocessableOut)),
        429: ("Rate limited", _ref(s.RateLimitedOut)),
        503: ("Temporarily unavailable", _ref(s.ErrorOut)),
    }
    return {str(c): _json(table[c][1], table[c][0]) for c in codes}


def _write(summary: str, body: dict[str, Any], ok: dict[str, Any], errs: tuple[int, ...]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": [{"bearerAuth": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {**ok, **_errors(*errs)},
        }
    }


_TEXT: dict[str, Any] = {"type": "string"}
# API-120..API-128 query parameters: name -> (schema, description). Comma lists are arrays in the ``form`` style
# without explode (``channels=paid_search,email``), which is how the views split them.
DATA_PARAMETERS: dict[str, tuple[dict[str, Any], str]] = {
    "date_range": ({"type": "string", "enum": list(DATE_RANGES), "default": "30d"},
                   "API-120: today and the N-1 days before, in the account's time zone"),
    "start_date": ({"type": "string", "format": "date"}, "API-120: first day (YYYY-MM-DD); needs end_date"),
    "end_date": ({"type": "string", "format": "date"}, "API-120: last day, inclusive; needs start_date"),
    "format": ({"type": "string", "enum": ["json", "csv"]}, "API-122: wins over the Accept header"),
    "limit": ({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
              "API-121: rows per page (JSON only)"),
    "cursor": (_TEXT, "API-121: meta.next_cursor of the previous page, with the same parameters"),
    "order": ({"type": "string", "enum": ["desc", "asc"], "default": "desc"}, "API-121: by time, then id"),
    "conversion_type": (_TEXT, "exact conversion type"),
    "funnel": (_TEXT, "exact funnel name"),
    "visitor_id": (_TEXT, "the caller's visitor id"),
    "user_id": (_TEXT, "the caller's user id"),
    "event_type": (_TEXT, "exact event type"),
    "session_id": (_TEXT, "a server session id (sess_...)"),
    "channels": ({"type": "array", "items": {"type": "string", "enum": list(CHANNELS)}},
                 "comma list of channels (sessions.md CH-1)"),
    "model": ({"type": "array", "items": {"type": "string", "enum": list(ATTRIBUTION_MODELS)}},
              "comma list of the account's enabled models to show (default: all of them)"),
    "status": ({"type": "string", "enum": ["active", "cancelled"]}, "API-124-D1"),
    "include_excluded": ({"type": "boolean", "default": False}, "API-123: also list bot and spam sessions"),
}
_COMMON = ("date_range", "start_date", "end_date", "format")
_PAGED = (*_COMMON, "limit", "cursor", "order")


def _parameter(name: str) -> dict[str, Any]:
    schema, description = DATA_PARAMETERS[name]
    param = {"name": name, "in": "query", "required": False, "schema": {**schema}, "description": description}
    if schema["type"] == "array":
        param.update(style="form", explode=False)
    return param


def _read(summary: str, ok: dict[str, Any], params: list[dict[str, Any]], errs: tuple[int, ...]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [{"bearerAuth": []}],
            "parameters": params,
            "responses": {**ok, **_errors(*errs)},
        }
    }


def _data(summary: str, out: type[BaseModel], names: tuple[str, ...]) -> dict[str, Any]:
    """A §8.6 list or report: JSON by default, the same rows as streamed CSV (API-122)."""
    ok = _json(_ref(out), "JSON, or the rows as CSV with format=csv or Accept: text/csv (API-122)")
    ok["content"]["text/csv"] = {"schema": {"type": "string"}}
    return _read(summary, {"200": ok}, [_parameter(n) for n in names], (400, 401, 429, 503))


@cache
def document() -> dict[str, Any]:
    _, defs = models_json_schema([(m, "validation") for m in MODELS], ref_template="#/components/schemas/{model}")
    def one_of(*ms: type[BaseModel]) -> dict[str, Any]:
        return {"oneOf": [_ref(m) for m in ms]}

    write_errs = (400, 401, 413, 415, 429, 503)
    paths: dict[str, Any] = {
        "/sessions": _write(
            "Record a landing or navigation touch",
            one_of(s.SessionWrapped, s.SessionIn),
            {"202": _json(_ref(s.SessionOut), "Accepted")},
            (*write_errs, 422),
        ),
        "/events": _write(
            "Record journey steps",
            {"oneOf": [_ref(s.EventsWrapped), _ref(s.EventWrapped),
                       {"type": "array", "items": _ref(s.EventIn), "minItems": 1, "maxItems": 500},
                       _ref(s.FlatEventIn)]},
            {"202": _json(_ref(s.EventsOut), "Accepted (rejected events are listed)")},
            write_errs,
        ),
        "/conversions": _write(
            "Record an outcome and get its attribution",
            one_of(s.ConversionWrapped, s.ConversionIn),
            {
                "201": _json(_ref(s.ConversionOut), "Created and attributed"),
                "200": _json(_ref(s.ConversionOut), "Duplicate idempotency key"),
                "202": _json(_ref(s.ConversionOut), "Accepted, attribution pending"),
            },
            (*write_errs, 422),
        ),
        "/identify": _write(
            "Link a visitor to a user and store traits",
            one_of(s.IdentifyWrapped, s.IdentifyIn),
            {"200": _json(_ref(s.IdentifyOut), "Identified"), "202": _json(_ref(s.IdentifyOut), "Pending")},
            (*write_errs, 422),
        ),
        "/validate": {
            "get": {
                "summary": "Check an API key",
                "security": [{"bearerAuth": []}],
                "responses": {"200": _json(_ref(s.ValidateOut), "Valid key"), **_errors(401, 429)},
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness (deep=1 also checks the database, Redis and the Shopify API version)",
                "security": [],
                "parameters": [{"name": "deep", "in": "query", "required": False, "schema": {"type": "string"}}],
                "responses": {"200": _json(_ref(s.HealthOut), "Healthy"),
                              "503": _json(_ref(s.HealthOut), "A dependency is down")},
            }
        },
        "/data/conversions": _data(
            "List conversions with their attribution (API-124)", s.DataConversionsOut,
            (*_PAGED, "conversion_type", "funnel", "visitor_id", "user_id", "channels", "model", "status"),
        ),
        "/data/conversions/{id}": _read(
            "One conversion, e.g. polled after a pending answer (API-125)",
            {"200": _json(_ref(s.DataConversionOut), "The conversion")},
            [{"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
              "description": "conv_ id, case-insensitive (API-5)"}],
            (401, 404, 429, 503),
        ),
        "/data/events": _data(
            "List events (API-126)", s.DataEventsOut,
            (*_PAGED, "event_type", "funnel", "visitor_id", "user_id", "session_id", "include_excluded"),
        ),
        "/data/sessions": _data(
            "List sessions (API-127)", s.DataSessionsOut,
            (*_PAGED, "visitor_id", "user_id", "channels", "include_excluded"),
        ),
        "/data/attribution": _data(
            "The channel report: credit per model, channel and currency (API-128)", s.DataAttributionOut,
            (*_COMMON, "conversion_type", "funnel", "channels", "model"),
        ),
    }
    _add_examples(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Multibuzz API", "version": "1.0.0"},
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


@bp.route("/openapi.json", methods=["GET"])
def openapi() -> Response:
    resp = Response(orjson.dumps(document()), mimetype="application/json")
    resp.headers["Content-Type"] = "application/json; charset=utf-8"
    return resp
