"""Which JSON numbers storage may keep as numbers (quality.md Q-60; docs/api.md API-47-D1).

PostgreSQL keeps a JSON number exactly, so a float such as 2e19 comes back from a JSONB column as the integer
20000000000000000000, which no 64-bit JSON writer (orjson) can answer with: one such property made every later
read of the tenant's events fail. So a number that is not a signed 64-bit integer or a float below 2**63 in
magnitude is written as its shortest decimal string, and reads convert whatever storage already holds the same
way. One rule for every source (REST API, pixel, sGTM) and every read path; pure, no I/O.

A ``Decimal`` (the connectors parse bodies with decimal floats, for money) is judged by its magnitude *before* any
conversion: ``int(Decimal('1e999999'))`` alone takes longer than any request may.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

__all__ = ["I64_MAX", "I64_MIN", "json_safe", "out_of_range", "plain_number", "stored_int"]

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
_FLOAT_LIMIT = 2.0**63  # exactly representable; floats at or beyond it are integers outside i64 once stored
_DECIMAL_DIGITS = 18  # a Decimal whose adjusted exponent is above this is beyond 10**19 > 2**63
_FLOAT_EXPONENT = 307  # a Decimal whose adjusted exponent is at most this converts to a finite float


def out_of_range(v: object) -> bool:
    """A number a JSON value may not keep as a number (ints outside i64, floats of magnitude >= 2**63, NaN,
    the infinities); never true for anything that is not an int or a float."""
    t = type(v)
    if t is float:
        return not -_FLOAT_LIMIT <= v < _FLOAT_LIMIT  # type: ignore[operator]  # also true for NaN and inf
    if t is int:
        return not I64_MIN <= v <= I64_MAX  # type: ignore[operator]
    return False


def plain_number(v: int | float | Decimal) -> int | float | str | None:
    """The number itself when it is stored and read back exactly; otherwise the shortest decimal string that
    reads back as the same number (``2e19`` -> ``"2e+19"``, ``2**64`` -> ``"18446744073709551616"``); ``None`` for
    NaN and the infinities, which JSON cannot hold. A Decimal becomes the int or float JSON would have given,
    under the same rule (so ``Decimal('1e30')`` gives ``"1e+30"`` as the float 1e30 does); one beyond any float
    keeps its exact text (``"1E+5000"``)."""
    if isinstance(v, Decimal):
        if not v.is_finite():
            return None
        if v.adjusted() > _FLOAT_EXPONENT:
            return str(v)  # beyond any float: its exact text
        v = float(v) if v.adjusted() > _DECIMAL_DIGITS or v != v.to_integral_value() else int(v)
    if not out_of_range(v):
        return v
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else None
    return str(v)


def stored_int(v: object) -> int | None:
    """An integer within signed 64 bits from a parsed JSON number (int, float or Decimal), cut toward zero like
    ``int()``; ``None`` for anything else (booleans, non-finite values, magnitudes beyond i64)."""
    if isinstance(v, bool) or not isinstance(v, int | float | Decimal):
        return None
    if isinstance(v, Decimal):
        if not v.is_finite() or v.adjusted() > _DECIMAL_DIGITS:
            return None
    elif isinstance(v, float) and not math.isfinite(v):
        return None
    n = int(v)
    return n if I64_MIN <= n <= I64_MAX else None


def _holds_unsafe(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif out_of_range(node):
            return True
    return False


def json_safe(value: Any) -> Any:
    """A stored JSON value every JSON writer can answer with: what `plain_number` gives for each unsafe number.
    Returns ``value`` itself when nothing needs a change (the common case: one walk, no copy); iterative, so no
    stored depth can raise RecursionError."""
    if not _holds_unsafe(value):
        return value
    if not isinstance(value, dict | list):
        return plain_number(value)
    root: dict[Any, Any] | list[Any] = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, dict[Any, Any] | list[Any]]] = [(value, root)]
    while stack:
        src, dst = stack.pop()
        for key, item in (src.items() if isinstance(src, dict) else enumerate(src)):
            out: Any = item
            if isinstance(item, dict | list):
                out = {} if isinstance(item, dict) else []
                stack.append((item, out))
            elif out_of_range(item):
                out = plain_number(item)
            if isinstance(dst, dict):
                dst[key] = out
            else:
                dst.append(out)
    return root
