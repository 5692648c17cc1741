"""A v1 tag updated to the v2 template keeps its settings (docs/sgtm.md SGTM-4-D1, SGTM-35, SGTM-37).

When a template is updated in a GTM container, each tag keeps its saved values by parameter `name`; a parameter
that was renamed loses its value. The published v1 template (mbuzz-sgtm 1.0.0, the `User-Agent: mbuzz-sgtm/1.0.0`
of F17a-F17e) named most of its settings differently from v2, so v2 keeps every v1 name, with v1's type, and its
code reads each one as a fallback for the v2 setting it stands for. These tests run the real template under the Node
harness and prove that a tag saved with v1's names and values sends, under v2, exactly what the same configuration
written with v2's names sends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.sgtm.distribution import served_template, split_sections
from tests.unit.connectors.sgtm.test_template_harness import TEMPLATE, Recorder, pytestmark, recorder, run_harness, same

__all__ = ["pytestmark", "recorder"]

# The published v1 template's parameters (mbuzz-sgtm 1.0.0), name -> GTM type. Its `advancedSettings` GROUP held no
# value of its own, so it is not listed.
V1_PARAMETERS = {
    "apiKey": "TEXT",
    "callType": "SELECT",
    "eventType": "TEXT",
    "revenue": "TEXT",
    "currency": "TEXT",
    "userId": "TEXT",
    "customProperties": "SIMPLE_TABLE",
    "apiUrl": "TEXT",
    "cookieDomain": "TEXT",
    "cookiePath": "TEXT",
    "debug": "CHECKBOX",
}
V1_CALL_TYPES = ["session", "event", "conversion", "identify"]
V1_DEFAULT_API_URL = "https://mbuzz.co/api/v1"
# Names v1 and v2 share with the same meaning; the others exist in v2 only for v1 tags.
SHARED_NAMES = {"apiKey", "customProperties", "cookieDomain", "cookiePath"}
# Parameters v1 did not have: a v1 tag updated in a container may hold no value for them at all.
V2_ONLY_NAMES = [
    "endpointUrl", "callMode", "explicitCall", "explicitName", "explicitUserId", "eventMap", "conversionEvents",
    "consentPolicy", "cookieHttpOnly", "cookieMaxAgeDays", "logType", "optimistic", "timeoutMs",
]  # fmt: skip
HOSTED_COLLECT_URL = "https://api.mbuzz.co/sgtm/v1/collect"

API_KEY = "sk_live_0f1e2d3c4b5a69788796a5b4c3d2e1f0"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/138.0"
NOW_MS = 1779247200000
EVENT = {
    "event_name": "form_submit",
    "event_id": "evt_7c1d",
    "client_id": "1234567890.1779247000",
    "page_location": "https://site.example/contact?utm_source=newsletter",
    "page_referrer": "https://site.example/",
    "page_title": "Contact",
    "ip_override": "203.0.113.9",
    "user_agent": USER_AGENT,
    "x-ga-gcs": "G111",
}
REQUEST = {"cookies": {}, "headers": {"user-agent": USER_AGENT}, "remote_address": "203.0.113.9"}
PROPERTIES = [{"key": "form_name", "value": "Contact Us"}]


def _flat_parameters() -> dict[str, dict[str, Any]]:
    params = json.loads(dict(split_sections(TEMPLATE.read_text(encoding="utf-8")))["TEMPLATE_PARAMETERS"])
    out: dict[str, dict[str, Any]] = {}
    pending = list(params)
    while pending:
        param = pending.pop(0)
        pending.extend(param.get("subParams", []))
        if param["type"] != "GROUP":
            out[param["name"]] = param
    return out


# --------------------------------------------------------------------------------------------------------------------
# Structure: v1's names are all still there
# --------------------------------------------------------------------------------------------------------------------


def test_SGTM4_D1_every_v1_parameter_name_is_in_the_v2_template_with_its_type() -> None:
    params = _flat_parameters()
    missing = sorted(set(V1_PARAMETERS) - set(params))
    assert not missing, f"a v1 tag updated to this template would lose these settings: {missing}"
    for name, kind in V1_PARAMETERS.items():
        assert params[name]["type"] == kind, f"{name}: a v1 value of type {kind} would not fit"


def test_SGTM4_D1_the_v1_call_types_are_offered_and_tables_keep_their_columns() -> None:
    params = _flat_parameters()
    assert [item["value"] for item in params["callType"]["selectItems"]] == V1_CALL_TYPES
    assert [c["name"] for c in params["customProperties"]["simpleTableColumns"]] == ["key", "value"]


def test_SGTM4_D1_a_new_tag_carries_no_v1_value() -> None:
    """Only tags saved under v1 hold v1 values: a tag created from v2 gets none, so no fallback applies to it."""
    params = _flat_parameters()
    for name in sorted(set(V1_PARAMETERS) - SHARED_NAMES):
        default = params[name].get("defaultValue")
        assert default in (None, "", False), f"{name} defaults to {default!r}: new tags would behave as v1 tags"


# --------------------------------------------------------------------------------------------------------------------
# Behaviour: the v1 names send what the v2 names send
# --------------------------------------------------------------------------------------------------------------------


def v1_tag(base_url: str, **settings: Any) -> dict[str, Any]:
    """A tag as v1 saved it: v1's names only, `cookieDomain` left blank (v1's "auto-detect")."""
    return {"apiKey": API_KEY, "apiUrl": f"{base_url}/api/v1", "cookieDomain": "", "cookiePath": "/",
            "debug": False} | settings  # fmt: skip


def v2_tag(base_url: str, **settings: Any) -> dict[str, Any]:
    return {"apiKey": API_KEY, "endpointUrl": f"{base_url}/sgtm/v1/collect", "callMode": "explicit",
            "cookieDomain": "auto", "cookiePath": "/"} | settings  # fmt: skip


def without_v2_values(params: dict[str, Any]) -> dict[str, Any]:
    """The same tag when the container stored nothing for the parameters v1 did not have."""
    return {name: None for name in V2_ONLY_NAMES} | params


# id -> (v1 settings, v2 settings, event data the v2 tag needs for the same result)
EQUIVALENT_TAGS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "session": ({"callType": "session"}, {"explicitCall": "session"}, {}),
    "event": (
        {"callType": "event", "eventType": "contact_form", "customProperties": PROPERTIES},
        {"explicitCall": "event", "explicitName": "contact_form", "customProperties": PROPERTIES},
        {},
    ),
    "event named by GA4": ({"callType": "event"}, {"explicitCall": "event"}, {}),
    "conversion": (
        {"callType": "conversion", "eventType": "lead", "revenue": "49.50", "currency": "eur",
         "customProperties": PROPERTIES},
        {"explicitCall": "conversion", "explicitName": "lead", "customProperties": PROPERTIES},
        {"value": 49.5, "currency": "EUR"},
    ),  # fmt: skip
    "identify": (
        {"callType": "identify", "userId": "crm-42", "customProperties": [{"key": "plan", "value": "pro"}]},
        {"explicitCall": "identify", "explicitUserId": "crm-42", "customProperties": [{"key": "plan", "value": "pro"}]},
        {},
    ),
}


def run_tag(recorder: Recorder, tmp_path: Path, params: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    template = tmp_path / "served.tpl"
    template.write_text(served_template(recorder.base_url), encoding="utf-8")
    scenario = {"params": params, "event_data": event, "request": REQUEST, "now_ms": NOW_MS, "container": {}}
    result = run_harness("run", scenario, template)
    assert "errors" not in result, result.get("errors")
    return result


def sent(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: request[k] for k in ("method", "url", "headers", "timeout", "body")}
            for request in result["http_requests"]]  # fmt: skip


@pytest.mark.parametrize("stored", ["v2 defaults filled in", "v2 values absent"])
@pytest.mark.parametrize("case", list(EQUIVALENT_TAGS))
def test_SGTM4_D1_a_v1_tag_sends_what_the_same_v2_tag_sends(
    case: str, stored: str, recorder: Recorder, tmp_path: Path
) -> None:
    v1_settings, v2_settings, v2_event = EQUIVALENT_TAGS[case]
    v1_params = v1_tag(recorder.base_url, **v1_settings)
    if stored == "v2 values absent":
        v1_params = without_v2_values(v1_params)

    as_v1 = run_tag(recorder, tmp_path, v1_params, EVENT)
    as_v2 = run_tag(recorder, tmp_path, v2_tag(recorder.base_url, **v2_settings), EVENT | v2_event)

    assert as_v1["outcome"] == as_v2["outcome"] == "gtmOnSuccess"
    assert len(as_v1["http_requests"]) == 1
    assert same(sent(as_v1), sent(as_v2)), json.dumps([sent(as_v1), sent(as_v2)], indent=2)
    assert as_v1["cookies_set"] == as_v2["cookies_set"]
    # What a user sees: the v1 tag now posts a v2 payload of its call type to this deployment's collect endpoint.
    assert [r["path"] for r in recorder.requests] == ["/sgtm/v1/collect"] * 2
    body = as_v1["http_requests"][0]["body"]
    assert body["call"] == v1_settings["callType"]
    assert as_v1["http_requests"][0]["headers"]["Authorization"] == f"Bearer {API_KEY}"


def test_SGTM4_D1_a_v1_conversion_sends_its_revenue_and_currency(recorder: Recorder, tmp_path: Path) -> None:
    settings = EQUIVALENT_TAGS["conversion"][0]
    body = run_tag(recorder, tmp_path, v1_tag(recorder.base_url, **settings), EVENT)["http_requests"][0]["body"]
    assert (body["conversion_type"], body["value"], body["currency"]) == ("lead", 49.5, "EUR")


def test_SGTM4_D1_event_data_wins_over_v1_revenue_and_currency(recorder: Recorder, tmp_path: Path) -> None:
    settings = EQUIVALENT_TAGS["conversion"][0]
    event = EVENT | {"value": 120, "currency": "aud"}
    body = run_tag(recorder, tmp_path, v1_tag(recorder.base_url, **settings), event)["http_requests"][0]["body"]
    assert (body["value"], body["currency"]) == (120, "AUD")


def test_SGTM4_D1_v2_settings_win_over_v1_leftovers(recorder: Recorder, tmp_path: Path) -> None:
    """A tag switched to explicit event mode in the v2 editor ignores the v1 call type and name it still holds."""
    params = v2_tag(recorder.base_url, explicitCall="event", explicitName="contact_form") | {
        "callType": "conversion", "eventType": "lead", "revenue": "49.50", "currency": "EUR"}
    body = run_tag(recorder, tmp_path, params, EVENT)["http_requests"][0]["body"]
    assert (body["call"], body["event_type"]) == ("event", "contact_form")
    assert "conversion_type" not in body and "value" not in body


def test_SGTM4_D1_a_v1_tag_without_call_type_is_an_auto_tag(recorder: Recorder, tmp_path: Path) -> None:
    params = v2_tag(recorder.base_url, callMode="auto") | {"callType": None, "eventType": "ignored"}
    body = run_tag(recorder, tmp_path, params, EVENT)["http_requests"][0]["body"]
    assert body["call"] == "auto" and "event_type" not in body


@pytest.mark.parametrize(
    ("debug", "log_type", "logged"),
    [(True, None, True), (True, "debug", True), (False, None, False), (True, "no", False)],
)
def test_SGTM4_D1_v1_debug_logging_logs_every_run(
    debug: bool, log_type: str | None, logged: bool, recorder: Recorder, tmp_path: Path
) -> None:
    """v1's debug checkbox logged outside preview too; it counts while Logging is at its default ("debug")."""
    params = v1_tag(recorder.base_url, callType="event", debug=debug) | {"logType": log_type}
    logs = run_tag(recorder, tmp_path, params, EVENT)["logs"]
    assert bool(logs) is logged, logs
    if logged:
        assert [json.loads(line)["Type"] for line in logs] == ["Request", "Response"]
        assert API_KEY not in "".join(logs)


# --------------------------------------------------------------------------------------------------------------------
# Where a v1 tag posts: its API URL names the host (tests mode, sendHttpRequest mocked: no request leaves the machine)
# --------------------------------------------------------------------------------------------------------------------

SELF_HOSTED = "https://mb.example.com"

COLLECT_URLS = [
    # (apiUrl, endpointUrl, expected collect URL); None = no stored value
    (V1_DEFAULT_API_URL, HOSTED_COLLECT_URL, HOSTED_COLLECT_URL),
    (V1_DEFAULT_API_URL, None, HOSTED_COLLECT_URL),
    (V1_DEFAULT_API_URL + "/", None, HOSTED_COLLECT_URL),
    (None, None, HOSTED_COLLECT_URL),
    (f"{SELF_HOSTED}/api/v1", HOSTED_COLLECT_URL, f"{SELF_HOSTED}/sgtm/v1/collect"),
    (f"{SELF_HOSTED}/api/v1/", None, f"{SELF_HOSTED}/sgtm/v1/collect"),
    (f"{SELF_HOSTED}/mbuzz", "", f"{SELF_HOSTED}/mbuzz/sgtm/v1/collect"),
    (f"{SELF_HOSTED}/api/v1", f"{SELF_HOSTED}/sgtm/v1/collect", f"{SELF_HOSTED}/sgtm/v1/collect"),
    (f"{SELF_HOSTED}/api/v1", f"{SELF_HOSTED}/edge/collect", f"{SELF_HOSTED}/edge/collect"),
]


def _collect_url_scenario(api_url: str | None, endpoint_url: str | None, expected: str) -> dict[str, Any]:
    params = {"apiKey": API_KEY, "callType": "event", "apiUrl": api_url, "endpointUrl": endpoint_url}
    return {
        "name": f"apiUrl {api_url!r} with endpointUrl {endpoint_url!r} posts to {expected}",
        "code": f"runCode({json.dumps(params)});\n"
        f"assertThat(urls).isEqualTo([{json.dumps(expected)}]);\n"
        "assertApi('gtmOnSuccess').wasCalled();",
    }


def test_SGTM4_D1_a_v1_api_url_names_the_collect_host(tmp_path: Path) -> None:
    setup = "\n".join([
        f"const EVENT = {json.dumps(EVENT)};",
        "mock('getEventData', function (key) { return EVENT[key]; });",
        "mock('getCookieValues', function () { return []; });",
        "mock('getRemoteAddress', '203.0.113.9');",
        "mock('getRequestHeader', function () { return undefined; });",
        f"mock('getTimestampMillis', {NOW_MS});",
        "mock('getContainerVersion', {debugMode: false, previewMode: false});",
        "const urls = [];",
        "mock('sendHttpRequest', function (url, callback) { urls.push(url); callback(202, {}, '{}'); });",
    ])  # fmt: skip
    template = tmp_path / "served.tpl"
    template.write_text(served_template(SELF_HOSTED), encoding="utf-8")
    scenarios = [_collect_url_scenario(*case) for case in COLLECT_URLS]
    result = run_harness("tests", {"setup": setup, "scenarios": scenarios}, template)
    failures = {s["name"]: s.get("error", "") for s in result["scenarios"] if not s["passed"]}
    assert not failures, json.dumps(failures, indent=2)
    assert result["passed"] == len(COLLECT_URLS)
