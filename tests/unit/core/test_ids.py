"""Server ids (API-5; core/ids.py): ULIDs from the library's generator with entropy read in blocks."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from ulid import ULID

from core.ids import id_time, new_id


def test_ids_are_unique_valid_ulids_with_their_time() -> None:
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    ids = [new_id("sess", at + timedelta(milliseconds=n % 7)) for n in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("sess_") and len(i) == 31 for i in ids)
    assert ULID.from_str(ids[0][5:]).datetime == at
    assert id_time(ids[3]) == at + timedelta(milliseconds=3)


def test_ids_of_one_millisecond_sort_in_creation_order() -> None:
    at = datetime(2026, 12, 7, 12, 0, 1, tzinfo=UTC)
    ids = [new_id("evt", at) for _ in range(1_000)]
    assert ids == sorted(ids)
    now = [new_id("evt") for _ in range(1_000)]
    assert now == sorted(now)


def test_a_forked_child_never_repeats_its_parents_randomness() -> None:
    new_id("vis")  # the parent holds a block of entropy when it forks
    at = datetime(2026, 1, 1, tzinfo=UTC)  # a millisecond neither process used: fresh randomness in both
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, new_id("vis", at).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    assert child and child != new_id("vis", at)
