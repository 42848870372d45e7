"""The stream scenario's arithmetic (no stack): the rate is the events folded over the shards'
own span of work, and a run that folded nothing, or not every record, has no rate and fails.

The quick run once read "0.0 K/s": its 30 000 records folded in one micro-batch between two
polls of the shards' health, and the old clock (from the first poll that saw events, those
events not counted) measured 0 events over ~1 µs.
"""

from __future__ import annotations

import pytest

from bench.scenario_stream import judge
from bench.shards import fold_span

pytestmark = pytest.mark.unit


def test_span_runs_from_the_first_records_of_any_shard_to_the_last_batch_of_any() -> None:
    healths = [
        {"events": 2_507, "first_records_at": 100.0, "last_batch_at": 100.4},
        {"events": 2_493, "first_records_at": 100.1, "last_batch_at": 100.5},
    ]
    assert fold_span(healths) == pytest.approx(0.5)


def test_no_span_when_no_shard_folded_anything() -> None:
    assert fold_span([{"events": 0, "first_records_at": None, "last_batch_at": None}]) is None
    assert fold_span([]) is None


def test_a_topic_folded_in_one_micro_batch_has_a_rate_over_every_event() -> None:
    rate, problems = judge(
        expected=30_000, events=30_000, seconds=0.25, alerts=20, expected_alerts=20
    )
    assert rate == pytest.approx(120_000) and problems == []


def test_nothing_folded_is_a_failure_never_a_rate_of_zero() -> None:
    rate, problems = judge(expected=30_000, events=0, seconds=None, alerts=0, expected_alerts=20)
    assert rate is None
    assert problems == [
        "folded 0 of 30000 records",
        "no span of work measured",
        "0 alerts written, expected 20",
    ]


def test_a_partial_run_has_no_rate() -> None:
    rate, problems = judge(
        expected=30_000, events=20_000, seconds=0.2, alerts=20, expected_alerts=20
    )
    assert rate is None and problems == ["folded 20000 of 30000 records"]


def test_missing_alerts_fail_the_run_but_keep_its_rate() -> None:
    rate, problems = judge(
        expected=30_000, events=30_000, seconds=0.3, alerts=0, expected_alerts=20
    )
    assert rate == pytest.approx(100_000)
    assert problems == ["0 alerts written, expected 20"]
