"""Currencies and money amounts (api.md API-7, API-22, API-91; attribution.md ATT-35..ATT-38).

Money is integer minor units everywhere inside Multibuzz. Amounts arrive as JSON text and are turned into
minor units here with exact decimal arithmetic, so no binary floating point ever touches a price.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = [
    "ACTIVE_CURRENCIES",
    "MAX_REVENUE",
    "RevenueParse",
    "currency_exponent",
    "format_minor",
    "is_active_currency",
    "parse_revenue",
    "render_value",
]

# ISO 4217 list one (current codes, funds, precious metals and the X-codes included), as published in 2026:
# withdrawn codes such as ANG, BGN, CUC, HRK, SLL and ZWL are absent; XAD, XCG and ZWG are present.
# Funds and metals are listed because API-91 itself names fund codes (CLF, UYI, UYW) as valid currencies.
ACTIVE_CURRENCIES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
    CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
    KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN
    MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD
    SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX
    USD USN UYI UYU UYW UZS VED VES VND VUV WST XAD XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD
    XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG
    """.split()
)

# API-91: minor units are 2 except these.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}

# API-91 / API-22: the upper bound is stated in major units, whatever the currency.
MAX_REVENUE = Decimal("999999999999.99")

# ASCII digits only: Decimal() alone would also take "1_000", "١٢" and "Infinity".
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_EMAIL_LIKE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_INVALID = "invalid"
_TOO_LARGE = "too_large"


def currency_exponent(code: str) -> int:
    """Minor-unit digits of a currency (API-91).

    Deliberately does not reject unknown codes: rows stored under a since-withdrawn currency must still
    format. Validate with `is_active_currency` at the edge.
    """
    return _EXPONENTS.get(code.upper(), 2)


def is_active_currency(code: str) -> bool:
    """API-91: three letters in any case naming an active ISO 4217 code."""
    return len(code) == 3 and code.isascii() and code.upper() in ACTIVE_CURRENCIES


def format_minor(minor: int, exponent: int) -> str:
    """API-7 / ATT-63 money text: exactly `exponent` decimals, no grouping, no exponent notation."""
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor))
    if exponent <= 0:
        return sign + digits
    digits = digits.rjust(exponent + 1, "0")
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"


def render_value(raw: object) -> str:
    """The `<v>` of API-22: strings quoted, cut to 40 characters, emails hidden; anything else as JSON."""
    if isinstance(raw, str):
        if _EMAIL_LIKE.fullmatch(raw.strip()):
            return "'[email]'"
        return "'" + (raw[:40] + "…" if len(raw) > 40 else raw) + "'"
    if isinstance(raw, bool) or raw is None:
        return json.dumps(raw)
    if isinstance(raw, float):
        return json.dumps(raw)  # shortest repr; NaN/Infinity as Python's json writes them
    if isinstance(raw, int | Decimal):
        try:
            return str(raw)
        except ValueError:  # ints beyond Python's int-to-str digit limit
            return "<integer>"
    try:
        return json.dumps(raw, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return str(raw)


@dataclass(frozen=True)
class RevenueParse:
    """Outcome of reading a `revenue` field.

    Exactly one of three shapes: no revenue (`minor` None, `error` None); an amount (`minor` set, with
    `rounded_to` when API-91 rounding changed it); or an error (`error` the full API-22 message and
    `error_kind` "invalid" or "too_large" for callers that build their own message).
    """

    minor: int | None = None
    rounded_to: str | None = None
    error: str | None = None
    error_kind: str | None = None

    @property
    def warning(self) -> str | None:
        """The API-91 warning text, when the amount was rounded."""
        return None if self.rounded_to is None else f"revenue rounded to {self.rounded_to}"


def parse_revenue(raw: object, exponent: int, render: Callable[[object], str] = render_value) -> RevenueParse:
    """Turn the JSON `revenue` value into minor units (API-91, ATT-36).

    `raw` is the value as the JSON parser produced it (int, float, Decimal, str or None). Floats are read
    through `repr()`, their shortest round-tripping text, which is the JSON text the client sent; no float
    arithmetic happens. `render` produces the `<v>` of the error message (default: API-22's rules), so a
    caller with the original JSON text can show it verbatim. Surrounding ASCII whitespace in a string is
    ignored and a blank string means no revenue, like `""`.
    """
    if raw is None or (isinstance(raw, str) and raw.strip(" \t\r\n") == ""):
        return RevenueParse()
    value = _to_decimal(raw)
    if value is None or value < 0:
        return _error(_INVALID, raw, render)
    if value > MAX_REVENUE:
        return _error(_TOO_LARGE, raw, render)
    minor, rounded = _round_half_up_minor(value, exponent)
    if minor * 100 > _MAX_CENTS * 10**exponent:  # e.g. JPY 999999999999.5 rounds above the bound
        return _error(_TOO_LARGE, raw, render)
    return RevenueParse(minor=minor, rounded_to=format_minor(minor, exponent) if rounded else None)


_MAX_CENTS = 99999999999999


def _to_decimal(raw: object) -> Decimal | None:
    if isinstance(raw, bool):  # bool is an int subclass, but `true` is not a number
        return None
    if isinstance(raw, int):
        # Keeps astronomically long ints away from Decimal; anything above 10**13 is too large anyway.
        return Decimal(min(raw, 10**13))
    if isinstance(raw, float):
        if not math.isfinite(raw):
            return None
        return Decimal(repr(raw))
    if isinstance(raw, Decimal):
        return raw if raw.is_finite() else None
    if isinstance(raw, str):
        text = raw.strip(" \t\r\n")
        if len(text) > 400 or not _NUMBER_TEXT.fullmatch(text):
            return None
        try:
            return Decimal(text)
        except InvalidOperation:  # an exponent beyond what Decimal can hold
            return None
    return None


def _error(kind: str, raw: object, render: Callable[[object], str]) -> RevenueParse:
    if kind == _TOO_LARGE:
        message = f"revenue must be at most 999999999999.99, got {render(raw)}"
    else:
        message = f"revenue must be a number >= 0, got {render(raw)}"
    return RevenueParse(error=message, error_kind=kind)


def _round_half_up_minor(value: Decimal, exponent: int) -> tuple[int, bool]:
    """Exact half-up rounding to `exponent` decimals using integers only (no context precision limits)."""
    sign, digits, exp = value.as_tuple()
    if not isinstance(exp, int):  # pragma: no cover - finite values only
        raise ValueError("finite decimal required")
    coefficient = int("".join(map(str, digits))) if digits else 0
    shift = exp + exponent
    if shift >= 0:
        result, rounded = coefficient * 10**shift, False
    elif -shift > len(digits) + 1:  # far below half a minor unit
        result, rounded = 0, coefficient != 0
    else:
        scale = 10**-shift
        result, rest = divmod(coefficient, scale)
        rounded = rest != 0
        if 2 * rest >= scale:
            result += 1
    return (-result if sign and result else result), rounded
