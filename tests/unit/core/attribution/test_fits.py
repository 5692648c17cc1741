"""Data-driven fits (attribution.md §5, ATT-23..ATT-29, worked example ATT-64).

The Markov removal effects are cross-checked against an independent dense-matrix absorbing-chain solve (the
fundamental matrix N = (I − Q)⁻¹ and B = N·R, numpy), not the Gauss–Jordan / LU code path of fits.py. Shapley
values are checked against the textbook permutation definition in exact rationals. Property tests are
derandomized so every run sees the same examples (ATT-33 applies to the tests too).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from itertools import permutations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.attribution.fits import (
    MAX_SHAPLEY_PLAYERS,
    JourneyPath,
    canonical,
    fit_markov,
    fit_shapley,
    merge_paths,
    removal_effects,
    shapley_values,
)
from core.attribution.models import FIT_INSUFFICIENT_DATA, FIT_READY

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)
TOLERANCE = 1e-9

# --- helpers: an independent dense absorbing-chain solver ----------------------------------------------

_START_LABEL = "<start>"
_CONV_LABEL = "<conversion>"
_NULL_LABEL = "<null>"


def _trail(channels: Sequence[str], converted: bool, order: int) -> list[object]:
    """START, the order-k states (tuples of the last ≤ k channels), then the absorbing end."""
    trail: list[object] = [_START_LABEL]
    window: list[str] = []
    for ch in channels:
        window.append(ch)
        if len(window) > order:
            window.pop(0)
        trail.append(tuple(window))
    trail.append(_CONV_LABEL if converted else _NULL_LABEL)
    return trail


def _dense_absorption(paths: Sequence[JourneyPath], order: int, removed: str | None) -> float:
    """P(absorbed in CONVERSION | START) from the full transition matrix via B = (I − Q)⁻¹ · R."""
    labels: list[object] = [_START_LABEL]
    seen: set[object] = {_START_LABEL}
    trails = [(_trail(p.channels, p.converted, order), p.count) for p in paths if p.channels and p.count]
    for trail, _ in trails:
        for label in trail[1:-1]:
            if label not in seen:
                seen.add(label)
                labels.append(label)
    transient = len(labels)
    labels += [_CONV_LABEL, _NULL_LABEL]
    pos = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)))
    for trail, n in trails:
        for a, b in zip(trail, trail[1:], strict=False):
            counts[pos[a], pos[b]] += n
    if removed is not None:  # every transition into a state containing the channel goes to NULL instead
        for label, j in pos.items():
            if isinstance(label, tuple) and removed in label:
                counts[:, pos[_NULL_LABEL]] += counts[:, j]
                counts[:, j] = 0.0
    rows = counts[:transient].sum(axis=1, keepdims=True)
    probs = np.divide(counts[:transient], rows, out=np.zeros_like(counts[:transient]), where=rows > 0)
    q = probs[:, :transient]
    r = probs[:, transient:]
    fundamental = np.linalg.inv(np.eye(transient) - q)
    b = fundamental @ r
    return float(b[pos[_START_LABEL], 0])


def _dense_removal_effects(paths: Sequence[JourneyPath], order: int) -> tuple[float, dict[str, float]]:
    p = _dense_absorption(paths, order, None)
    channels = sorted({c for path in paths for c in path.channels})
    return p, {c: 1.0 - _dense_absorption(paths, order, c) / p for c in channels}


def _generated_corpus(seed: int, n_paths: int = 3000) -> list[JourneyPath]:
    """~8 channels, lengths 1..6, some repeats, conversion odds that depend on the channels used."""
    rng = random.Random(seed)
    channels = ["affiliate", "direct", "display", "email", "organic_search", "paid_search", "paid_social",
                "referral"]
    popularity = [3, 6, 2, 4, 8, 5, 7, 1]
    lift = {"affiliate": 0.02, "direct": 0.06, "display": -0.03, "email": 0.12, "organic_search": 0.04,
            "paid_search": 0.08, "paid_social": 0.01, "referral": 0.05}
    corpus = []
    for _ in range(n_paths):
        seq: list[str] = []
        for _ in range(rng.randint(1, 6)):
            if seq and rng.random() < 0.2:
                seq.append(seq[-1])  # consecutive repeat: a self-loop in order 1
            else:
                seq.append(rng.choices(channels, weights=popularity)[0])
        p_conv = min(0.9, max(0.0, 0.05 + sum(lift[c] for c in set(seq)) + 0.02 * len(seq)))
        corpus.append(JourneyPath(tuple(seq), rng.random() < p_conv, rng.choice([1, 1, 1, 2, 3, 5])))
    return corpus


def _totals(paths: Sequence[JourneyPath]) -> tuple[int, int]:
    return sum(p.count for p in paths if p.converted), sum(p.count for p in paths)


def _v(paths: Sequence[JourneyPath], coalition: frozenset[str]) -> Fraction:
    """ATT-27 straight from the definition: conversion rate of the journeys using only channels from S."""
    inside = [p for p in paths if p.channels and set(p.channels) <= coalition]
    total = sum(p.count for p in inside)
    if not coalition or total == 0:
        return Fraction(0)
    return Fraction(sum(p.count for p in inside if p.converted), total)


def _shapley_by_permutations(paths: Sequence[JourneyPath]) -> dict[str, Fraction]:
    """Average marginal contribution over all orderings of the players."""
    players = sorted({c for p in paths for c in p.channels})
    cache: dict[frozenset[str], Fraction] = {}

    def v(s: frozenset[str]) -> Fraction:
        if s not in cache:
            cache[s] = _v(paths, s)
        return cache[s]

    totals = dict.fromkeys(players, Fraction(0))
    orderings = 0
    for ordering in permutations(players):
        orderings += 1
        before: frozenset[str] = frozenset()
        for c in ordering:
            after = before | {c}
            totals[c] += v(after) - v(before)
            before = after
    return {c: t / orderings for c, t in totals.items()}


# --- strategies --------------------------------------------------------------------------------------

def _paths(alphabet: str, max_len: int = 4, max_rows: int = 10) -> st.SearchStrategy[list[JourneyPath]]:
    row = st.builds(
        JourneyPath,
        channels=st.lists(st.sampled_from(list(alphabet)), min_size=1, max_size=max_len).map(tuple),
        converted=st.booleans(),
        count=st.integers(min_value=1, max_value=6),
    )
    return st.lists(row, min_size=1, max_size=max_rows)


small_corpora = _paths("abcd")
five_channel_corpora = _paths("abcde", max_len=5, max_rows=12)


# --- ATT-26: cross-check against the dense fundamental-matrix solve --------------------------------------

def test_ATT26_order1_removal_effects_match_dense_fundamental_matrix() -> None:
    corpus = _generated_corpus(seed=20261120)
    converting, total = _totals(corpus)
    fit = fit_markov(corpus, order=1)
    assert fit.status == FIT_READY
    assert (fit.converting_paths, fit.total_paths) == (converting, total)
    assert len(fit.channels) == 8

    dense_p, dense_re = _dense_removal_effects(corpus, order=1)
    assert abs(float(fit.conversion_probability) - dense_p) < TOLERANCE
    assert set(fit.values) == set(dense_re)
    for c, value in fit.values.items():
        assert abs(float(value) - dense_re[c]) < TOLERANCE, c

    exact_p, exact_re = removal_effects(merge_paths(corpus), order=1)
    assert isinstance(exact_p, Fraction)
    assert abs(float(exact_p) - dense_p) < TOLERANCE
    for c, value in exact_re.items():
        assert isinstance(value, Fraction)
        assert abs(float(value) - dense_re[c]) < TOLERANCE, c
    # The data set is not degenerate: the channels really differ in removal effect.
    assert len({round(v, 6) for v in dense_re.values()}) == 8


@pytest.mark.parametrize("order", [2, 3])
def test_ATT26_higher_order_removal_effects_match_dense_fundamental_matrix(order: int) -> None:
    corpus = _generated_corpus(seed=7 + order, n_paths=1500)
    fit = fit_markov(corpus, order=order)
    assert fit.status == FIT_READY

    dense_p, dense_re = _dense_removal_effects(corpus, order=order)
    float_p, float_re = removal_effects(merge_paths(corpus), order=order)
    assert isinstance(float_p, float)
    assert abs(float_p - dense_p) < TOLERANCE
    assert abs(float(fit.conversion_probability) - dense_p) < TOLERANCE
    assert set(fit.values) == set(dense_re) == set(float_re)
    for c in dense_re:
        assert abs(float_re[c] - dense_re[c]) < TOLERANCE, c
        assert abs(float(fit.values[c]) - dense_re[c]) < TOLERANCE, c
    # Higher order is a different model: its removal effects are not the order-1 ones.
    _, order1 = _dense_removal_effects(corpus, order=1)
    assert any(abs(order1[c] - dense_re[c]) > 1e-4 for c in dense_re)


@pytest.mark.parametrize("order", [2, 3])
def test_ATT26_higher_order_solve_runs_single_threaded(order: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """ATT-26: the binary64 solve is single-threaded, whatever the BLAS thread count of the process."""
    from threadpoolctl import threadpool_info, threadpool_limits

    seen: list[int] = []
    solve = np.linalg.solve

    def recording_solve(a: object, b: object) -> object:
        seen.extend(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")
        return solve(a, b)

    monkeypatch.setattr(np.linalg, "solve", recording_solve)
    corpus = _generated_corpus(seed=3, n_paths=200)
    with threadpool_limits(limits=4, user_api="blas"):  # as a process with BLAS threads would run it
        outside = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        removal_effects(merge_paths(corpus), order=order)
    assert outside and max(outside) > 1, "the test needs a threaded BLAS to mean anything"
    assert seen and set(seen) == {1}


def test_ATT26_dense_cross_check_on_small_hand_example() -> None:
    # a → b → CONV twice, a → NULL once, b → NULL once: P = 2/4, removing b leaves only nothing converting.
    corpus = [JourneyPath(("a", "b"), True, 2), JourneyPath(("a",), False, 1), JourneyPath(("b",), False, 1)]
    p, re = removal_effects(merge_paths(corpus), order=1)
    assert p == Fraction(1, 2)
    assert re["b"] == 1
    dense_p, dense_re = _dense_removal_effects(corpus, order=1)
    assert abs(dense_p - 0.5) < TOLERANCE
    assert abs(float(re["a"]) - dense_re["a"]) < TOLERANCE


# --- ATT-26 properties ---------------------------------------------------------------------------------

@PROPERTY
@given(small_corpora)
def test_ATT26_probability_equals_converting_share_exactly(paths: list[JourneyPath]) -> None:
    converting, total = _totals(paths)
    p, _ = removal_effects(merge_paths(paths), order=1)
    assert p == Fraction(converting, total)
    fit = fit_markov(paths, order=1, min_conversions=0, min_journeys=0)
    assert fit.conversion_probability == canonical(Fraction(converting, total))


@PROPERTY
@given(small_corpora)
def test_ATT26_order2_probability_equals_converting_share(paths: list[JourneyPath]) -> None:
    converting, total = _totals(paths)
    p, _ = removal_effects(merge_paths(paths), order=2)
    assert abs(p - converting / total) < TOLERANCE


@PROPERTY
@given(small_corpora, st.sampled_from([1, 2, 3]))
def test_ATT26_removal_effects_between_zero_and_one(paths: list[JourneyPath], order: int) -> None:
    _, effects = removal_effects(merge_paths(paths), order=order)
    assert set(effects) == {c for p in paths for c in p.channels}
    slack = 0 if order == 1 else 1e-12  # orders 2–3 are binary64 solves
    for value in effects.values():
        assert -slack <= value <= 1 + slack
    fit = fit_markov(paths, order=order, min_conversions=0, min_journeys=0)
    for value in fit.values.values():
        assert Decimal(0) <= value <= Decimal(1)


@PROPERTY
@given(st.data(), small_corpora, st.sampled_from([1, 2]))
def test_ATT33_fits_do_not_depend_on_path_order(data: st.DataObject, paths: list[JourneyPath], order: int) -> None:
    shuffled = data.draw(st.permutations(paths))
    assert fit_markov(shuffled, order=order, min_conversions=0, min_journeys=0) == fit_markov(
        paths, order=order, min_conversions=0, min_journeys=0)
    assert fit_shapley(shuffled, min_conversions=0, min_journeys=0) == fit_shapley(
        paths, min_conversions=0, min_journeys=0)


@PROPERTY
@given(st.data(), small_corpora, st.sampled_from([1, 2]))
def test_ATT23_splitting_a_row_count_gives_the_same_fit(data: st.DataObject, paths: list[JourneyPath],
                                                        order: int) -> None:
    i = data.draw(st.integers(min_value=0, max_value=len(paths) - 1))
    row = paths[i]
    doubled = JourneyPath(row.channels, row.converted, row.count + data.draw(st.integers(1, 5)))
    base = [*paths[:i], doubled, *paths[i + 1:]]
    k = data.draw(st.integers(min_value=1, max_value=doubled.count - 1))
    split = [*paths[:i], JourneyPath(row.channels, row.converted, k),
             JourneyPath(row.channels, row.converted, doubled.count - k), *paths[i + 1:]]
    assert merge_paths(split) == merge_paths(base)
    assert fit_markov(split, order=order, min_conversions=0, min_journeys=0) == fit_markov(
        base, order=order, min_conversions=0, min_journeys=0)
    assert fit_shapley(split, min_conversions=0, min_journeys=0) == fit_shapley(
        base, min_conversions=0, min_journeys=0)


@PROPERTY
@given(small_corpora)
def test_ATT26_interchangeable_channels_get_equal_removal_effects(paths: list[JourneyPath]) -> None:
    swap = {"a": "b", "b": "a"}
    mirrored = paths + [JourneyPath(tuple(swap.get(c, c) for c in p.channels), p.converted, p.count)
                        for p in paths]
    _, effects = removal_effects(merge_paths(mirrored), order=1)
    if "a" in effects:
        assert effects["a"] == effects["b"]


# --- ATT-27 / ATT-28 Shapley ---------------------------------------------------------------------------

@PROPERTY
@given(small_corpora)
def test_ATT28_efficiency_sum_equals_v_of_all_players(paths: list[JourneyPath]) -> None:
    values, excluded = shapley_values(merge_paths(paths))
    assert excluded == ()
    players = frozenset(c for p in paths for c in p.channels)
    assert set(values) == players
    converting, total = _totals(paths)
    assert sum(values.values(), Fraction(0)) == _v(paths, players) == Fraction(converting, total)


@PROPERTY
@given(small_corpora)
def test_ATT28_symmetric_channels_get_equal_values(paths: list[JourneyPath]) -> None:
    swap = {"a": "b", "b": "a"}
    mirrored = paths + [JourneyPath(tuple(swap.get(c, c) for c in p.channels), p.converted, p.count)
                        for p in paths]
    values, _ = shapley_values(merge_paths(mirrored))
    if "a" in values:
        assert values["a"] == values["b"]
    fit = fit_shapley(mirrored, min_conversions=0, min_journeys=0)
    if "a" in fit.values:
        assert fit.values["a"] == fit.values["b"]  # ATT-29: the tie survives canonicalization


@PROPERTY
@given(five_channel_corpora)
def test_ATT28_matches_permutation_definition(paths: list[JourneyPath]) -> None:
    values, excluded = shapley_values(merge_paths(paths))
    assert excluded == ()
    assert values == _shapley_by_permutations(paths)


def test_ATT28_can_be_negative_for_a_channel_that_drags_conversion_down() -> None:
    paths = [JourneyPath(("good",), True, 50), JourneyPath(("good",), False, 50),
             JourneyPath(("good", "bad"), False, 100), JourneyPath(("bad",), False, 100)]
    values, _ = shapley_values(merge_paths(paths))
    assert values == _shapley_by_permutations(paths)
    assert values["bad"] < 0 < values["good"]
    assert sum(values.values()) == Fraction(50, 300)


def _seventeen_channel_corpus() -> tuple[list[JourneyPath], list[str]]:
    rng = random.Random(1715)
    popular = [f"ch{i:02d}" for i in range(15)]
    paths = []
    for _ in range(150):
        seq = tuple(rng.choice(popular) for _ in range(rng.randint(1, 4)))
        paths.append(JourneyPath(seq, rng.random() < 0.3, rng.randint(1, 3)))
    for c in popular:  # every popular channel in at least 10 journeys
        paths.append(JourneyPath((c,), False, 10))
    # The two rare channels sort *before* the popular ones, so only the reach ranking can exclude them.
    paths.append(JourneyPath(("a_rare", "ch00"), True, 2))
    paths.append(JourneyPath(("b_rare",), True, 1))
    paths.append(JourneyPath(("ch03", "b_rare", "ch04"), False, 2))
    return paths, popular


def test_ATT28_more_than_15_channels_excludes_the_least_reached() -> None:
    paths, popular = _seventeen_channel_corpus()
    fit = fit_shapley(paths, min_conversions=1, min_journeys=1)
    assert fit.status == FIT_READY
    assert len(fit.channels) == 17
    assert fit.excluded_channels == ("a_rare", "b_rare")
    assert fit.values["a_rare"] == Decimal(0) and fit.values["b_rare"] == Decimal(0)
    assert set(fit.values) == set(fit.channels)

    values, excluded = shapley_values(merge_paths(paths))
    assert excluded == ("a_rare", "b_rare")
    assert set(values) == set(popular) and len(values) == MAX_SHAPLEY_PLAYERS
    # Efficiency over the paths with the excluded channels removed (paths left empty are dropped).
    stripped = [JourneyPath(tuple(c for c in p.channels if c not in excluded), p.converted, p.count)
                for p in paths]
    stripped = [p for p in stripped if p.channels]
    converting, total = _totals(stripped)
    assert sum(values.values(), Fraction(0)) == Fraction(converting, total) == _v(stripped, frozenset(popular))
    for c in popular:
        assert fit.values[c] == canonical(values[c])


def test_ATT28_exclusion_ties_are_broken_by_code_point() -> None:
    popular = [f"p{i:02d}" for i in range(14)]
    paths = [JourneyPath((c,), i % 2 == 0, 5) for i, c in enumerate(popular)]
    paths += [JourneyPath(("z",), True, 1), JourneyPath(("x",), True, 1), JourneyPath(("y",), False, 1)]
    values, excluded = shapley_values(merge_paths(paths))
    assert excluded == ("y", "z")  # x, y, z tie on one journey each: x ranks first and stays a player
    assert "x" in values and len(values) == MAX_SHAPLEY_PLAYERS
    assert sum(values.values(), Fraction(0)) == Fraction(7 * 5 + 1, 14 * 5 + 1)


# --- ATT-24 minimum data -------------------------------------------------------------------------------

def _corpus_with(converting: int, total: int) -> list[JourneyPath]:
    return [JourneyPath(("email", "direct"), True, converting),
            JourneyPath(("email",), False, total - converting)]


@pytest.mark.parametrize(
    ("min_conversions", "min_journeys", "ready"),
    [
        (100, 1000, True),   # both equal: ready
        (101, 1000, False),  # one conversion short
        (100, 1001, False),  # one journey short
        (99, 999, True),
        (101, 1001, False),
    ],
)
def test_ATT24_minimum_data_boundaries(min_conversions: int, min_journeys: int, ready: bool) -> None:
    paths = _corpus_with(converting=100, total=1000)
    for fit in (fit_markov(paths, 1, min_conversions, min_journeys),
                fit_markov(paths, 2, min_conversions, min_journeys),
                fit_shapley(paths, min_conversions, min_journeys)):
        assert (fit.converting_paths, fit.total_paths) == (100, 1000)
        assert fit.channels == ("direct", "email")
        if ready:
            assert fit.status == FIT_READY
            assert set(fit.values) == {"direct", "email"}
        else:
            assert fit.status == FIT_INSUFFICIENT_DATA
            assert dict(fit.values) == {}
            assert fit.conversion_probability is None
            assert fit.excluded_channels == ()


def test_ATT24_defaults_are_100_conversions_and_1000_journeys() -> None:
    assert fit_markov(_corpus_with(100, 1000)).status == FIT_READY
    assert fit_shapley(_corpus_with(100, 1000)).status == FIT_READY
    assert fit_markov(_corpus_with(99, 1000)).status == FIT_INSUFFICIENT_DATA
    assert fit_shapley(_corpus_with(100, 999)).status == FIT_INSUFFICIENT_DATA


@PROPERTY
@given(small_corpora, st.integers(0, 40), st.integers(0, 80))
def test_ATT24_ready_exactly_when_both_thresholds_met(paths: list[JourneyPath], min_conversions: int,
                                                      min_journeys: int) -> None:
    converting, total = _totals(paths)
    ready = converting >= min_conversions and total >= min_journeys
    for fit in (fit_markov(paths, 1, min_conversions, min_journeys), fit_shapley(paths, min_conversions,
                                                                                 min_journeys)):
        assert fit.status == (FIT_READY if ready else FIT_INSUFFICIENT_DATA)
        assert bool(fit.values) == ready
        assert (fit.converting_paths, fit.total_paths) == (converting, total)


# --- ATT-29 canonical values ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Fraction(1, 2 * 10**12), "0.000000000000"),  # exactly half: to even (0)
        (Fraction(3, 2 * 10**12), "0.000000000002"),  # 1.5 → 2
        (Fraction(5, 2 * 10**12), "0.000000000002"),  # 2.5 → 2
        (Fraction(7, 2 * 10**12), "0.000000000004"),  # 3.5 → 4
        (Fraction(5 * 10**12 + 1, 2 * 10**24), "0.000000000003"),  # just above half: up
        (Fraction(-3, 2 * 10**12), "-0.000000000002"),
        (Fraction(1, 3), "0.333333333333"),
        (Fraction(2, 3), "0.666666666667"),
        (Fraction(119, 149), "0.798657718121"),
        (Fraction(1), "1.000000000000"),
        (Fraction(0), "0.000000000000"),
    ],
)
def test_ATT29_canonical_rounds_fractions_half_even_at_12dp(value: Fraction, expected: str) -> None:
    result = canonical(value)
    assert result == Decimal(expected)
    assert result.as_tuple().exponent == -12
    assert Fraction(result) == Fraction(Decimal(expected))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2.0**-13, "0.000122070312"),      # exactly 0.0001220703125: half, to even
        (3 * 2.0**-13, "0.000366210938"),  # exactly 0.0003662109375: half, to even (up)
        (0.1, "0.100000000000"),
        (0.5, "0.500000000000"),
    ],
)
def test_ATT29_canonical_rounds_floats_from_their_exact_binary_value(value: float, expected: str) -> None:
    result = canonical(value)
    assert result == Decimal(expected)
    assert result.as_tuple().exponent == -12


@PROPERTY
@given(st.fractions(min_value=-1, max_value=1))
def test_ATT29_canonical_is_the_nearest_12dp_value(value: Fraction) -> None:
    result = Fraction(canonical(value))
    assert abs(result - value) <= Fraction(1, 2 * 10**12)
    assert (result * 10**12).denominator == 1


# --- ATT-64 worked example -----------------------------------------------------------------------------

ATT64_TABLE = [  # path, journeys, converted
    (("organic_search",), 200, 10),
    (("paid_social",), 240, 12),
    (("email",), 150, 15),
    (("organic_search", "email"), 160, 24),
    (("paid_social", "email"), 125, 20),
    (("organic_search", "paid_social"), 100, 8),
    (("organic_search", "paid_social", "email"), 250, 60),
]


def _att64_corpus() -> list[JourneyPath]:
    rows = []
    for channels, journeys, converted in ATT64_TABLE:
        rows.append(JourneyPath(channels, True, converted))
        rows.append(JourneyPath(channels, False, journeys - converted))
    return rows


def test_ATT64_markov_fit_of_the_example_corpus() -> None:
    fit = fit_markov(_att64_corpus())
    assert fit.status == FIT_READY
    assert (fit.converting_paths, fit.total_paths) == (149, 1225)
    assert fit.conversion_probability == canonical(Fraction(149, 1225)) == Decimal("0.121632653061")
    assert fit.values["email"] == canonical(Fraction(119, 149))
    for channel, prefix in [("organic_search", "0.533392"), ("paid_social", "0.571449"),
                            ("email", "0.798657"), ("P", "0.121632")]:
        value = fit.conversion_probability if channel == "P" else fit.values[channel]
        assert str(value).startswith(prefix), (channel, value)
    # The 6-dp figures printed in the spec.
    six = {c: v.quantize(Decimal("1e-6")) for c, v in fit.values.items()}
    assert six == {"organic_search": Decimal("0.533392"), "paid_social": Decimal("0.571450"),
                   "email": Decimal("0.798658")}
    assert fit.conversion_probability.quantize(Decimal("1e-6")) == Decimal("0.121633")
    # And the independent dense solve agrees.
    dense_p, dense_re = _dense_removal_effects(_att64_corpus(), order=1)
    assert abs(float(fit.conversion_probability) - dense_p) < TOLERANCE
    for c, value in fit.values.items():
        assert abs(float(value) - dense_re[c]) < TOLERANCE


def test_ATT64_shapley_fit_of_the_example_corpus() -> None:
    fit = fit_shapley(_att64_corpus())
    assert fit.status == FIT_READY
    six = {c: v.quantize(Decimal("1e-6")) for c, v in fit.values.items()}
    assert six == {"email": Decimal("0.069916"), "organic_search": Decimal("0.027063"),
                   "paid_social": Decimal("0.024654")}
    values, _ = shapley_values(merge_paths(_att64_corpus()))
    assert values == _shapley_by_permutations(_att64_corpus())
    assert sum(values.values(), Fraction(0)) == Fraction(149, 1225)
