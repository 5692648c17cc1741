"""ATT-34 credit rounding and ATT-37 revenue splitting."""

from __future__ import annotations

from fractions import Fraction

import pytest

from core.attribution import largest_remainder_units, revenue_split, units_from_ratios


def test_ATT34_linear_three_gives_last_the_extra_unit() -> None:
    assert largest_remainder_units([Fraction(1, 3)] * 3) == [3333, 3333, 3334]


def test_ATT34_ties_go_to_later_position() -> None:
    # n = 12: 833.33 each, D = 4 → the four latest rows get the unit (ATT-17 example).
    assert largest_remainder_units([Fraction(1, 12)] * 12) == [833] * 8 + [834] * 4


def test_ATT34_largest_remainder_beats_position() -> None:
    # 0.14292, 0.28585, 0.57123 → remainders .2, .5, .3: the middle row wins although it is not last.
    raw = [Fraction(142925, 1_000_000), Fraction(285849, 1_000_000), Fraction(571226, 1_000_000)]
    assert largest_remainder_units(raw) == [1429, 2859, 5712]


def test_ATT34_u_shaped_five_middle_tie() -> None:
    third = Fraction(1, 5) / 3
    assert largest_remainder_units([Fraction(2, 5), third, third, third, Fraction(2, 5)]) == [
        4000,
        666,
        667,
        667,
        4000,
    ]


def test_ATT34_exact_values_need_no_adjustment() -> None:
    assert largest_remainder_units([Fraction(1, 4)] * 4) == [2500] * 4
    assert largest_remainder_units([Fraction(1)]) == [10_000]
    assert largest_remainder_units([]) == []


def test_ATT34_zero_credit_rows_are_kept() -> None:
    assert largest_remainder_units([Fraction(0), Fraction(1), Fraction(0)]) == [0, 10_000, 0]


def test_ATT34_common_denominator_form_matches_fractions() -> None:
    assert units_from_ratios([1] * 7, 7) == largest_remainder_units([Fraction(1, 7)] * 7)


def test_ATT34_raw_credits_not_summing_to_one_are_rejected() -> None:
    with pytest.raises(ValueError):
        largest_remainder_units([Fraction(1, 2)] * 4)


@pytest.mark.parametrize(
    ("units", "total", "expected"),
    [
        ([3333, 3333, 3334], 9999, [3333, 3333, 3333]),  # 99.99 USD
        ([3333, 3333, 3334], 10_000, [3333, 3333, 3334]),  # 100.00 USD
        ([3333, 3333, 3334], 1, [0, 0, 1]),  # 0.01 USD
        ([3333, 3333, 3334], 1000, [333, 333, 334]),  # 1000 JPY
        ([3333, 3333, 3334], 10_000, [3333, 3333, 3334]),  # 10.000 BHD
        ([4000, 2000, 4000], 9999, [3999, 2000, 4000]),  # ATT-64 u_shaped: middle 0.8, then tie → later
        ([1429, 2859, 5712], 9999, [1429, 2859, 5711]),  # ATT-64 time decay: D = 1 → paid_social
        ([3333, 3333, 3334], 4900, [1633, 1633, 1634]),  # ATT-43 inheritance example, 49.00
        ([3333, 3333, 3334], 5999, [1999, 2000, 2000]),  # ATT-38 refund example, net 59.99
        ([3333, 3333, 3334], 0, [0, 0, 0]),
    ],
)
def test_ATT37_revenue_split_examples(units: list[int], total: int, expected: list[int]) -> None:
    assert revenue_split(units, total) == expected


def test_ATT37_ties_go_to_later_position() -> None:
    assert revenue_split([5000, 5000], 1) == [0, 1]
    assert revenue_split([2500] * 4, 3) == [0, 1, 1, 1]


def test_ATT37_rejects_units_not_summing_to_one_credit() -> None:
    with pytest.raises(ValueError):
        revenue_split([5000, 4999], 100)
    with pytest.raises(ValueError):
        revenue_split([10_000], -1)


def test_ATT37_handles_amounts_beyond_int64_products() -> None:
    total = 99_999_999_999_999  # API-91 maximum in cents
    parts = revenue_split([3333, 3333, 3334], total)
    assert sum(parts) == total
