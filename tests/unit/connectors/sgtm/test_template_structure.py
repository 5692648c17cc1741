"""Structure of the sGTM tag template (sgtm.md SGTM-41): sections, info, parameters, permissions, sandbox, tests."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
CONNECTOR = ROOT / "connectors" / "sgtm"
TEMPLATE = CONNECTOR / "template.tpl"

SECTION_ORDER = [
    "TERMS_OF_SERVICE",
    "INFO",
    "TEMPLATE_PARAMETERS",
    "SANDBOXED_JS_FOR_SERVER",
    "SERVER_PERMISSIONS",
    "TESTS",
    "NOTES",
]

EXPECTED_INFO = {
    "type": "TAG",
    "id": "cvt_temp_public_id",
    "version": 1,
    "securityGroups": [],
    "displayName": "Multibuzz - Server-Side Attribution",
    "categories": ["ANALYTICS", "ATTRIBUTION", "CONVERSIONS"],
    "brand": {"id": "github.com_multibuzz", "displayName": "Multibuzz"},
    "description": (
        "Sends GA4 events from a server container to Multibuzz for multi-touch attribution. One tag handles every "
        "event, reads an allowlist of event data and honours consent."
    ),
    "containerContexts": ["SERVER"],
}

# SGTM-4: name -> (type, default or _NONE, validators, items)
_NONE = object()
EXPECTED_PARAMS: dict[str, dict[str, Any]] = {
    "apiKey": {
        "type": "TEXT",
        "default": _NONE,
        "validators": [
            ("NON_EMPTY", None),
            ("REGEX", "^(pk_sgtm_(live|test)_[0-9a-f]{32}|sk_(live|test)_[0-9a-f]{32})$"),
        ],
    },
    "endpointUrl": {
        "type": "TEXT",
        "default": "https://api.mbuzz.co/sgtm/v1/collect",
        "validators": [("NON_EMPTY", None), ("REGEX", r"^https?://[^/\s]+(/\S*)?$")],
    },
    "callMode": {"type": "RADIO", "default": "auto", "items": ["auto", "explicit"]},
    "explicitCall": {
        "type": "SELECT",
        "default": "event",
        "items": ["session", "event", "conversion", "identify"],
        "enabled_by": {"callMode"},
    },
    "explicitName": {
        "type": "TEXT",
        "default": "",
        "validators": [("REGEX", "^[A-Za-z0-9_.:-]{0,100}$")],
        "enabled_by": {"callMode", "explicitCall"},
    },
    "explicitUserId": {"type": "TEXT", "default": "", "enabled_by": {"callMode", "explicitCall"}},
    "eventMap": {"type": "SIMPLE_TABLE", "default": _NONE, "enabled_by": {"callMode"}},
    "conversionEvents": {
        "type": "TEXT",
        "default": "",
        "validators": [("REGEX", "^[A-Za-z0-9_, ]*$")],
        "enabled_by": {"callMode"},
    },
    "customProperties": {"type": "SIMPLE_TABLE", "default": _NONE},
    "consentPolicy": {"type": "SELECT", "default": "honour_signal", "items": ["honour_signal", "require_granted"]},
    "cookieDomain": {"type": "TEXT", "default": "auto", "validators": [("NON_EMPTY", None)]},
    "cookiePath": {"type": "TEXT", "default": "/", "validators": [("NON_EMPTY", None)]},
    "cookieHttpOnly": {"type": "CHECKBOX", "default": False},
    "cookieMaxAgeDays": {"type": "TEXT", "default": "730", "validators": [("REGEX", "^[1-9][0-9]{0,2}$")]},
    "logType": {"type": "RADIO", "default": "debug", "items": ["no", "debug", "always"]},
    "optimistic": {"type": "CHECKBOX", "default": False},
    "timeoutMs": {"type": "TEXT", "default": "5000", "validators": [("POSITIVE_NUMBER", None)]},
}

# docs/sgtm.md SGTM-4-D1: the published v1 template's names that v2 does not use for itself, kept so that a v1 tag
# updated to v2 keeps its values (tests/unit/connectors/sgtm/test_template_v1_names.py runs them). No defaults: new
# tags hold none.
V1_ONLY_PARAMS: dict[str, dict[str, Any]] = {
    "callType": {"type": "SELECT", "default": _NONE, "items": ["session", "event", "conversion", "identify"]},
    "eventType": {"type": "TEXT", "default": _NONE},
    "revenue": {"type": "TEXT", "default": _NONE},
    "currency": {"type": "TEXT", "default": _NONE},
    "userId": {"type": "TEXT", "default": _NONE},
    "apiUrl": {"type": "TEXT", "default": _NONE},
    "debug": {"type": "CHECKBOX", "default": False},
}
ALL_PARAMS = EXPECTED_PARAMS | V1_ONLY_PARAMS

EXPECTED_GROUPS = {
    "Consent": ["consentPolicy"],
    "Cookie": ["cookieDomain", "cookiePath", "cookieHttpOnly", "cookieMaxAgeDays"],
    "Advanced": ["logType", "optimistic", "timeoutMs"],
    "Settings kept from v1": list(V1_ONLY_PARAMS),
}

EVENT_DATA_KEYS = [
    "event_name", "event_id", "client_id", "ga_session_id", "ga_session_number", "user_id", "page_location",
    "page_referrer", "page_title", "language", "ip_override", "user_agent", "value", "currency", "transaction_id",
    "tax", "shipping", "coupon", "items", "user_data", "search_term", "method", "x-ga-gcs", "x-ga-mp1-tr",
    "consent_state",
]  # fmt: skip

EXPECTED_PERMISSIONS = {
    "read_event_data": {"eventDataAccess": "specific", "keyPatterns": EVENT_DATA_KEYS},
    "get_cookies": {"cookieAccess": "specific", "cookieNames": ["_mbuzz_vid"]},
    "set_cookies": {
        "allowedCookies": [{"name": "_mbuzz_vid", "domain": "*", "path": "*", "secure": "any", "session": "any"}]
    },
    "send_http": {"allowedUrls": "specific", "urls": ["https://*.mbuzz.co/*"]},
    "read_request": {
        "requestAccess": "specific",
        "headerAccess": "specific",
        "headersAllowed": True,
        "headerWhitelist": [{"headerName": "user-agent"}, {"headerName": "trace-id"}],
        "remoteAddressAllowed": True,
    },
    "read_container_data": {},
    "logging": {"environments": "all"},
}

ALLOWED_REQUIRES = {
    "getEventData", "getCookieValues", "setCookie", "sendHttpRequest", "getRemoteAddress", "getRequestHeader",
    "getTimestampMillis", "generateRandom", "sha256Sync", "parseUrl", "JSON", "makeString", "makeNumber",
    "makeInteger", "getType", "logToConsole", "getContainerVersion", "Math", "Object",
}  # fmt: skip

FORBIDDEN_TOKENS = ["new ", "typeof", "instanceof", "class ", "async", "await", "this.", "`", "RegExp"]

SCENARIO_NAMES = [
    "purchase auto sends one request with the expected body",
    "existing valid cookie is used and refreshed",
    "no cookie derives the visitor from client_id",
    "no cookie and no client_id generates 64 hex",
    "malformed cookie value is ignored",
    "denied purchase sends no identifiers and sets no cookie",
    "denied page_view sends nothing and succeeds",
    "require_granted without signal behaves as denied",
    "consent_state object is honoured when x-ga-gcs is absent",
    "measurement test ping is skipped",
    "explicit identify with empty user id is skipped",
    "explicit conversion sets call and conversion_type",
    "eventMap skip row suppresses the event",
    "conversionEvents turns a custom event into a conversion",
    "raw email is hashed and never sent",
    "items are capped at 50 and reduced to allowed keys",
    "non-2xx answer calls gtmOnFailure",
    "optimistic mode succeeds before the answer",
    "answer with a different visitor_id re-sets the cookie",
    "api key and user_data never appear in logs",
    "cookieHttpOnly and cookieMaxAgeDays reach setCookie",
    "missing event_name calls gtmOnFailure",
]

_HEADER = re.compile(r"^___([A-Z_]+)___$")


def parse_sections(text: str) -> list[tuple[str, str]]:
    """Split a GTM template file into (name, body) pairs in file order."""
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            sections.append((match.group(1), []))
        elif sections:
            sections[-1][1].append(line)
        elif line.strip():
            raise AssertionError(f"content before the first section: {line!r}")
    return [(name, "\n".join(lines).strip("\n")) for name, lines in sections]


def decode_value(value: dict[str, Any]) -> Any:
    kind = value["type"]
    if kind == 1:
        return value["string"]
    if kind == 2:
        return [decode_value(item) for item in value.get("listItem", [])]
    if kind == 3:
        keys = [decode_value(k) for k in value.get("mapKey", [])]
        values = [decode_value(v) for v in value.get("mapValue", [])]
        assert len(keys) == len(values)
        return dict(zip(keys, values, strict=True))
    if kind == 8:
        return value["boolean"]
    raise AssertionError(f"unexpected permission value type {kind}")


@pytest.fixture(scope="module")
def raw_text() -> str:
    return TEMPLATE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def sections(raw_text: str) -> dict[str, str]:
    return dict(parse_sections(raw_text))


@pytest.fixture(scope="module")
def params(sections: dict[str, str]) -> list[dict[str, Any]]:
    return json.loads(sections["TEMPLATE_PARAMETERS"])


def flatten(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for param in params:
        if param["type"] == "GROUP":
            out.extend(flatten(param.get("subParams", [])))
        else:
            out.append(param)
            out.extend(flatten(param.get("subParams", [])))
    return out


def strip_comments_and_strings(code: str) -> str:
    """Replace comments and string literals by spaces (quotes kept) so tokens inside them are ignored."""
    out: list[str] = []
    i = 0
    while i < len(code):
        ch = code[i]
        if code.startswith("//", i):
            end = code.find("\n", i)
            end = len(code) if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif code.startswith("/*", i):
            end = code.find("*/", i + 2)
            end = len(code) if end < 0 else end + 2
            out.append(" " * (end - i))
            i = end
        elif ch in "'\"":
            j = i + 1
            while j < len(code) and code[j] != ch:
                j += 2 if code[j] == "\\" else 1
            out.append(ch + " " * (j - i - 1) + ch)
            i = j + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------------------------------


def test_sections_in_order(raw_text: str) -> None:
    names = [name for name, _ in parse_sections(raw_text)]
    assert names == SECTION_ORDER
    for name in SECTION_ORDER:  # each header line is followed by a blank line, as GTM writes it
        assert f"___{name}___\n\n" in raw_text


def test_terms_of_service(sections: dict[str, str]) -> None:
    text = " ".join(sections["TERMS_OF_SERVICE"].split())
    assert "Google Tag Manager's Community Template Gallery Developer Terms of Service" in text
    assert "https://developers.google.com/tag-manager/gallery-tos" in text


def test_json_sections_are_valid(sections: dict[str, str]) -> None:
    for name in ("INFO", "TEMPLATE_PARAMETERS", "SERVER_PERMISSIONS"):
        json.loads(sections[name])


def test_info(sections: dict[str, str]) -> None:
    info = json.loads(sections["INFO"])
    thumbnail = info["brand"].pop("thumbnail")
    assert info == EXPECTED_INFO
    prefix = "data:image/png;base64,"
    assert thumbnail.startswith(prefix)
    png = base64.b64decode(thumbnail[len(prefix) :], validate=True)
    assert png == (CONNECTOR / "icon.png").read_bytes()


def test_icon_is_a_128_png() -> None:
    png = (CONNECTOR / "icon.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (128, 128)
    assert png[-8:-4] == b"IEND"


def test_template_version(sections: dict[str, str]) -> None:
    code = sections["SANDBOXED_JS_FOR_SERVER"]
    assert "const TEMPLATE_VERSION = '2.0.0';" in code
    assert "template_version: TEMPLATE_VERSION" in code
    assert "'mbuzz-sgtm/' + TEMPLATE_VERSION" in code


def test_parameter_names_types_and_defaults(params: list[dict[str, Any]]) -> None:
    """SGTM-4's parameters, plus v1's names that SGTM-4-D1 keeps."""
    flat = flatten(params)
    names = [p["name"] for p in flat]
    assert sorted(names) == sorted(ALL_PARAMS)
    assert len(names) == len(set(names))
    by_name = {p["name"]: p for p in flat}
    for name, expected in ALL_PARAMS.items():
        param = by_name[name]
        assert param["type"] == expected["type"], name
        if expected["default"] is _NONE:
            assert param.get("defaultValue") in (None, [], ""), name
        else:
            assert param.get("defaultValue") == expected["default"], name
        validators = [(v["type"], (v.get("args") or [None])[0]) for v in param.get("valueValidators", [])]
        assert validators == expected.get("validators", []), name
        if "items" in expected:
            key = "radioItems" if expected["type"] == "RADIO" else "selectItems"
            assert [item["value"] for item in param[key]] == expected["items"], name
        enabled_by = {c["paramName"] for c in param.get("enablingConditions", [])}
        assert enabled_by == expected.get("enabled_by", set()), name
    for regex_param in ("apiKey", "endpointUrl", "explicitName", "conversionEvents", "cookieMaxAgeDays"):
        for validator in by_name[regex_param].get("valueValidators", []):
            if validator["type"] == "REGEX":
                re.compile(validator["args"][0])


def test_simple_tables(params: list[dict[str, Any]]) -> None:
    by_name = {p["name"]: p for p in flatten(params)}
    event_map = {c["name"]: c for c in by_name["eventMap"]["simpleTableColumns"]}
    assert list(event_map) == ["ga4Event", "kind", "name"]
    assert event_map["ga4Event"]["type"] == "TEXT"
    assert [v["type"] for v in event_map["ga4Event"]["valueValidators"]] == ["NON_EMPTY"]
    assert event_map["kind"]["type"] == "SELECT"
    assert [i["value"] for i in event_map["kind"]["selectItems"]] == ["event", "conversion", "identify", "skip"]
    assert event_map["name"]["type"] == "TEXT"
    custom = [(c["name"], c["type"]) for c in by_name["customProperties"]["simpleTableColumns"]]
    assert custom == [("key", "TEXT"), ("value", "TEXT")]


def test_groups(params: list[dict[str, Any]]) -> None:
    groups = {p["displayName"]: p for p in params if p["type"] == "GROUP"}
    assert set(groups) == set(EXPECTED_GROUPS)
    for name, members in EXPECTED_GROUPS.items():
        assert groups[name]["groupStyle"] == "ZIPPY_CLOSED"
        assert [p["name"] for p in groups[name]["subParams"]] == members


def test_permissions_exactly(sections: dict[str, str]) -> None:
    entries = json.loads(sections["SERVER_PERMISSIONS"])
    decoded: dict[str, dict[str, Any]] = {}
    for entry in entries:
        public_id = entry["instance"]["key"]["publicId"]
        assert public_id not in decoded
        assert entry["isRequired"] is True, public_id
        decoded[public_id] = {p["key"]: decode_value(p["value"]) for p in entry["instance"].get("param", [])}
    assert decoded == EXPECTED_PERMISSIONS


def test_event_data_keys(sections: dict[str, str]) -> None:
    code = sections["SANDBOXED_JS_FOR_SERVER"]
    assert "getAllEventData" not in code
    entries = {e["instance"]["key"]["publicId"]: e for e in json.loads(sections["SERVER_PERMISSIONS"])}
    params = {p["key"]: decode_value(p["value"]) for p in entries["read_event_data"]["instance"]["param"]}
    assert params["keyPatterns"] == EVENT_DATA_KEYS
    # Event data is read through one helper, called with literal keys only: exactly the SGTM-5 list.
    assert code.count("getEventData(") == 1  # the one call, in readEvent
    assert "function readEvent(key) {" in code
    arguments = re.findall(r"readEvent\(([^)]*)\)", code.replace("function readEvent(key)", ""))
    read_keys = set()
    for argument in arguments:
        match = re.fullmatch(r"'([^']+)'", argument)
        assert match, f"readEvent() with a non-literal key: {argument}"
        read_keys.add(match.group(1))
    assert read_keys == set(EVENT_DATA_KEYS)


def test_sandbox_subset(sections: dict[str, str]) -> None:
    code = sections["SANDBOXED_JS_FOR_SERVER"]
    for token in FORBIDDEN_TOKENS:
        assert token not in code, token
    required = re.findall(r"\brequire\(([^)]*)\)", code)
    assert required, "no require() calls"
    names = []
    for argument in required:
        match = re.fullmatch(r"'([A-Za-z0-9_]+)'", argument.strip())
        assert match, f"require() with a non-literal argument: {argument}"
        names.append(match.group(1))
    assert set(names) <= ALLOWED_REQUIRES
    bare = strip_comments_and_strings(code)
    # A regular-expression literal is a '/' where an operand is expected; the code divides nothing, so any '/'
    # left outside comments and strings is a regex literal (or a division that would need review).
    assert "/" not in bare


def test_tests_section(sections: dict[str, str]) -> None:
    tests = yaml.safe_load(sections["TESTS"])
    assert [s["name"] for s in tests["scenarios"]] == SCENARIO_NAMES
    setup = tests["setup"]
    for api in ("getEventData", "getCookieValues", "getRemoteAddress", "getRequestHeader", "getTimestampMillis",
                "getContainerVersion", "sendHttpRequest"):  # fmt: skip
        assert f"mock('{api}'" in setup, api
    assert "1779247200000" in setup
    for scenario in tests["scenarios"]:
        assert "runCode(" in scenario["code"], scenario["name"]
        assert "assertApi(" in scenario["code"] or "assertThat(" in scenario["code"], scenario["name"]


def test_metadata() -> None:
    metadata = yaml.safe_load((CONNECTOR / "metadata.yaml").read_text(encoding="utf-8"))
    assert metadata["homepage"].startswith("https://")
    assert metadata["documentation"].startswith("https://")
    versions = metadata["versions"]
    assert isinstance(versions, list) and versions
    for version in versions:
        assert set(version) == {"sha", "changeNotes"}
        assert re.fullmatch(r"[0-9a-f]{40}", str(version["sha"]))
    assert "2.0.0" in versions[0]["changeNotes"]
