"""The OpenAPI document (api.md §11 API-160, API-161): its shape, and every fixture of ``fixtures/api/`` checked
both against the pydantic models that validate requests and shape responses, and against the served document."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema_rs
import pytest
from flask.testing import FlaskClient
from pydantic import BaseModel, TypeAdapter

from gateway.api import schemas as s
from gateway.api.openapi import document
from tests.conftest import AccountKeys
from tests.integration.helpers import FIXTURES, ago, post, touch

ENDPOINTS: dict[str, str] = {
    "/sessions": "post",
    "/events": "post",
    "/conversions": "post",
    "/identify": "post",
    "/validate": "get",
    "/health": "get",
    "/data/conversions": "get",
    "/data/conversions/{id}": "get",
    "/data/events": "get",
    "/data/sessions": "get",
    "/data/attribution": "get",
}
DATA_LISTS = ("/data/conversions", "/data/events", "/data/sessions", "/data/attribution")  # JSON or CSV (API-122)

# request fixture name -> endpoint and the model union of its body (API-70, API-80, API-90, API-100)
REQUEST_TYPES: dict[str, tuple[str, Any]] = {
    "sessions": ("/sessions", s.SessionWrapped | s.SessionIn),
    "compat_python_0_10_session": ("/sessions", s.SessionWrapped | s.SessionIn),
    "compat_sgtm_session": ("/sessions", s.SessionWrapped | s.SessionIn),
    "events": ("/events", s.EventsWrapped | s.EventWrapped | list[s.EventIn] | s.FlatEventIn),
    "compat_php_event": ("/events", s.EventsWrapped | s.EventWrapped | list[s.EventIn] | s.FlatEventIn),
    "conversion": ("/conversions", s.ConversionWrapped | s.ConversionIn),
    "identify": ("/identify", s.IdentifyWrapped | s.IdentifyIn),
}

# response fixture -> (endpoint, status, model); error bodies are checked on every endpoint documenting them
RESPONSES: dict[str, tuple[str, int, type[BaseModel]]] = {
    "conversion_response_created.json": ("/conversions", 201, s.ConversionOut),
    "conversion_response_duplicate.json": ("/conversions", 200, s.ConversionOut),
    "conversion_response_pending.json": ("/conversions", 202, s.ConversionOut),
    "events_batch_response.json": ("/events", 202, s.EventsOut),
    "sessions_response.json": ("/sessions", 202, s.SessionOut),
    "identify_response.json": ("/identify", 200, s.IdentifyOut),
    "identify_response_pending.json": ("/identify", 202, s.IdentifyOut),
    "validate_response.json": ("/validate", 200, s.ValidateOut),
    "health_response.json": ("/health", 200, s.HealthOut),
    "data_attribution_response.json": ("/data/attribution", 200, s.DataAttributionOut),
}
ERRORS: dict[str, tuple[int, type[BaseModel]]] = {
    "error_400_invalid_json.json": (400, s.ErrorOut),
    "error_401_invalid_key.json": (401, s.ErrorOut),
    "error_401_missing_header.json": (401, s.ErrorOut),
    "error_413_too_many_events.json": (413, s.ErrorOut),
    "error_422_conversion.json": (422, s.UnprocessableOut),
    "error_422_identify.json": (422, s.UnprocessableOut),
    "error_429_rate_limited.json": (429, s.RateLimitedOut),
}


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _request_fixtures() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*_request*.json"))


def _request_type(name: str) -> tuple[str, Any]:
    stem = name.removesuffix(".json").removesuffix("_flat").removesuffix("_request")
    for prefix in sorted(REQUEST_TYPES, key=len, reverse=True):
        if stem == prefix or stem.startswith(prefix + "_"):
            return REQUEST_TYPES[prefix]
    raise AssertionError(f"no request model known for fixture {name}")


@cache
def _validator(pointer: str) -> jsonschema_rs.Validator:
    """A JSON Schema 2020-12 validator (OpenAPI 3.1's dialect) for a schema inside the served document."""
    root = dict(document())
    root["$ref"] = pointer
    return jsonschema_rs.Draft202012Validator(root)


def _doc_errors(pointer: str, instance: Any) -> list[str]:
    return [f"{e.instance_path}: {e.message}" for e in _validator(pointer).iter_errors(instance)]


def _escape(path: str) -> str:
    """A path as a JSON pointer token inside a URI fragment (``{id}`` must be percent-encoded there)."""
    return quote(path.replace("~", "~0").replace("/", "~1"), safe="~")


# ------------------------------------------------------------------------------------------ the document


def test_API160_document_is_openapi_31_with_every_endpoint(client: FlaskClient) -> None:
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    doc = resp.get_json()
    assert doc["openapi"].startswith("3.1")
    assert doc == json.loads(json.dumps(document()))  # generated from the models, not hand-written
    for path, method in ENDPOINTS.items():
        assert method in doc["paths"][path], path
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}


def test_API160_openapi_needs_no_key_and_is_not_limited(client: FlaskClient) -> None:
    for _ in range(30):
        assert client.get("/api/v1/openapi.json").status_code == 200


def test_API160_security_and_documented_statuses() -> None:
    doc = document()
    for path, method in ENDPOINTS.items():
        op = doc["paths"][path][method]
        expected_security: list[dict[str, list[str]]] = [] if path == "/health" else [{"bearerAuth": []}]
        assert op["security"] == expected_security, path
        for status, response in op["responses"].items():
            csv = path in DATA_LISTS and status == "200"
            assert set(response["content"]) == {"application/json", *(["text/csv"] if csv else [])}, (path, status)
    for path in ("/sessions", "/conversions", "/identify"):
        assert {"400", "401", "413", "415", "422", "429", "503"} <= set(doc["paths"][path]["post"]["responses"])
    assert {"202", "400", "401", "413", "415", "429", "503"} <= set(doc["paths"]["/events"]["post"]["responses"])
    assert {"200", "201", "202"} <= set(doc["paths"]["/conversions"]["post"]["responses"])
    assert {"200", "202"} <= set(doc["paths"]["/identify"]["post"]["responses"])
    assert {"200", "401", "429"} <= set(doc["paths"]["/validate"]["get"]["responses"])
    for path in DATA_LISTS:
        assert {"200", "400", "401", "429"} <= set(doc["paths"][path]["get"]["responses"]), path
    assert {"200", "401", "404", "429"} <= set(doc["paths"]["/data/conversions/{id}"]["get"]["responses"])


def test_API160_data_parameters_are_the_ones_the_views_read() -> None:
    """API-120..API-128: each data endpoint documents its filters; comma lists are form-style arrays."""
    doc = document()

    def names(path: str) -> set[str]:
        return {p["name"] for p in doc["paths"][path]["get"]["parameters"]}

    common = {"date_range", "start_date", "end_date", "format"}
    paged = common | {"limit", "cursor", "order"}
    assert names("/data/conversions") == paged | {"conversion_type", "funnel", "visitor_id", "user_id", "channels",
                                                  "model", "status"}
    assert names("/data/events") == paged | {"event_type", "funnel", "visitor_id", "user_id", "session_id",
                                             "include_excluded"}
    assert names("/data/sessions") == paged | {"visitor_id", "user_id", "channels", "include_excluded"}
    assert names("/data/attribution") == common | {"conversion_type", "funnel", "channels", "model"}
    channels = next(p for p in doc["paths"]["/data/sessions"]["get"]["parameters"] if p["name"] == "channels")
    assert (channels["style"], channels["explode"], channels["schema"]["type"]) == ("form", False, "array")
    (detail,) = doc["paths"]["/data/conversions/{id}"]["get"]["parameters"]
    assert (detail["in"], detail["required"]) == ("path", True)


def test_API160_both_body_forms_and_lenient_types() -> None:
    doc = document()
    forms = {path: doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
             for path in ("/sessions", "/events", "/conversions", "/identify")}
    refs = {path: [f.get("$ref", f.get("type")) for f in one_of] for path, one_of in forms.items()}
    assert refs["/sessions"] == ["#/components/schemas/SessionWrapped", "#/components/schemas/SessionIn"]
    assert refs["/conversions"] == ["#/components/schemas/ConversionWrapped", "#/components/schemas/ConversionIn"]
    assert refs["/identify"] == ["#/components/schemas/IdentifyWrapped", "#/components/schemas/IdentifyIn"]
    # events: {"events": [...]} / {"events": {...}}, {"event": {...}}, [...], flat
    assert refs["/events"] == ["#/components/schemas/EventsWrapped", "#/components/schemas/EventWrapped", "array",
                               "#/components/schemas/FlatEventIn"]
    schemas = doc["components"]["schemas"]
    events = schemas["EventsWrapped"]["properties"]["events"]["anyOf"]
    assert [e.get("type", e.get("$ref")) for e in events] == ["array", "#/components/schemas/EventIn"]
    types = {t.get("type") for t in schemas["ConversionIn"]["properties"]["revenue"]["anyOf"]}
    assert {"number", "string"} <= types
    props = {t.get("type") for t in schemas["EventIn"]["properties"]["properties"]["anyOf"]}
    assert {"object", "array"} <= props
    assert {t.get("type") for t in schemas["IdentifyIn"]["properties"]["user_id"]["anyOf"]} == {"string", "integer"}


# ------------------------------------------------------------------------------------------ the fixtures


def test_API161_every_fixture_is_covered() -> None:
    names = {p.name for p in FIXTURES.glob("*.json")}
    covered = set(_request_fixtures()) | set(RESPONSES) | set(ERRORS)
    assert names - covered == set(), "fixtures without a schema check"
    assert covered - names == set(), "checked fixtures that no longer exist"


@pytest.mark.parametrize("name", _request_fixtures())
def test_API161_request_fixture_matches_models_and_document(name: str) -> None:
    path, model = _request_type(name)
    body = _load(name)
    TypeAdapter(model).validate_python(body)
    pointer = f"#/paths/{_escape(path)}/post/requestBody/content/application~1json/schema"
    assert _doc_errors(pointer, body) == []


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_API161_response_fixture_matches_models_and_document(name: str) -> None:
    path, status, model = RESPONSES[name]
    body = _load(name)
    model.model_validate(body, strict=True)
    method = ENDPOINTS[path]
    pointer = f"#/paths/{_escape(path)}/{method}/responses/{status}/content/application~1json/schema"
    assert _doc_errors(pointer, body) == []


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_API161_error_fixture_matches_models_and_document(name: str) -> None:
    status, model = ERRORS[name]
    body = _load(name)
    model.model_validate(body, strict=True)
    documented = [(path, method) for path, method in ENDPOINTS.items()
                  if str(status) in document()["paths"][path][method]["responses"]]
    assert documented, f"status {status} is documented nowhere"
    for path, method in documented:
        pointer = f"#/paths/{_escape(path)}/{method}/responses/{status}/content/application~1json/schema"
        assert _doc_errors(pointer, body) == [], (path, status)


def test_API161_data_answers_with_rows_match_the_document(client: FlaskClient, acct: AccountKeys) -> None:
    """Schemathesis' fresh accounts only ever see empty lists; here every row schema meets a real row."""
    touch(client, acct, "v-doc", "https://acme.test/?utm_source=google&utm_medium=cpc&gclid=abc", ago(hours=2),
          session_id="s-doc")
    assert post(client, acct, "/events", {"event_type": "add_to_cart", "visitor_id": "v-doc",
                                          "properties": {"sku": "A-1"}}).status_code == 202
    created = post(client, acct, "/conversions", {"conversion_type": "purchase", "visitor_id": "v-doc",
                                                  "revenue": "10.00", "currency": "USD"})
    assert created.status_code == 201, created.get_json()
    answers = {
        "/data/conversions": ("/data/conversions", s.DataConversionsOut),
        "/data/conversions/{id}": (f"/data/conversions/{created.get_json()['id']}", s.DataConversionOut),
        "/data/events": ("/data/events", s.DataEventsOut),
        "/data/sessions": ("/data/sessions", s.DataSessionsOut),
        "/data/attribution": ("/data/attribution", s.DataAttributionOut),
    }
    for documented, (url, model) in answers.items():
        resp = client.get(f"/api/v1{url}", query_string={"date_range": "7d"}, headers=acct.headers())
        assert resp.status_code == 200, (url, resp.get_json())
        body = resp.get_json()
        model.model_validate(body)
        assert body.get("data", [body]), url  # a row to check, not an empty list
        pointer = f"#/paths/{_escape(documented)}/get/responses/200/content/application~1json/schema"
        assert _doc_errors(pointer, body) == [], url


def test_API161_rejected_event_in_batch_does_not_fail_the_request_schema() -> None:
    """The batch fixture's second event has no event_type: the request is valid, the event is rejected."""
    body = _load("events_batch_request.json")
    assert "event_type" not in body["events"][1]
    assert _doc_errors("#/components/schemas/EventsWrapped", body) == []
    assert _doc_errors("#/components/schemas/FlatEventIn", {"visitor_id": "v"}) != []


def test_API161_fixtures_are_json_objects() -> None:
    for p in sorted(Path(FIXTURES).glob("*.json")):
        assert isinstance(_load(p.name), dict), p.name


def test_API160_fixture_examples_are_in_the_document_and_equal_to_the_fixtures() -> None:
    from gateway.api.openapi import EXAMPLES, EXAMPLES_DIR, document

    doc = document()
    listed = {name for table in EXAMPLES.values() for names in table.values() for name in names}
    for name in listed:
        shipped = json.loads((EXAMPLES_DIR / f"{name}.json").read_text())
        assert shipped == json.loads((FIXTURES / f"{name}.json").read_text()), name
    examples = doc["paths"]["/conversions"]["post"]["responses"]["201"]["content"]["application/json"]["examples"]
    assert "conversion_response_created" in examples
