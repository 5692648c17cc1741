"""The shared CSV writer (gateway/csv_stream.py): api.md API-122 and dashboard.md DSH-23 write the same file."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

from core.reports import Range
from gateway.csv_stream import FLUSH_BYTES, FORMULA_PREFIXES, csv_cell, csv_download

NOV = Range(date(2026, 11, 1), date(2026, 11, 30), "UTC")


def _download(rows: list[list[Any]], header: tuple[str, ...] = ("a", "b")) -> tuple[Any, bytes]:
    app = Flask("csv-test")
    with app.test_request_context("/"):
        resp = csv_download("events", NOV, header, iter(rows))
        body = b"".join(resp.response)
    return resp, body


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_API122_DSH23_a_cell_a_spreadsheet_would_run_gets_a_leading_apostrophe(prefix: str) -> None:
    assert FORMULA_PREFIXES == ("=", "+", "-", "@", "\t", "\r")
    assert csv_cell(prefix + "cmd|' /C calc'!A0") == "'" + prefix + "cmd|' /C calc'!A0"


@pytest.mark.parametrize("value", ["SUM(A1)", "a=b", "1-2", "user@example.com", " =1", "'=1", "", "naïve"])
def test_API122_other_cells_are_left_alone(value: str) -> None:
    assert csv_cell(value) == value


def test_API122_the_rule_applies_to_the_rendered_text_of_any_value() -> None:
    assert csv_cell(-5) == "-5"  # a plain number stays a number a spreadsheet can sum (a refund, -40.00)
    assert csv_cell(Decimal("-0.5000")) == "-0.5000" and csv_cell("-40.00") == "-40.00"
    assert csv_cell("-1+2") == "'-1+2" and csv_cell("-5e3") == "'-5e3"  # anything else after "-" is neutralised
    assert csv_cell({"k": "=1"}) == '{"k":"=1"}'  # compact JSON starts with "{": nothing to neutralise
    assert csv_cell(["=1"]) == '["=1"]'


def test_API122_D1_values_are_written_as_in_json() -> None:
    assert csv_cell(None) == ""
    assert (csv_cell(True), csv_cell(False)) == ("true", "false")
    assert csv_cell(datetime(2026, 11, 20, 15, 30, tzinfo=UTC)) == "2026-11-20T15:30:00Z"
    assert csv_cell(datetime(2026, 11, 20, 15, 30, 0, 123456, tzinfo=UTC)) == "2026-11-20T15:30:00.123456Z"
    assert csv_cell(date(2026, 11, 20)) == "2026-11-20"
    assert csv_cell({"b": 1, "a": [1, 2]}) == '{"b":1,"a":[1,2]}'


def test_API122_rfc4180_crlf_utf8_without_bom_and_the_filename() -> None:
    resp, body = _download([["=1+1", 'say "hi", then\r\nleave'], [None, "é"]])
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="events_2026-11-01_2026-11-30.csv"'
    assert not body.startswith(b"\xef\xbb\xbf")
    assert body == 'a,b\r\n\'=1+1,"say ""hi"", then\r\nleave"\r\n,é\r\n'.encode()
    assert list(csv.reader(io.StringIO(body.decode(), newline=""))) == [
        ["a", "b"], ["'=1+1", 'say "hi", then\r\nleave'], ["", "é"]]


def test_API122_rows_are_streamed_in_chunks() -> None:
    rows = [[str(i), "x" * 100] for i in range(500)]
    app = Flask("csv-test")
    with app.test_request_context("/"):
        chunks = list(csv_download("events", NOV, ("a", "b"), iter(rows)).response)
    assert len(chunks) > 1 and all(len(c) <= FLUSH_BYTES + 200 for c in chunks)
    assert b"".join(chunks).count(b"\r\n") == 501
