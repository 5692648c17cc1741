"""Largest-remainder rounding of credits and revenue (attribution.md ATT-34, ATT-37).

Both steps work on integers only: a row's raw credit is an exact rational, so comparing remainders exactly
makes ties real ties, which the rules break towards the later journey position.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from fractions import Fraction

__all__ = ["UNITS", "largest_remainder_units", "revenue_split", "units_from_ratios"]

UNITS = 10_000  # one credit = 10,000 units: credits are stored with exactly 4 decimals (ATT-34)


def _bump_largest(base: list[int], remainders: Sequence[int], count: int) -> list[int]:
    """Add 1 to the `count` rows with the largest remainder; equal remainders: later index first."""
    if not 0 <= count <= len(base):
        raise ValueError(f"cannot distribute {count} leftover units over {len(base)} rows")
    if count:
        for i in heapq.nlargest(count, range(len(base)), key=lambda i: (remainders[i], i)):
            base[i] += 1
    return base


def units_from_ratios(numerators: Sequence[int], denominator: int) -> list[int]:
    """ATT-34 for raw credits numerators[i] / denominator, which must sum to 1 (within one unit).

    The common-denominator form lets models such as linear avoid building n Fraction objects.
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    base: list[int] = []
    remainders: list[int] = []
    for numerator in numerators:
        whole, rest = divmod(numerator * UNITS, denominator)
        base.append(whole)
        remainders.append(rest)
    return _bump_largest(base, remainders, UNITS - sum(base))


def largest_remainder_units(raw: Sequence[Fraction]) -> list[int]:
    """ATT-34: raw credits (exact, summing to 1) to 4-dp units summing to exactly 10,000."""
    if not raw:
        return []
    denominator = math.lcm(*(r.denominator for r in raw))
    return units_from_ratios([r.numerator * (denominator // r.denominator) for r in raw], denominator)


def revenue_split(units: Sequence[int], total_minor: int) -> list[int]:
    """ATT-37: split M minor units by stored 4-dp credits; the parts sum to exactly M.

    Always fed the stored units, never raw credits, so fresh attribution, inheritance (ATT-43) and refunds
    (ATT-38) give the same numbers for the same rows.
    """
    if total_minor < 0:
        raise ValueError("total_minor must be >= 0")
    if units and sum(units) != UNITS:
        raise ValueError(f"credit units must sum to {UNITS}, got {sum(units)}")
    base: list[int] = []
    remainders: list[int] = []
    for k in units:
        whole, rest = divmod(total_minor * k, UNITS)
        base.append(whole)
        remainders.append(rest)
    if not units:
        return []
    return _bump_largest(base, remainders, total_minor - sum(base))
