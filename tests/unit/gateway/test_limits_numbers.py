"""The number rule of docs/api.md API-47-D1 (quality.md Q-60), as pure functions: the edge's
(`gateway.api.fields`) and the read side's (`core.reports.json_safe`), which must agree, plus the CSV writer's
end-of-file error line (API-122-D2). The HTTP drills are tests/integration/test_limits_numbers.py."""

from __future__ import annotations

import csv
import io
import math
from decimal import Decimal
from typing import Any

import orjson
import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from core.reports import Range, json_safe
from gateway.api.fields import plain_number, properties, stored_int
from gateway.csv_stream import ERROR_MARK, csv_cell, csv_download

I64_MAX, I64_MIN = 2**63 - 1, -(2**63)


@pytest.mark.parametrize(("value", "expected"), [
    (0, 0), (I64_MAX, I64_MAX), (I64_MIN, I64_MIN), (1.5, 1.5), (-0.0, -0.0), (1e18, 1e18),
    (9.223372036854775e18, 9.223372036854775e18),  # the largest float below 2**63 stays a number
    (2.0**63, "9.223372036854776e+18"), (-(2.0**63), -(2.0**63)), (2e19, "2e+19"), (-2e19, "-2e+19"),
    (1e30, "1e+30"), (1.7976931348623157e308, "1.7976931348623157e+308"),
    (I64_MAX + 1, "9223372036854775808"), (I64_MIN - 1, "-9223372036854775809"),
    (123456789012345678901234567890, "123456789012345678901234567890"),
    (math.nan, None), (math.inf, None), (-math.inf, None),
    (Decimal("12"), 12), (Decimal("1.25"), 1.25), (Decimal("1E+30"), "1e+30"), (Decimal("1e999999999"), "1E+999999999"),
    (Decimal("-9223372036854775809"), "-9223372036854775809"), (Decimal("NaN"), None), (Decimal("-Infinity"), None),
])
def test_API47_D1_plain_number(value: Any, expected: Any) -> None:
    got = plain_number(value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("value", "expected"), [
    (3, 3), (3.9, 3), (Decimal("7.5"), 7), (I64_MAX, I64_MAX), (I64_MAX + 1, None), (1e30, None),
    (Decimal("1e30"), None), (Decimal("1e999999999"), None), (Decimal("NaN"), None), (math.inf, None),
    (True, None), ("3", None), (None, None),
])
def test_Q60_stored_int_checks_the_magnitude_before_converting(value: Any, expected: int | None) -> None:
    assert stored_int(value) == expected


def test_API47_D1_properties_and_traits_store_huge_numbers_as_strings_with_a_warning() -> None:
    errors: list[str] = []
    warnings: list[str] = []
    raw = {"a": 2e19, "b": [1e30, 1, {"c": -2e19}], "ok": 1.5, "": 1}
    out = properties("properties", raw, errors, warnings)
    assert errors == []
    assert out == {"a": "2e+19", "b": ["1e+30", 1, {"c": "-2e+19"}], "ok": 1.5}
    assert warnings == ["properties: dropped 1 keys longer than 255 characters or empty",
                        "properties: stored 3 numbers outside the signed 64-bit range as strings"]
    plain = {"a": 1, "b": [2.5, {"c": I64_MIN}]}
    assert properties("traits", plain, errors, warnings) is plain  # nothing to change: not even a copy


def test_API47_D1_json_safe_reads_what_storage_holds() -> None:
    stored = {"a": 20000000000000000000, "b": [10**30, {"c": -(2 * 10**19)}], "f": 1e30, "n": math.nan,
              "ok": [I64_MAX, 1.5, "x", None, True]}
    assert json_safe(stored) == {"a": "20000000000000000000", "b": ["1000000000000000000000000000000",
                                                                    {"c": "-20000000000000000000"}],
                                 "f": "1e+30", "n": None, "ok": [I64_MAX, 1.5, "x", None, True]}
    clean = {"a": [1, {"b": 2.5}]}
    assert json_safe(clean) is clean
    deep: Any = 2**70
    for _ in range(5000):  # far deeper than any stored row: no RecursionError either way
        deep = [deep]
    out = json_safe(deep)
    for _ in range(5000):
        out = out[0]
    assert out == str(2**70)


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=_JSONISH)
def test_Q60_json_safe_output_is_always_writable_and_agrees_with_the_edge(value: Any) -> None:
    out = json_safe(value)
    orjson.dumps(out)  # never raises: what a stored row holds is always answerable
    assert json_safe(out) == out  # idempotent
    if isinstance(value, int | float) and not isinstance(value, bool):
        assert out == plain_number(value)  # the read side answers what the edge would have stored


def test_API122_D3_csv_cells_with_huge_stored_numbers() -> None:
    assert csv_cell({"n": 2**70}) == '{"n":"1180591620717411303424"}'
    assert csv_cell([I64_MAX]) == f"[{I64_MAX}]"


def test_API122_D3_an_export_that_fails_half_way_says_so(app: Flask) -> None:
    """The 200 is sent before the last row is read; a failure then ends the file with an #ERROR line, after the
    rows written so far, instead of a file that looks complete."""
    from datetime import date

    def rows() -> Any:
        yield ["evt_1", "a"]
        yield ["evt_2", "b"]
        raise RuntimeError("the database went away")

    rng = Range(date(2026, 11, 1), date(2026, 11, 30), "UTC")
    with app.test_request_context("/api/v1/data/events", headers={"X-Request-Id": "csv-fail-1"}):
        from gateway.api.views import _request_id

        _request_id()
        resp = csv_download("events", rng, ["id", "x"], rows())
        text = b"".join(resp.response).decode()  # type: ignore[arg-type]
    lines = list(csv.reader(io.StringIO(text, newline="")))
    assert lines[:3] == [["id", "x"], ["evt_1", "a"], ["evt_2", "b"]]
    assert len(lines) == 4 and lines[3][0].startswith(ERROR_MARK)
    assert "after 2 rows" in lines[3][0] and "csv-fail-1" in lines[3][0]
    assert text.endswith("\r\n")


def test_API122_D3_a_complete_export_has_no_error_line(app: Flask) -> None:
    from datetime import date

    rng = Range(date(2026, 11, 1), date(2026, 11, 30), "UTC")
    with app.test_request_context("/"):
        resp = csv_download("events", rng, ["id"], iter([["evt_1"]]))
        text = b"".join(resp.response).decode()  # type: ignore[arg-type]
    assert text == "id\r\nevt_1\r\n"
