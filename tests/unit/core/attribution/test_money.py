"""Currencies and revenue parsing: api.md API-7, API-22, API-91; attribution.md ATT-35, ATT-36."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.money import (
    ACTIVE_CURRENCIES,
    currency_exponent,
    format_minor,
    is_active_currency,
    parse_revenue,
)

INVALID = "revenue must be a number >= 0, got "
TOO_LARGE = "revenue must be at most 999999999999.99, got "


@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("JPY", 0),
        ("jpy", 0),
        ("KRW", 0),
        ("UYI", 0),
        ("XOF", 0),
        ("BHD", 3),
        ("KWD", 3),
        ("TND", 3),
        ("CLF", 4),
        ("UYW", 4),
        ("XAU", 2),
    ],
)
def test_API91_currency_exponents(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent


def test_API91_every_listed_exception_is_an_active_currency() -> None:
    listed = (
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
        " BHD IQD JOD KWD LYD OMR TND CLF UYW"
    )
    assert set(listed.split()) <= ACTIVE_CURRENCIES


def test_API91_active_currencies_any_case() -> None:
    assert is_active_currency("USD") and is_active_currency("usd") and is_active_currency("Eur")
    assert all(len(c) == 3 and c.isupper() for c in ACTIVE_CURRENCIES)
    assert len(ACTIVE_CURRENCIES) > 170


@pytest.mark.parametrize("code", ["HRK", "ZWL", "XYZ", "US", "USDD", "", "ÜSD", "US1"])
def test_API91_withdrawn_or_malformed_codes_are_not_active(code: str) -> None:
    assert not is_active_currency(code)


@pytest.mark.parametrize(
    ("minor", "exponent", "text"),
    [
        (9999, 2, "99.99"),
        (1500, 0, "1500"),
        (3333, 3, "3.333"),
        (5, 2, "0.05"),
        (0, 2, "0.00"),
        (0, 0, "0"),
        (1, 4, "0.0001"),
        (99_999_999_999_999, 2, "999999999999.99"),
    ],
)
def test_API7_format_minor(minor: int, exponent: int, text: str) -> None:
    assert format_minor(minor, exponent) == text


@pytest.mark.parametrize(
    ("raw", "exponent", "minor"),
    [
        (99.99, 2, 9999),
        ("99.99", 2, 9999),
        (Decimal("99.99"), 2, 9999),
        (100, 2, 10000),
        ("0.4999e2", 2, 4999),
        ("1E+2", 0, 100),
        (1500, 0, 1500),
        ("10.000", 3, 10000),
        ("0", 2, 0),
        ("-0", 2, 0),
        (".5", 2, 50),
        ("+5", 2, 500),
        (" 12.5 ", 2, 1250),
        ("999999999999.99", 2, 99_999_999_999_999),
    ],
)
def test_API91_exact_amounts(raw: object, exponent: int, minor: int) -> None:
    parsed = parse_revenue(raw, exponent)
    assert (parsed.minor, parsed.rounded_to, parsed.error) == (minor, None, None)


@pytest.mark.parametrize(
    ("raw", "exponent", "minor", "rounded_to"),
    [
        ("10.005", 2, 1001, "10.01"),  # ATT-36 example: half-up
        (10.005, 2, 1001, "10.01"),  # repr(10.005) == '10.005' although the binary value is below
        ("10.004", 2, 1000, "10.00"),
        (0.1 + 0.2, 2, 30, "0.30"),  # JSON text 0.30000000000000004
        ("1.5", 0, 2, "2"),
        ("2.5", 0, 3, "3"),  # half-up, not half-even
        ("3.3335", 3, 3334, "3.334"),
        ("0.00001", 4, 0, "0.0000"),
        ("1e-999999999", 2, 0, "0.00"),
    ],
)
def test_API91_more_decimals_are_rounded_half_up_with_warning(
    raw: object, exponent: int, minor: int, rounded_to: str
) -> None:
    parsed = parse_revenue(raw, exponent)
    assert (parsed.minor, parsed.rounded_to, parsed.error) == (minor, rounded_to, None)
    assert parsed.warning == f"revenue rounded to {rounded_to}"


def test_API91_trailing_zeros_are_not_rounding() -> None:
    parsed = parse_revenue("49.9900", 2)
    assert (parsed.minor, parsed.rounded_to, parsed.warning) == (4999, None, None)


@pytest.mark.parametrize("raw", [None, ""])
def test_API91_null_and_empty_mean_no_revenue(raw: object) -> None:
    assert parse_revenue(raw, 2) == parse_revenue(None, 2)
    assert parse_revenue(raw, 2).minor is None and parse_revenue(raw, 2).error is None


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("abc", "'abc'"),
        (-1, "-1"),
        (-0.01, "-0.01"),
        ("-5", "'-5'"),
        (True, "true"),
        (False, "false"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        ("NaN", "'NaN'"),
        ("Infinity", "'Infinity'"),
        (Decimal("NaN"), "NaN"),
        ("1_000", "'1_000'"),
        ("١٢", "'١٢'"),
        ("1,5", "'1,5'"),
        ([1], "[1]"),
        ({"amount": 1}, '{"amount":1}'),
        ("bob@example.com", "'[email]'"),
        ("x" * 41, "'" + "x" * 40 + "…'"),
        ("1e99999999999999999999", "'1e99999999999999999999'"),
    ],
)
def test_API22_invalid_revenue_message(raw: object, shown: str) -> None:
    parsed = parse_revenue(raw, 2)
    assert parsed.minor is None
    assert parsed.error_kind == "invalid"
    assert parsed.error == INVALID + shown


@pytest.mark.parametrize(
    ("raw", "exponent"),
    [
        ("999999999999.991", 2),
        (1e16, 2),
        (10**12, 2),
        (10**400, 2),
        ("1e999999999", 2),
        ("999999999999.5", 0),  # rounds up beyond the bound
    ],
)
def test_API22_too_large_revenue(raw: object, exponent: int) -> None:
    parsed = parse_revenue(raw, exponent)
    assert parsed.minor is None and parsed.error_kind == "too_large"
    assert parsed.error is not None and parsed.error.startswith(TOO_LARGE)


def test_API22_caller_can_render_the_value() -> None:
    parsed = parse_revenue("abc", 2, render=lambda raw: "<<abc>>")
    assert parsed.error == INVALID + "<<abc>>"


def test_API91_largest_allowed_int_is_accepted() -> None:
    assert parse_revenue(999_999_999_999, 0).minor == 999_999_999_999
