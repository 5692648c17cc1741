"""Shared field rules: api.md API-5, API-22, API-32, API-34..API-36, API-40..API-48, API-56;
sessions.md FP-1, FP-2, VIS-1; quality.md Q-63 (far-future timestamps)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.ids import new_id
from gateway.api import fields as f
from gateway.api.body import BodyError

NOW = datetime(2026, 11, 27, 10, 15, 0, tzinfo=UTC)
NOW_S = int(NOW.timestamp())
ID_RULE = "1-255 characters of letters, digits, '.', '_', ':' or '-'"
DEPTH_MSG = "properties nesting exceeds maximum depth of 5"
TS_SYNTAX = (
    "timestamp must be an ISO 8601 date-time (e.g. 2026-11-27T10:15:00Z) "
    "or Unix epoch seconds/milliseconds, got {}"
)


# ----------------------------------------------------------------------------------- API-22 <v>


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("abc", "'abc'"),
        ("x" * 40, "'" + "x" * 40 + "'"),
        ("x" * 41, "'" + "x" * 40 + "…'"),
        ("jane@example.com", "'[email]'"),
        (" Jane.Doe+x@Example.co.uk ", "'[email]'"),
        ("mail jane@example.com now", "'[email]'"),
        ("a@b", "'a@b'"),
        ("", "''"),
        (12, "12"),
        (1.5, "1.5"),
        (True, "true"),
        (None, "null"),
        ({"a": 1}, '{"a":1}'),
        ([1, "x"], '[1,"x"]'),
        ({"e": "jane@example.com"}, "[email]"),
        (list(range(30)), "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,1…"),
    ],
)
def test_API22_render_value(value: object, rendered: str) -> None:
    assert f.render_value(value) == rendered


@pytest.mark.parametrize(
    ("value", "name"),
    [("s", "string"), (1, "number"), (1.5, "number"), (True, "boolean"), (False, "boolean"),
     ({}, "object"), ([], "array"), (None, "null")],
)
def test_API22_type_name(value: object, name: str) -> None:
    assert f.type_name(value) == name


# -------------------------------------------------------------------------- API-40/42 client ids


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a" * 64, "a" * 64),
        ("550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000"),
        ("1234567890.1716200000", "1234567890.1716200000"),
        ("abc123", "abc123"),
        ("AbC:x_y-z.1", "AbC:x_y-z.1"),  # case preserved
        ('  "abc"  ', "abc"),
        ('""abc""', "abc"),
        ("x" * 255, "x" * 255),
        (None, None),
        ("", None),
        ("   ", None),
        ('""', None),
    ],
)
def test_API40_client_id_accepted(value: object, expected: str | None) -> None:
    errors: list[str] = []
    assert f.client_id("visitor_id", value, errors) == expected
    assert errors == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("visitor_id", "abc 123", f"visitor_id must be {ID_RULE}, got 'abc 123'"),
        ("visitor_id", "x" * 256, f"visitor_id must be {ID_RULE}, got '{'x' * 40}…'"),
        ("visitor_id", "abc/123", f"visitor_id must be {ID_RULE}, got 'abc/123'"),
        ("visitor_id", "abc\n", None),  # trailing whitespace is trimmed: accepted
        ("visitor_id", "é", f"visitor_id must be {ID_RULE}, got 'é'"),
        ("visitor_id", "１２３", f"visitor_id must be {ID_RULE}, got '１２３'"),  # non-ASCII digits
        ("visitor_id", "jane@example.com", f"visitor_id must be {ID_RULE}, got '[email]'"),
        ("session_id", "a\nb", f"session_id must be {ID_RULE}, got 'a\nb'"),
        ("visitor_id", 123, "visitor_id must be a string, got number"),
        ("session_id", True, "session_id must be a string, got boolean"),
        ("visitor_id", {}, "visitor_id must be a string, got object"),
        ("visitor_id", [], "visitor_id must be a string, got array"),
    ],
)
def test_API40_API42_client_id_rejected(field: str, value: object, message: str | None) -> None:
    errors: list[str] = []
    result = f.client_id(field, value, errors)
    if message is None:
        assert errors == []
        assert result is not None
    else:
        assert result is None
        assert errors == [message]


# ------------------------------------------------------------------------------------- API-41


@pytest.mark.parametrize(
    ("value", "expected", "errors"),
    [
        ("user_42", "user_42", []),
        ("  Jane  ", "Jane", []),
        ("ユーザー", "ユーザー", []),
        (42, "42", []),
        (-7, "-7", []),
        (0, "0", []),
        ("", None, []),
        (None, None, []),
        ("u" * 255, "u" * 255, []),
        ("u" * 256, None, ["user_id must be at most 255 characters, got 256"]),
        (True, None, ["user_id must be a string or an integer, got boolean"]),
        (1.5, None, ["user_id must be a string or an integer, got number"]),
        ({}, None, ["user_id must be a string or an integer, got object"]),
        ([1], None, ["user_id must be a string or an integer, got array"]),
    ],
)
def test_API41_user_id(value: object, expected: str | None, errors: list[str]) -> None:
    got: list[str] = []
    assert f.user_id(value, got) == expected
    assert got == errors


# --------------------------------------------------------------------------------- API-36/48


@pytest.mark.parametrize(
    ("field", "value", "expected", "errors"),
    [
        ("event_type", "page_view", "page_view", []),
        ("event_type", "  Signup Started ", "Signup Started", []),
        ("conversion_type", "x" * 255, "x" * 255, []),
        ("conversion_type", "x" * 256, None, ["conversion_type must be at most 255 characters, got 256"]),
        ("message_id", " " + "m" * 255 + " ", "m" * 255, []),
        ("idempotency_key", 5, None, ["idempotency_key must be a string, got number"]),
        ("event_type", None, None, []),
        ("event_type", "  ", None, []),
        ("event_type", "tab\there", "tab\there", []),
        ("funnel", "Signup", "Signup", []),
        ("funnel", "sign\nup", None, ["funnel must not contain control characters, got 'sign\nup'"]),
        ("funnel", "sign\x7fup", None, ["funnel must not contain control characters, got 'sign\x7fup'"]),
        ("funnel", ["a"], None, ["funnel must be a string, got array"]),
    ],
)
def test_API36_API48_name_field(field: str, value: object, expected: str | None, errors: list[str]) -> None:
    got: list[str] = []
    assert f.name_field(field, value, got) == expected
    assert got == errors


# ------------------------------------------------------------------------------------- API-43


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-27T10:00:00Z", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27 10:00:00Z", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T10:00:00", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),  # no zone = UTC
        ("2026-11-27T11:00:00+01:00", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T05:00:00-0500", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T15:30:00+05:30", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T10:00:00-00:00", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T10:00:00.5Z", datetime(2026, 11, 27, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-27T10:00:00.123456Z", datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-27T10:00:00.123456789Z", datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)),  # cut
        ("2026-11-27T10:00:00.999999999Z", datetime(2026, 11, 27, 10, 0, 0, 999999, tzinfo=UTC)),
        ("2026-02-28T23:59:59Z", datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)),
        ("2026-11-26T23:00:00-11:00", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),  # across a date line
    ],
)
def test_API43_iso_8601(value: str, expected: datetime) -> None:
    errors: list[str] = []
    warnings: list[str] = []
    got = f.timestamp("timestamp", value, NOW, errors, warnings)
    assert got == expected
    assert got is not None and got.utcoffset() == timedelta(0)
    assert errors == [] and warnings == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (NOW_S - 60, NOW - timedelta(seconds=60)),
        (float(NOW_S - 60) + 0.25, NOW - timedelta(seconds=59.75)),
        ((NOW_S - 60) * 1000, NOW - timedelta(seconds=60)),
        ((NOW_S - 60) * 1000 + 123, NOW - timedelta(seconds=60) + timedelta(milliseconds=123)),
        ((NOW_S - 60) * 1000 + 0.5, NOW - timedelta(seconds=60) + timedelta(microseconds=500)),
    ],
)
def test_API43_epoch_seconds_and_milliseconds(value: float, expected: datetime) -> None:
    errors: list[str] = []
    assert f.timestamp("timestamp", value, NOW, errors, []) == expected
    assert errors == []


def test_API43_epoch_milliseconds_threshold() -> None:
    # 99,999,999,999 s is year 5138 (too far in the future); 100,000,000,000 ms is 1973 (too far back).
    errors: list[str] = []
    f.timestamp("timestamp", 99_999_999_999, NOW, errors, [])
    assert errors == ["timestamp is more than 5 minutes in the future, got 99999999999"]
    errors = []
    f.timestamp("timestamp", 100_000_000_000, NOW, errors, [])
    assert errors == ["timestamp is more than 365 days in the past, got 100000000000"]


@pytest.mark.parametrize("value", [None, "", "  "])
def test_API43_absent(value: object) -> None:
    errors: list[str] = []
    warnings: list[str] = []
    assert f.timestamp("timestamp", value, NOW, errors, warnings) is None
    assert errors == [] and warnings == []


@pytest.mark.parametrize(
    "value",
    [
        NOW + timedelta(seconds=1),
        NOW + timedelta(minutes=5),
    ],
)
def test_API43_near_future_clamped_with_warning(value: datetime) -> None:
    errors: list[str] = []
    warnings: list[str] = []
    text = value.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f.timestamp("timestamp", text, NOW, errors, warnings) == NOW
    assert errors == []
    assert warnings == ["timestamp was in the future; recorded at receive time"]
    warnings = []
    assert f.timestamp("timestamp", int(value.timestamp()), NOW, errors, warnings) == NOW
    assert warnings == ["timestamp was in the future; recorded at receive time"]


@pytest.mark.parametrize(
    ("field", "value", "rendered"),
    [
        ("timestamp", "2026-11-27T10:20:01Z", "'2026-11-27T10:20:01Z'"),
        ("converted_at", "2099-01-01T00:00:00Z", "'2099-01-01T00:00:00Z'"),
        ("started_at", NOW_S + 301, str(NOW_S + 301)),
        ("timestamp", (NOW_S + 301) * 1000, str((NOW_S + 301) * 1000)),
        ("timestamp", "9999-12-31T23:59:59Z", "'9999-12-31T23:59:59Z'"),
        ("timestamp", "9999-12-31T23:59:59-05:00", "'9999-12-31T23:59:59-05:00'"),
        ("timestamp", 10**18, "1000000000000000000"),
        ("timestamp", 9.0e18, "9e+18"),
        ("timestamp", 1e300, "1e+300"),
    ],
)
def test_API43_far_future_rejected(field: str, value: object, rendered: str) -> None:
    errors: list[str] = []
    assert f.timestamp(field, value, NOW, errors, []) is None
    assert errors == [f"{field} is more than 5 minutes in the future, got {rendered}"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ((NOW - timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ"), True),
        ((NOW - timedelta(days=365, seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), False),
        ("2020-01-01T00:00:00Z", False),
        ("0001-01-01T00:00:00+01:00", False),
        (0, False),
        (-1, False),
        (-(10**18), False),
        (1_000_000_000, False),
    ],
)
def test_API43_past_limit(value: object, ok: bool) -> None:
    errors: list[str] = []
    got = f.timestamp("timestamp", value, NOW, errors, [])
    if ok:
        assert got is not None and errors == []
    else:
        assert got is None
        assert errors == [f"timestamp is more than 365 days in the past, got {f.render_value(value)}"]


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-27",
        "2026-11-27T10:00Z",
        "2026-11-27T10:00:00.Z",
        "2026-11-27T10:00:00.1234567890Z",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-27T24:00:00Z",
        "2026-11-27T10:00:60Z",
        "2026-11-27T10:00:00+24:00",
        "2026-11-27T10:00:00+01:60",
        "2026-11-27T10:00:00+01",
        "2026-11-27T10:00:00 UTC",
        "2026/11/27 10:00:00",
        "27/11/2026",
        "yesterday",
        "1716200000",  # epoch must be a JSON number
        "２０２６-11-27T10:00:00Z",
        True,
        False,
        {},
        [],
        float("nan"),
        float("inf"),
    ],
)
def test_API43_syntax_rejected(value: object) -> None:
    errors: list[str] = []
    assert f.timestamp("timestamp", value, NOW, errors, []) is None
    assert errors == [TS_SYNTAX.format(f.render_value(value))]


def test_API43_field_name_in_syntax_message() -> None:
    errors: list[str] = []
    f.timestamp("converted_at", "soon", NOW, errors, [])
    assert errors == [
        "converted_at must be an ISO 8601 date-time (e.g. 2026-11-27T10:15:00Z) "
        "or Unix epoch seconds/milliseconds, got 'soon'"
    ]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.booleans(), st.none()))
def test_API23_timestamp_never_raises(value: object) -> None:
    errors: list[str] = []
    got = f.timestamp("timestamp", value, NOW, errors, [])
    assert got is None or (got.tzinfo is not None and not errors)


# -------------------------------------------------------------------------------------- booleans


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True), (False, False), ("true", True), ("TRUE", True), ("False", False),
        ("1", True), ("0", False), (1, True), (0, False), (None, None),
    ],
)
def test_API49_boolean_accepted(value: object, expected: bool | None) -> None:
    errors: list[str] = []
    assert f.boolean("is_acquisition", value, errors) is expected
    assert errors == []


@pytest.mark.parametrize(
    ("value", "rendered"),
    [("yes", "'yes'"), (2, "2"), (1.0, "1.0"), ("", "''"), ([], "[]"), ({}, "{}"), (-1, "-1")],
)
def test_API49_boolean_rejected(value: object, rendered: str) -> None:
    errors: list[str] = []
    assert f.boolean("inherit_acquisition", value, errors) is None
    assert errors == [f"inherit_acquisition must be true or false, got {rendered}"]


# --------------------------------------------------------------------------- FP-1 / FP-2 / API-45


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("203.0.113.42", "203.0.113.0"),
        (" 203.0.113.42 ", "203.0.113.0"),
        ("10.0.0.255", "10.0.0.0"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::"),
        ("2001:0DB8:1234:ffff:ffff:ffff:ffff:ffff", "2001:db8:1234::"),
        ("::ffff:203.0.113.42", "203.0.113.0"),
        ("::ffff:cb00:712a", "203.0.113.0"),
        ("::1", "::"),
        ("fe80::1%eth0", "fe80::"),
        ("2001:db8::", "2001:db8::"),
    ],
)
def test_FP1_mask_ip(value: str, masked: str) -> None:
    warnings: list[str] = []
    assert f.mask_ip(value, warnings) == masked
    assert warnings == []


@pytest.mark.parametrize(
    "value", ["unknown", "256.1.1.1", "1.2.3", "010.1.1.1", "[::1]", "::g", 123, {}, True]
)
def test_API44_invalid_ip_ignored_with_warning(value: object) -> None:
    warnings: list[str] = []
    assert f.mask_ip(value, warnings) is None
    assert warnings == ["ip ignored: not an IP address"]


@pytest.mark.parametrize("value", [None, ""])
def test_API44_absent_ip(value: object) -> None:
    warnings: list[str] = []
    assert f.mask_ip(value, warnings) is None
    assert warnings == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mozilla/5.0 (X11)", "Mozilla/5.0 (X11)"),
        ("unknown", None),
        ("Unknown", None),
        ("", None),
        ("   ", None),
        (None, None),
        (42, None),
        ("x" * 2000, "x" * 1024),
        (" spaced ", " spaced "),  # kept as sent: FP-2 hashes it
    ],
)
def test_API45_clean_user_agent(value: object, expected: str | None) -> None:
    assert f.clean_user_agent(value) == expected


def test_FP2_fingerprint() -> None:
    ua = "Mozilla/5.0 (Macintosh)"
    expected = hashlib.sha256(b"203.0.113.0|Mozilla/5.0 (Macintosh)").hexdigest()[:32]
    assert f.fingerprint("203.0.113.0", ua) == expected
    assert len(expected) == 32 and expected == expected.lower()


@pytest.mark.parametrize(("ip", "ua"), [(None, "ua"), ("1.2.3.0", None), (None, None), ("", "ua")])
def test_FP2_fingerprint_needs_both(ip: str | None, ua: str | None) -> None:
    assert f.fingerprint(ip, ua) is None


def test_FP2_fingerprint_uses_truncated_agent() -> None:
    long_ua = "y" * 3000
    cleaned = f.clean_user_agent(long_ua)
    expected = hashlib.sha256(("1.2.3.0|" + "y" * 1024).encode()).hexdigest()[:32]
    assert f.fingerprint("1.2.3.0", cleaned) == expected


# --------------------------------------------------------------------------------- API-36 / 46 urls


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("url", "https://example.com/a?b=1", "https://example.com/a?b=1"),
        ("url", "example.com/a", "example.com/a"),  # only referrers get a scheme
        ("referrer", "https://google.com/", "https://google.com/"),
        ("referrer", "google.com/search", "https://google.com/search"),
        ("referrer", "//google.com/", "https://google.com/"),
        ("referrer", "localhost:3000/x", "https://localhost:3000/x"),
        ("referrer", "android-app://com.google.android.gm/", "android-app://com.google.android.gm/"),
        ("url", "", None),
        ("referrer", "  ", None),
        ("url", None, None),
    ],
)
def test_API46_url_field(field: str, value: object, expected: str | None) -> None:
    warnings: list[str] = []
    assert f.url_field(field, value, warnings) == expected
    assert warnings == []


@pytest.mark.parametrize("field", ["url", "referrer"])
def test_API36_url_truncated(field: str) -> None:
    warnings: list[str] = []
    got = f.url_field(field, "https://e.com/" + "a" * 9000, warnings)
    assert got is not None and len(got) == 8192
    assert warnings == [f"{field} truncated to 8192 characters"]


def test_API36_url_at_limit_not_truncated() -> None:
    warnings: list[str] = []
    value = "https://e.com/" + "a" * (8192 - 14)
    assert f.url_field("url", value, warnings) == value
    assert warnings == []


def test_API46_url_non_string_ignored_with_warning() -> None:
    warnings: list[str] = []
    assert f.url_field("url", 5, warnings) is None
    assert warnings == ["url ignored: must be a string, got number"]


# ---------------------------------------------------------------------------- API-47 / 34 / 35


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, {}),
        ([], {}),
        ({}, {}),
        ({"plan": "pro", "n": 1}, {"plan": "pro", "n": 1}),
        ({"a": 1, "properties": {"a": 2, "b": 3}}, {"a": 1, "b": 3}),  # Ruby nesting, outer wins
        ({"properties": "not an object"}, {"properties": "not an object"}),
        ({"deep": {"a": {"b": {"c": {"d": 1}}}}}, {"deep": {"a": {"b": {"c": {"d": 1}}}}}),  # depth 5
        ({"l": [[[[1]]]]}, {"l": [[[[1]]]]}),  # depth 5 with arrays
    ],
)
def test_API47_properties_accepted(value: object, expected: dict[str, object]) -> None:
    errors: list[str] = []
    warnings: list[str] = []
    assert f.properties("properties", value, errors, warnings) == expected
    assert errors == [] and warnings == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("properties", [1], "properties must be an object, got array"),
        ("properties", "x", "properties must be an object, got string"),
        ("properties", 3, "properties must be an object, got number"),
        ("traits", True, "traits must be an object, got boolean"),
        ("properties", {"a": {"b": {"c": {"d": {"e": {}}}}}}, DEPTH_MSG),
        ("properties", {"a": [[[[{}]]]]}, "properties nesting exceeds maximum depth of 5"),
        ("traits", {"a": {"b": {"c": {"d": {"e": {}}}}}}, "traits nesting exceeds maximum depth of 5"),
        # merged nested properties are measured after merging
        ("properties", {"properties": {"a": {"b": {"c": {"d": {"e": [1]}}}}}},
         "properties nesting exceeds maximum depth of 5"),
    ],
)
def test_API47_API34_properties_rejected(field: str, value: object, message: str) -> None:
    errors: list[str] = []
    assert f.properties(field, value, errors, []) == {}
    assert errors == [message]


def test_API47_merged_nested_properties_reduce_depth() -> None:
    errors: list[str] = []
    value = {"properties": {"a": {"b": {"c": {"d": 1}}}}}
    assert f.properties("properties", value, errors, []) == {"a": {"b": {"c": {"d": 1}}}}
    assert errors == []


def test_API47_traits_merge_nested_traits() -> None:
    assert f.properties("traits", {"plan": "pro", "traits": {"plan": "x", "n": 1}}, [], []) == {
        "plan": "pro",
        "n": 1,
    }


def test_API34_key_cap_keeps_first_50_in_document_order() -> None:
    value: dict[str, object] = {"url": "u", "referrer": "r"}
    value.update({f"k{i}": i for i in range(60)})
    value["funnel"] = "f"
    warnings: list[str] = []
    got = f.properties("properties", value, [], warnings)
    assert list(got) == ["url", "referrer"] + [f"k{i}" for i in range(50)] + ["funnel"]
    assert warnings == ["properties: kept first 50 of 60 keys, dropped the rest"]


def test_API34_exactly_50_keys_plus_exempt_kept() -> None:
    value: dict[str, object] = {f"k{i}": i for i in range(50)}
    value.update(url="u", referrer="r", funnel="f")
    warnings: list[str] = []
    assert f.properties("properties", value, [], warnings) == value
    assert warnings == []


def test_API35_traits_key_cap_counts_every_key() -> None:
    value: dict[str, object] = {f"t{i}": i for i in range(50)}
    value["url"] = "u"
    warnings: list[str] = []
    got = f.properties("traits", value, [], warnings)
    assert list(got) == [f"t{i}" for i in range(50)]
    assert warnings == ["traits: kept first 50 of 51 keys, dropped the rest"]


def test_API34_bad_keys_dropped_at_any_depth() -> None:
    long_key = "k" * 256
    value = {"": 1, long_key: 2, "ok": {"": 3, "x": [{long_key: 4, "y": 5}]}, "k" * 255: 6}
    warnings: list[str] = []
    got = f.properties("properties", value, [], warnings)
    assert got == {"ok": {"x": [{"y": 5}]}, "k" * 255: 6}
    assert warnings == ["properties: dropped 4 keys longer than 255 characters or empty"]


def test_API34_bad_keys_do_not_take_cap_slots() -> None:
    value: dict[str, object] = {"": 0}
    value.update({f"k{i}": i for i in range(50)})
    warnings: list[str] = []
    got = f.properties("properties", value, [], warnings)
    assert len(got) == 50
    assert warnings == ["properties: dropped 1 keys longer than 255 characters or empty"]


def test_API35_traits_bad_key_warning_prefix() -> None:
    warnings: list[str] = []
    assert f.properties("traits", {"": 1, "a": 2}, [], warnings) == {"a": 2}
    assert warnings == ["traits: dropped 1 keys longer than 255 characters or empty"]


# ------------------------------------------------------------------------------------------ API-32


@pytest.mark.parametrize(
    ("size", "ok"),
    [(32768, True), (32769, False), (100, True)],
)
def test_API32_event_size(size: int, ok: bool) -> None:
    event = {"p": "x" * (size - len('{"p":""}'))}
    errors: list[str] = []
    assert f.event_size_ok(event, errors) is ok
    assert errors == ([] if ok else [f"event is {size} bytes; the maximum is 32768 bytes"])


def test_API32_event_size_counts_utf8_bytes() -> None:
    errors: list[str] = []
    assert f.event_size_ok({"p": "é" * 16380}, errors) is True  # 32,760 UTF-8 bytes + 8 of structure
    assert f.event_size_ok({"p": "é" * 16381}, errors) is False
    assert errors == ["event is 32770 bytes; the maximum is 32768 bytes"]


# ------------------------------------------------------------------------------------------ API-5


@pytest.mark.parametrize("prefix", ["evt", "conv", "sess", "idt", "acct", "vis"])
def test_API5_new_id_format(prefix: str) -> None:
    new = new_id(prefix)
    p = prefix.rstrip("_") + "_"
    assert new.startswith(p)
    body = new[len(p):]
    assert len(body) == 26 and body == body.upper()
    assert f.normalize_server_id(prefix, new) == new


def test_API5_new_ids_are_time_sortable_and_carry_time() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    a = new_id("evt")
    b = new_id("evt")
    after = datetime.now(UTC) + timedelta(milliseconds=1)
    assert a != b
    assert before <= f.ulid_time(a) <= after
    assert f.ulid_time(a) <= f.ulid_time(b)


@pytest.mark.parametrize(
    ("prefix", "value", "expected"),
    [
        ("evt", "evt_01J9ZQ3V6Y8W0K2M4N6P8R0T2V", "evt_01J9ZQ3V6Y8W0K2M4N6P8R0T2V"),
        ("evt", "evt_01j9zq3v6y8w0k2m4n6p8r0t2v", "evt_01J9ZQ3V6Y8W0K2M4N6P8R0T2V"),
        ("evt", "EVT_01j9zq3v6y8w0k2m4n6p8r0t2v", "evt_01J9ZQ3V6Y8W0K2M4N6P8R0T2V"),
        ("conv", " conv_01J9ZQ3V6Y8W0K2M4N6P8R0T2V ", "conv_01J9ZQ3V6Y8W0K2M4N6P8R0T2V"),
        ("evt", "conv_01J9ZQ3V6Y8W0K2M4N6P8R0T2V", None),  # wrong kind
        ("evt", "evt_01J9ZQ3V6Y8W0K2M4N6P8R0T2", None),  # 25 characters
        ("evt", "evt_01J9ZQ3V6Y8W0K2M4N6P8R0T2VV", None),  # 27
        ("evt", "evt_01J9ZQ3V6Y8W0K2M4N6P8R0T2U", None),  # U is not Crockford
        ("evt", "evt_01J9ZQ3V6Y8W0K2M4N6P8R0TIL", None),  # I, L neither
        ("evt", "evt_81J9ZQ3V6Y8W0K2M4N6P8R0T2V", None),  # > 128 bits
        ("evt", "evt_01J9ZQ3V6Y8W0K2M4N6P8R0T\u212a2", None),  # Kelvin sign, not K
        ("evt", "01J9ZQ3V6Y8W0K2M4N6P8R0T2V", None),
        ("evt", 123, None),
        ("evt", None, None),
    ],
)
def test_API5_normalize_server_id(prefix: str, value: object, expected: str | None) -> None:
    assert f.normalize_server_id(prefix, value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("evt_00000000000000000000000000", datetime(1970, 1, 1, tzinfo=UTC)),
        ("evt_0000000001ZZZZZZZZZZZZZZZZ", datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=1)),
        ("0000000001zzzzzzzzzzzzzzzz", datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=1)),
    ],
)
def test_API5_ulid_time(value: str, expected: datetime) -> None:
    assert f.ulid_time(value) == expected


@pytest.mark.parametrize("value", ["evt_x", "", "evt_0000000000000000000000000U"])
def test_API5_ulid_time_rejects_non_ids(value: str) -> None:
    with pytest.raises(ValueError):
        f.ulid_time(value)


def test_API5_ulid_time_matches_python_ulid() -> None:
    from ulid import ULID

    u = ULID()
    assert f.ulid_time(f"conv_{u}") == u.datetime


# ------------------------------------------------------------------------------------------ API-56


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("abc", "abc"), ("Order-123:retry 1", "Order-123:retry 1"), ("k" * 255, "k" * 255),
     ("~!@#$%^&*()", "~!@#$%^&*()")],
)
def test_API56_idempotency_header_accepted(value: str | None, expected: str | None) -> None:
    assert f.idempotency_header(value) == expected


@pytest.mark.parametrize("value", ["", "k" * 256, "tab\tkey", "ключ", "nl\n", "\x7f"])
def test_API56_idempotency_header_rejected(value: str) -> None:
    with pytest.raises(BodyError) as info:
        f.idempotency_header(value)
    assert info.value.status == 400
    assert info.value.message == "X-Idempotency-Key must be 1-255 printable ASCII characters"


# ------------------------------------------------------------------------------------- robustness


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=300), c, max_size=6),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_API23_field_rules_never_raise(value: object) -> None:
    errors: list[str] = []
    warnings: list[str] = []
    f.render_value(value)
    f.type_name(value)
    f.client_id("visitor_id", value, errors)
    f.user_id(value, errors)
    f.name_field("funnel", value, errors)
    f.boolean("is_acquisition", value, errors)
    f.mask_ip(value, warnings)
    f.clean_user_agent(value)
    f.url_field("referrer", value, warnings)
    got = f.properties("properties", value, errors, warnings)
    assert isinstance(got, dict)
    f.event_size_ok(value, errors)
    f.normalize_server_id("evt", value)
