"""The shard's window of applied event ids (aurora_ray/domain/idempotency.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aurora_ray.domain.idempotency import IdWindow, hash_ids

pytestmark = pytest.mark.unit

HOUR_MS = 3_600_000


def admit(window: IdWindow, ids: list[str], partition: int = 0, at: int = 0) -> list[bool]:
    return window.admit(ids, [partition] * len(ids), [at] * len(ids)).tolist()


def test_repeats_are_dropped_in_and_across_batches_per_partition() -> None:
    window = IdWindow(max_ids=100, max_age_ms=HOUR_MS)
    assert admit(window, ["a", "b", "a", "c"]) == [True, True, False, True]
    assert admit(window, ["c", "d"]) == [False, True]
    assert admit(window, ["a"], partition=1) == [True]  # another partition: its own window
    assert window.size() == 5


def test_hashes_are_stable_and_64_bit() -> None:
    hashes = hash_ids(["e-1", "e-2", "e-1"])
    assert hashes.dtype == np.uint64 and hashes[0] == hashes[2] != hashes[1]
    assert hash_ids(["e-1"])[0] == hashes[0]


def test_the_window_is_bounded_by_count() -> None:
    window = IdWindow(max_ids=1_000, max_age_ms=HOUR_MS)
    for start in range(0, 5_000, 100):
        admit(window, [f"e{i}" for i in range(start, start + 100)])
    assert 1_000 <= window.size() <= 1_100
    assert admit(window, ["e4999", "e0"]) == [False, True]  # the newest kept, the oldest gone


def test_the_window_is_bounded_by_age() -> None:
    window = IdWindow(max_ids=1_000_000, max_age_ms=HOUR_MS)
    admit(window, ["old"], at=0)
    admit(window, ["new"], at=2 * HOUR_MS)
    assert window.size() == 1
    assert admit(window, ["old", "new"], at=2 * HOUR_MS) == [True, False]


def test_off_admits_everything() -> None:
    window = IdWindow(max_ids=0, max_age_ms=HOUR_MS)
    assert admit(window, ["a", "a"]) == [True, True]


def test_what_a_checkpoint_saves_restores_the_same_window() -> None:
    window = IdWindow(max_ids=50, max_age_ms=HOUR_MS)
    log = {0: b""}
    for start in range(0, 400, 3):  # batches that do not divide the window
        admit(window, [f"e{i}" for i in range(start, start + 3)], at=start)
        plan = window.unsaved()
        for partition, data in plan.appends.items():
            log[partition] += data
        for partition, data in plan.rewrites.items():
            log[partition] = data
        window.saved(plan)
    assert len(log[0]) <= 16 * (2 * 55 + 1024)  # rewritten when it outgrows the window
    restored = IdWindow(max_ids=50, max_age_ms=HOUR_MS)
    restored.load(0, log[0])
    assert restored.size() == window.size()
    probe = [f"e{i}" for i in range(320, 420)]
    assert admit(restored, probe, at=400) == admit(window, probe, at=400)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 60), max_size=20), max_size=30))
def test_a_repeat_within_the_window_is_never_admitted(batches: list[list[int]]) -> None:
    window = IdWindow(max_ids=10_000, max_age_ms=HOUR_MS)
    seen: set[int] = set()
    for batch in batches:
        got = admit(window, [f"id-{i}" for i in batch])
        want = []
        for i in batch:
            want.append(i not in seen)
            seen.add(i)
        assert got == want


def test_ids_a_failed_checkpoint_did_not_save_go_with_the_next_one() -> None:
    window = IdWindow(max_ids=100, max_age_ms=HOUR_MS)
    admit(window, ["a", "b"])
    window.unsaved()  # the checkpoint's write failed: saved() is never called
    admit(window, ["c"])
    plan = window.unsaved()
    window.saved(plan)
    restored = IdWindow(max_ids=100, max_age_ms=HOUR_MS)
    restored.load(0, plan.appends[0])
    assert admit(restored, ["a", "b", "c", "d"]) == [False, False, False, True]
    assert window.unsaved().appends == {}  # nothing left once saved


def test_the_window_holds_exactly_max_ids() -> None:
    window = IdWindow(max_ids=10, max_age_ms=HOUR_MS)
    for start in range(0, 40, 3):
        admit(window, [f"e{i}" for i in range(start, start + 3)])
        assert window.size() <= 10


def test_a_redis_still_loading_is_unavailable_not_a_bad_command() -> None:
    import redis

    from aurora_ray.adapters.resp import _reply_error

    assert isinstance(_reply_error("LOADING Redis is loading the dataset"), redis.ConnectionError)
    assert isinstance(_reply_error("READONLY You can't write"), redis.ConnectionError)
    assert type(_reply_error("ERR unknown command")) is redis.ResponseError
