"""Server ids (API-5): the in-house ULID generator makes the ids ``python-ulid`` made, valid, unique, sortable."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

import pytest
from ulid import ULID
from ulid.base32 import encode as library_encode

from core import ids
from core.ids import id_time, new_id

ULID_TEXT = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
AT = datetime(2026, 3, 14, 15, 9, 26, 535_897, tzinfo=UTC)


def test_ids_are_prefixed_valid_ulids_with_the_time_embedded() -> None:
    for prefix in ("sess", "vis", "evt"):
        made = new_id(prefix, AT)
        head, _, body = made.partition("_")
        assert head == prefix
        assert ULID_TEXT.fullmatch(body)
        assert str(ULID.from_str(body)) == body
        assert id_time(made) == AT.replace(microsecond=535_000)  # millisecond precision, truncated


def test_without_a_time_the_current_time_is_embedded() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    made = new_id("vis")
    assert before <= id_time(made) <= datetime.now(UTC)


def test_ids_are_unique_over_many_and_sort_in_creation_order_within_a_millisecond() -> None:
    same_ms = [new_id("sess", AT) for _ in range(5000)]
    assert len(set(same_ms)) == 5000
    assert same_ms == sorted(same_ms)  # strict monotonic, as python-ulid's default generator
    spread = [new_id("vis", AT + timedelta(milliseconds=i % 7)) for i in range(20000)]
    assert len(set(spread)) == 20000


def test_later_milliseconds_sort_later() -> None:
    times = [AT + timedelta(milliseconds=i) for i in range(0, 3000, 3)]
    made = [new_id("sess", t) for t in times]
    assert made == sorted(made)
    assert [id_time(m) for m in made] == [t.replace(microsecond=t.microsecond // 1000 * 1000) for t in times]


def test_encoding_is_the_librarys_for_any_bits() -> None:
    edge = [(0, 0), ((1 << 48) - 1, (1 << 80) - 1), (1, 1 << 79)]
    sample = [(int.from_bytes(os.urandom(6), "big"), int.from_bytes(os.urandom(10), "big")) for _ in range(2000)]
    for ms, random in edge + sample:
        assert ids.encode(ms, random) == library_encode(ms.to_bytes(6, "big") + random.to_bytes(10, "big"))


def test_out_of_range_times_and_exhausted_randomness_raise() -> None:
    generator = ids._Generator()
    with pytest.raises(ValueError):
        generator.ulid(1 << 48)
    with pytest.raises(ValueError):
        generator.ulid(-1)
    generator.ulid(5)
    generator._prev_random = (1 << 80) - 1  # the last value a millisecond can hold
    with pytest.raises(ValueError):
        generator.ulid(5)


def test_a_reset_generator_forgets_its_block_and_last_id() -> None:
    """What a forked child runs: it must not replay the parent's random bytes or continue its sequence."""
    generator = ids._Generator()
    first = generator.ulid(7)
    generator.reset()
    assert generator._block == b"" and generator._prev_ms == 0
    assert generator.ulid(7) != first
