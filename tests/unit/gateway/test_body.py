"""Whole-body parsing: api.md API-2, API-3, API-20 (whole-body 400s), API-30; quality.md Q-63."""

from __future__ import annotations

import gzip

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api.body import (
    MSG_INVALID_JSON,
    MSG_NOT_OBJECT,
    MSG_NOT_UTF8,
    MSG_NUMBER_RANGE,
    MSG_TOO_DEEP,
    BodyError,
    ParsedBody,
    parse_body,
    require_object,
)

LIMIT = 32768
EVENTS_LIMIT = 524288


def _nested(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + closer * depth


def _nested_objects(depth: int) -> bytes:
    # depth 1 = {}, depth 2 = {"a":{}}, ...
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def _error(raw: bytes, encoding: str | None = None, limit: int = LIMIT) -> BodyError:
    with pytest.raises(BodyError) as info:
        parse_body(raw, encoding, limit)
    return info.value


def test_API20_exact_messages() -> None:
    assert MSG_INVALID_JSON == "Request body must be valid JSON"
    assert MSG_NOT_UTF8 == "Request body must be UTF-8 encoded JSON"
    assert MSG_NUMBER_RANGE == "Request body contains a number outside the supported range"
    assert MSG_TOO_DEEP == "Request body nesting exceeds maximum depth of 32"
    assert MSG_NOT_OBJECT == "Request body must be a JSON object"


# --------------------------------------------------------------------------------------- happy path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"event_type":"signup","n":1}', {"event_type": "signup", "n": 1}),
        (b"[1, 2.5, true, false, null]", [1, 2.5, True, False, None]),
        (b'  {"a": "b"}  \n', {"a": "b"}),
        (b'"just a string"', "just a string"),
        (b"42", 42),
        (b'{"s":"\\ud83d\\ude00 \xc3\xa9"}', {"s": "\U0001f600 é"}),
        (b'{"revenue": 99.99}', {"revenue": 99.99}),
        (b'{"big": 9223372036854775807, "small": -9223372036854775808}',
         {"big": 2**63 - 1, "small": -(2**63)}),
        (b'{"digits": "12345678901234567890123"}', {"digits": "12345678901234567890123"}),
        (b'{"tiny": 1e-400}', {"tiny": 0.0}),
        (b'{"e": 1.5E3}', {"e": 1500.0}),
    ],
)
def test_API2_parses_json(raw: bytes, expected: object) -> None:
    assert parse_body(raw, None, LIMIT) == ParsedBody(expected, [])


def test_API7_float_keeps_shortest_decimal_text() -> None:
    value = parse_body(b'{"revenue": 1234.56}', None, LIMIT).value
    assert isinstance(value, dict)
    assert repr(value["revenue"]) == "1234.56"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a":1,"a":2}', {"a": 2}),
        (b'{"a":{"x":1},"b":0,"a":"last"}', {"a": "last", "b": 0}),
        # the precise (stdlib) path behaves the same
        (b'{"a":1,"a":2,"n":"1234567890123456789"}', {"a": 2, "n": "1234567890123456789"}),
    ],
)
def test_API3_duplicate_keys_last_wins(raw: bytes, expected: object) -> None:
    assert parse_body(raw, None, LIMIT).value == expected


@pytest.mark.parametrize("raw", [b'\xef\xbb\xbf{"a":1}', b'\xef\xbb\xbf  {"a":1}'])
def test_API3_leading_bom_ignored(raw: bytes) -> None:
    assert parse_body(raw, None, LIMIT).value == {"a": 1}


def test_API3_only_one_leading_bom_is_ignored() -> None:
    assert _error(b'\xef\xbb\xbf\xef\xbb\xbf{"a":1}').message == MSG_INVALID_JSON


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a\\u0000b":"x\\u0000y"}', {"ab": "xy"}),
        (b'{"list":["\\u0000","ok",{"k\\u0000":"v"}]}', {"list": ["", "ok", {"k": "v"}]}),
        # the stdlib path (a long digit run forces it) scrubs too
        (b'{"s":"\\u0000","n":"12345678901234567890"}', {"s": "", "n": "12345678901234567890"}),
        # keys that differ only by NUL collide: the later value wins
        (b'{"a":1,"a\\u0000":2}', {"a": 2}),
    ],
)
def test_API3_nul_removed_with_warning(raw: bytes, expected: object) -> None:
    parsed = parse_body(raw, None, LIMIT)
    assert parsed.value == expected
    assert parsed.warnings == ["removed NUL characters"]


def test_API3_escaped_backslash_before_u0000_is_not_a_nul() -> None:
    parsed = parse_body(b'{"a":"\\\\u0000"}', None, LIMIT)
    assert parsed.value == {"a": "\\u0000"}
    assert parsed.warnings == []


# ------------------------------------------------------------------------------------------ 400s


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{",
        b'{"a":1,}',
        b"[1,]",
        b"{'a':1}",
        b"a=1&b=2",  # curl -d with form data
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":-Infinity}',
        b"[nan]",
        b'{"a":"raw\ncontrol"}',
        b'{"a":1} {"b":2}',
        b'{"a":01}',
    ],
)
def test_API20_not_parseable(raw: bytes) -> None:
    err = _error(raw)
    assert (err.status, err.message) == (400, MSG_INVALID_JSON)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":"\xff"}',
        b"\xff\xfe{\x00}\x00",  # UTF-16 LE with BOM
        b'{"a":"\xc3"}',  # truncated sequence
        b'{"a":"\xc0\xaf"}',  # overlong
        b'{"a":"\xed\xa0\x80"}',  # an encoded surrogate
        b'{"a":"\\ud800"}',  # lone high surrogate escape
        b'{"a":"\\udc00"}',  # lone low surrogate escape
        b'{"\\ud800":1}',  # in a key
        b'{"a":["x","\\ud83dA"]}',  # high surrogate followed by a non-surrogate
        b'{"a":"\\ud800","n":"12345678901234567890"}',
    ],
)
def test_API2_not_utf8(raw: bytes) -> None:
    err = _error(raw)
    assert (err.status, err.message) == (400, MSG_NOT_UTF8)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n":9223372036854775808}',
        b'{"n":-9223372036854775809}',
        b'{"n":18446744073709551615}',  # orjson alone would accept this one
        b'{"n":99999999999999999999}',  # ... and turn this one into a float
        b'{"n":' + b"9" * 5000 + b"}",  # past Python's int-conversion digit guard
        b'{"n":1e400}',
        b'{"n":-1e400}',
        b'{"n":1.7976931348623159e308}',
        b'[1E309]',
    ],
)
def test_API20_number_out_of_range(raw: bytes) -> None:
    err = _error(raw)
    assert (err.status, err.message) == (400, MSG_NUMBER_RANGE)


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        (_nested(32), True),
        (_nested(33), False),
        (_nested_objects(32), True),
        (_nested_objects(33), False),
        (b'{"a":[{"b":' + _nested(31) + b"}]}", False),
        (b'{"a":[{"b":' + _nested(29) + b"}]}", True),
        (_nested(1024), False),  # orjson's own limit
        (_nested(1025), False),  # beyond it: stdlib path
        (_nested(200_000), False),  # far beyond the C stack recursion limit
        (b"[" * 200_000, False),
        (b'["' + b"[" * 100 + b'"]', True),  # brackets inside strings do not nest
        (b"[" + b"[]," * 100 + b"[]]", True),  # many containers, shallow
    ],
)
def test_API20_nesting_depth(raw: bytes, ok: bool) -> None:
    if ok:
        parse_body(raw, None, 10**7)
    else:
        err = _error(raw, limit=10**7)
        assert (err.status, err.message) == (400, MSG_TOO_DEEP)


def test_API20_very_deep_nesting_is_rejected_without_recursion_error() -> None:
    err = _error(_nested(200_000), limit=10**7)
    assert (err.status, err.message) == (400, MSG_TOO_DEEP)


# ------------------------------------------------------------------------------------ 413 / 415


@pytest.mark.parametrize(
    ("size", "limit"),
    [(LIMIT + 1, LIMIT), (EVENTS_LIMIT + 1, EVENTS_LIMIT), (10 * LIMIT, LIMIT)],
)
def test_API30_oversized_body(size: int, limit: int) -> None:
    raw = b'{"a":"' + b"x" * (size - 8) + b'"}'
    assert len(raw) == size
    err = _error(raw, limit=limit)
    assert err.status == 413
    assert err.message == f"Request body too large: {size} bytes (maximum {limit})"


def test_API30_body_at_limit_accepted() -> None:
    raw = b'{"a":"' + b"x" * (LIMIT - 8) + b'"}'
    assert len(raw) == LIMIT
    assert parse_body(raw, None, LIMIT).value == {"a": "x" * (LIMIT - 8)}


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", " gzip ", "x-gzip", "identity, gzip", "gzip, identity"])
def test_API2_gzip_accepted(encoding: str) -> None:
    assert parse_body(gzip.compress(b'{"a":1}'), encoding, LIMIT).value == {"a": 1}


@pytest.mark.parametrize("encoding", [None, "", "identity", "IDENTITY"])
def test_API2_identity_accepted(encoding: str | None) -> None:
    assert parse_body(b'{"a":1}', encoding, LIMIT).value == {"a": 1}


def test_API2_gzip_applied_twice() -> None:
    raw = gzip.compress(gzip.compress(b'{"a":1}'))
    assert parse_body(raw, "gzip, gzip", LIMIT).value == {"a": 1}


def test_API2_gzip_multiple_members() -> None:
    raw = gzip.compress(b'{"a":') + gzip.compress(b"1}")
    assert parse_body(raw, "gzip", LIMIT).value == {"a": 1}


def test_API2_gzip_limit_applies_to_decompressed_size() -> None:
    raw = b'{"a":"' + b"x" * LIMIT + b'"}'
    compressed = gzip.compress(raw)
    assert len(compressed) < LIMIT
    err = _error(compressed, "gzip")
    assert err.status == 413
    # decompression stops one byte past the limit: that is the count reported
    assert err.message == f"Request body too large: {LIMIT + 1} bytes (maximum {LIMIT})"


def test_API2_gzip_at_limit_accepted() -> None:
    raw = b'{"a":"' + b"x" * (LIMIT - 8) + b'"}'
    assert parse_body(gzip.compress(raw), "gzip", LIMIT).value == {"a": "x" * (LIMIT - 8)}


def test_API2_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"0" * 10_000_000, compresslevel=9)
    err = _error(bomb, "gzip", EVENTS_LIMIT)
    assert err.status == 413
    # the count is where decompression stopped, one byte past the limit, not the 10 MB the bomb holds
    assert err.message == f"Request body too large: {EVENTS_LIMIT + 1} bytes (maximum {EVENTS_LIMIT})"


def test_API2_gzip_bomb_in_second_member() -> None:
    raw = gzip.compress(b"[1,") + gzip.compress(b"0" * 1_000_000)
    assert _error(raw, "gzip").status == 413


@pytest.mark.parametrize(
    "raw",
    # mtime=0: the ids must be the same in every xdist worker, whenever it collects
    [b"", b"not gzip at all", gzip.compress(b'{"a":1}', mtime=0)[:-5],
     gzip.compress(b"{}", mtime=0) + b"trailing junk"],
)
def test_API2_corrupt_gzip_is_400(raw: bytes) -> None:
    err = _error(raw, "gzip")
    assert (err.status, err.message) == (400, MSG_INVALID_JSON)


@pytest.mark.parametrize("encoding", ["br", "deflate", "zstd", "compress", "gzip, br", "Br "])
def test_API2_unsupported_content_encoding(encoding: str) -> None:
    err = _error(b"{}", encoding)
    assert err.status == 415
    assert err.message == f"Unsupported Content-Encoding: {encoding.strip()}"


def test_API2_unsupported_encoding_checked_before_size() -> None:
    assert _error(b"x" * (LIMIT + 1), "br").status == 415


# --------------------------------------------------------------------------------- require_object


@pytest.mark.parametrize("value", [[], [{}], "s", 1, None, True, 1.5])
def test_API20_require_object_rejects(value: object) -> None:
    with pytest.raises(BodyError) as info:
        require_object(value)
    assert (info.value.status, info.value.message) == (400, MSG_NOT_OBJECT)


def test_API20_require_object_returns_the_dict() -> None:
    d: dict[str, object] = {"a": 1}
    assert require_object(d) is d


# ------------------------------------------------------------------------------------- properties


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([None, "gzip", "identity", "br"]))
def test_API23_arbitrary_bytes_raise_only_body_error(raw: bytes, encoding: str | None) -> None:
    try:
        parsed = parse_body(raw, encoding, 200)
    except BodyError as e:
        assert e.status in (400, 413, 415)
    else:
        orjson.dumps(parsed.value)  # whatever is accepted is representable downstream


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_API23_json_like_text_raises_only_body_error(value: object) -> None:
    import json

    raw = json.dumps(value).encode("utf-8", "surrogatepass")
    try:
        parsed = parse_body(raw, None, 10**6)
    except BodyError as e:
        assert e.status == 400
    else:
        orjson.dumps(parsed.value)
