"""The collector pause around a batch (core.processors.collector): always undone, counted across threads."""

from __future__ import annotations

import gc
import threading

import pytest

from core.processors.collector import collector_paused


def test_paused_inside_and_resumed_after_even_on_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("batch failed")
    assert gc.isenabled()


def test_nested_and_overlapping_batches_resume_only_when_the_last_ends() -> None:
    started, release = threading.Event(), threading.Event()

    def other_batch() -> None:
        with collector_paused():
            started.set()
            release.wait(5)

    thread = threading.Thread(target=other_batch)
    with collector_paused():
        thread.start()
        started.wait(5)
        with collector_paused():
            assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread's batch is still running
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
