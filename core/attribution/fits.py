"""Data-driven fits from an aggregated path corpus (attribution.md ATT-24..ATT-29).

Pure functions: the corpus (distinct channel sequences with counts, ATT-23) comes from the caller, which
builds it from the database. Order-1 Markov and Shapley are solved in exact rational arithmetic; Markov
orders 2–3 use one binary64 LU solve per system (numpy), as ATT-26 allows. Every value is then
canonicalized to a 12-dp decimal (ATT-29), and only canonical values reach the per-conversion step, so a
conversion's credits can be recomputed digit for digit from the stored fit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from math import factorial

import numpy as np
from threadpoolctl import threadpool_limits

from core.attribution.models import FIT_INSUFFICIENT_DATA, FIT_READY

__all__ = [
    "MAX_SHAPLEY_PLAYERS",
    "FitResult",
    "JourneyPath",
    "canonical",
    "fit_markov",
    "fit_shapley",
    "merge_paths",
    "removal_effects",
    "shapley_values",
]

MAX_SHAPLEY_PLAYERS = 15  # ATT-28: exact up to 15 channels, deterministic exclusion beyond
_CANONICAL = Decimal("1e-12")
_START: tuple[str, ...] = ()  # no channel state is empty, so START can never collide with one


@dataclass(frozen=True)
class JourneyPath:
    """One corpus row of ATT-23: a channel sequence, whether it converted, and how many journeys had it."""

    channels: tuple[str, ...]
    converted: bool
    count: int = 1


@dataclass(frozen=True)
class FitResult:
    """A fit as stored in `attribution_fits` (ATT-30) minus ids and timestamps."""

    model: str
    status: str  # ready | insufficient_data
    converting_paths: int
    total_paths: int
    channels: tuple[str, ...]
    values: Mapping[str, Decimal] = field(default_factory=dict)  # channel → canonical 12-dp value
    conversion_probability: Decimal | None = None  # Markov P (ATT-26)
    excluded_channels: tuple[str, ...] = ()  # Shapley, more than 15 channels (ATT-28)


def canonical(value: Fraction | float) -> Decimal:
    """ATT-29: half-even to 12 dp. A Fraction is rounded exactly, a float from its exact binary value."""
    if isinstance(value, Fraction):
        result = Decimal(round(value * 10**12)).scaleb(-12).quantize(_CANONICAL)  # round(): half-even
    else:
        result = Decimal(value).quantize(_CANONICAL, rounding=ROUND_HALF_EVEN)
    return result if result else abs(result)  # a tiny negative float rounds to −0E-12: store it as 0


def merge_paths(paths: Iterable[JourneyPath]) -> list[JourneyPath]:
    """ATT-23 step 3: identical (sequence, converted) pairs become one row; sorted so order never matters."""
    counts: dict[tuple[tuple[str, ...], bool], int] = {}
    for p in paths:
        if p.count < 0:
            raise ValueError("path count must be >= 0")
        if p.channels and p.count:
            key = (tuple(p.channels), p.converted)
            counts[key] = counts.get(key, 0) + p.count
    return [JourneyPath(seq, conv, n) for (seq, conv), n in sorted(counts.items())]


def _totals(paths: Sequence[JourneyPath]) -> tuple[int, int]:
    return sum(p.count for p in paths if p.converted), sum(p.count for p in paths)


def _ready(paths: Sequence[JourneyPath], min_conversions: int, min_journeys: int) -> bool:
    converting, total = _totals(paths)
    return converting >= min_conversions and total >= min_journeys  # ATT-24, both >=


def fit_markov(paths: Iterable[JourneyPath], order: int = 1, min_conversions: int = 100,
               min_journeys: int = 1000) -> FitResult:
    """ATT-24..ATT-26 and ATT-29 for the Markov model."""
    if not 1 <= order <= 3:
        raise ValueError(f"markov order must be 1..3, got {order}")
    merged = merge_paths(paths)
    converting, total = _totals(merged)
    channels = tuple(sorted({c for p in merged for c in p.channels}))
    if not _ready(merged, min_conversions, min_journeys):
        return FitResult("markov_chain", FIT_INSUFFICIENT_DATA, converting, total, channels)
    probability, effects = removal_effects(merged, order)
    if order == 1 and probability != Fraction(converting, total):  # ATT-26: asserted by implementations
        raise ArithmeticError(f"Markov P {probability} differs from {converting}/{total}")
    return FitResult(
        "markov_chain", FIT_READY, converting, total, channels,
        values={c: canonical(effects[c]) for c in channels},
        conversion_probability=canonical(probability),
    )


def fit_shapley(paths: Iterable[JourneyPath], min_conversions: int = 100, min_journeys: int = 1000) -> FitResult:
    """ATT-24, ATT-27..ATT-29 for the Shapley model."""
    merged = merge_paths(paths)
    converting, total = _totals(merged)
    channels = tuple(sorted({c for p in merged for c in p.channels}))
    if not _ready(merged, min_conversions, min_journeys):
        return FitResult("shapley_value", FIT_INSUFFICIENT_DATA, converting, total, channels)
    values, excluded = shapley_values(merged)
    if sum(values.values(), Fraction(0)) != _grand_coalition(merged, excluded):  # ATT-28 efficiency
        raise ArithmeticError("Shapley values do not sum to v(all players)")
    return FitResult(
        "shapley_value", FIT_READY, converting, total, channels,
        values={c: canonical(values.get(c, Fraction(0))) for c in channels},
        excluded_channels=excluded,
    )


def _grand_coalition(paths: Sequence[JourneyPath], excluded: Sequence[str]) -> Fraction:
    """v(P): the conversion rate of the journeys left with at least one player."""
    counted = [p for p in paths if set(p.channels) - set(excluded)]
    total = sum(p.count for p in counted)
    return Fraction(sum(p.count for p in counted if p.converted), total) if total else Fraction(0)


# --- Markov (ATT-25, ATT-26) ---------------------------------------------------------------------------

State = tuple[str, ...]
CONVERSION, NULL = "conversion", "null"


def _transitions(paths: Sequence[JourneyPath], order: int) -> dict[State, dict[State | str, int]]:
    """Weighted transition counts: START → σ_1 → … → σ_m → CONVERSION | NULL."""
    if not 1 <= order <= 3:
        raise ValueError("markov order must be 1..3")
    counts: dict[State, dict[State | str, int]] = {}
    for p in paths:
        prev: State = _START
        for i in range(len(p.channels)):
            state = p.channels[max(0, i - order + 1): i + 1]
            row = counts.setdefault(prev, {})
            row[state] = row.get(state, 0) + p.count
            prev = state
        row = counts.setdefault(prev, {})
        end = CONVERSION if p.converted else NULL
        row[end] = row.get(end, 0) + p.count
    return counts


def _canonical_states(counts: Mapping[State, Mapping[State | str, int]]) -> list[State]:
    """ATT-26: START, then by tuple length, then tuple by code points."""
    states = {s for s in counts if s != _START}
    for row in counts.values():
        states.update(t for t in row if isinstance(t, tuple))
    return [_START, *sorted(states, key=lambda s: (len(s), s))]


Number = Fraction | float


def removal_effects(paths: Sequence[JourneyPath], order: int = 1) -> tuple[Number, dict[str, Number]]:
    """P = h(START) and RE(c) = 1 − P₋c / P for every channel (exact for order 1, binary64 LU above)."""
    counts = _transitions(paths, order)
    states = _canonical_states(counts)
    channels = sorted({c for s in states[1:] for c in s})
    if order == 1:
        return _effects(_solve_exact, counts, states, channels)
    # ATT-26: the binary64 solves run single-threaded, so their raw floats do not depend on the BLAS thread count.
    with threadpool_limits(limits=1):
        return _effects(_solve_float, counts, states, channels)


def _effects(solve: Callable[..., Number], counts: Mapping[State, Mapping[State | str, int]], states: list[State],
             channels: list[str]) -> tuple[Number, dict[str, Number]]:
    probability = solve(counts, states, None)
    effects: dict[str, Number] = {}
    for c in channels:
        without = solve(counts, states, c)
        effects[c] = 1 - without / probability if probability else probability  # P = 0: no effect
    return probability, effects


def _redirected(target: State | str, removed: str | None) -> State | str:
    """Removal of channel c: a transition into any state whose tuple contains c goes to NULL instead."""
    if removed is not None and isinstance(target, tuple) and removed in target:
        return NULL
    return target


def _solve_exact(counts: Mapping[State, Mapping[State | str, int]], states: list[State],
                 removed: str | None) -> Fraction:
    """Gauss–Jordan on (I − Q)·h = b over the rationals; returns h(START)."""
    index = {s: i for i, s in enumerate(states)}
    n = len(states)
    matrix = [[Fraction(0)] * (n + 1) for _ in range(n)]
    for s, i in index.items():
        matrix[i][i] = Fraction(1)
        row = counts.get(s)
        if not row:
            continue  # a state with no outgoing transitions absorbs nothing: h = 0
        total = sum(row.values())
        for target, n_st in row.items():
            t = _redirected(target, removed)
            if t == CONVERSION:
                matrix[i][n] += Fraction(n_st, total)
            elif t != NULL:
                matrix[i][index[t]] -= Fraction(n_st, total)  # type: ignore[index]
    for col in range(n):
        pivot = next(r for r in range(col, n) if matrix[r][col] != 0)
        matrix[col], matrix[pivot] = matrix[pivot], matrix[col]
        inv = 1 / matrix[col][col]
        pivot_row = [v * inv for v in matrix[col]]
        matrix[col] = pivot_row
        for r in range(n):
            factor = matrix[r][col]
            if r != col and factor != 0:
                matrix[r] = [a - factor * b for a, b in zip(matrix[r], pivot_row, strict=True)]
    return matrix[0][n]


def _solve_float(counts: Mapping[State, Mapping[State | str, int]], states: list[State],
                 removed: str | None) -> float:
    """binary64 LU with partial pivoting (LAPACK gesv via numpy), states in canonical order."""
    index = {s: i for i, s in enumerate(states)}
    n = len(states)
    a = np.eye(n)
    b = np.zeros(n)
    for s, i in index.items():
        row = counts.get(s)
        if not row:
            continue
        total = sum(row.values())
        for target, n_st in row.items():
            t = _redirected(target, removed)
            if t == CONVERSION:
                b[i] += n_st / total
            elif t != NULL:
                a[i, index[t]] -= n_st / total  # type: ignore[index]
    return float(np.linalg.solve(a, b)[0])


# --- Shapley (ATT-27, ATT-28) --------------------------------------------------------------------------

def shapley_values(paths: Sequence[JourneyPath]) -> tuple[dict[str, Fraction], tuple[str, ...]]:
    """Exact Shapley values of v(S) = C(S)/N(S) and the channels excluded beyond 15 players."""
    reach: dict[str, int] = {}
    for p in paths:
        for c in set(p.channels):
            reach[c] = reach.get(c, 0) + p.count
    ranked = sorted(reach, key=lambda c: (-reach[c], c))
    players = sorted(ranked[:MAX_SHAPLEY_PLAYERS])
    excluded = tuple(sorted(ranked[MAX_SHAPLEY_PLAYERS:]))
    n = len(players)
    if n == 0:
        return {}, excluded
    bit = {c: 1 << i for i, c in enumerate(players)}
    size = 1 << n
    converting = [0] * size
    total = [0] * size
    for p in paths:
        mask = 0
        for c in p.channels:
            mask |= bit.get(c, 0)
        if mask:  # paths with no player left are dropped
            total[mask] += p.count
            if p.converted:
                converting[mask] += p.count
    for i in range(n):  # zeta transform: C(S) = Σ_{T ⊆ S} c(T)
        step = 1 << i
        for mask in range(size):
            if mask & step:
                converting[mask] += converting[mask ^ step]
                total[mask] += total[mask ^ step]
    # w(s) = s!(n−s−1)!, w(n) = 0; φ(c) = (1/n!)[Σ_{T∋c} v(T)(w(|T|−1) + w(|T|)) − Σ_T v(T) w(|T|)]
    weights = [factorial(s) * factorial(n - s - 1) for s in range(n)] + [0]
    sums = [Fraction(0)] * n
    common = Fraction(0)
    popcount = [bin(m).count("1") for m in range(size)]
    for mask in range(1, size):
        if not total[mask]:
            continue
        v = Fraction(converting[mask], total[mask])
        k = popcount[mask]
        common += v * weights[k]
        gain = v * (weights[k - 1] + weights[k])
        for i in range(n):
            if mask >> i & 1:
                sums[i] += gain
    scale = factorial(n)
    values = {c: (sums[i] - common) / scale for i, c in enumerate(players)}
    return values, excluded
