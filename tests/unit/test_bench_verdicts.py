"""When a scenario fails, and the rows that say so (no stack).

The reads scenario read "ok" even when every Aurora GET failed (the errors only in the p99
note), and the backfill scenario stayed "ok" when its re-run failed; the retrain row's label
said "retrain on N labelled rows" with N the rows trained on and held out, while its note gave
another "labelled rows" count.
"""

from __future__ import annotations

import pytest

from bench.load import LoadResult
from bench.runner import markdown_table
from bench.scenario_jobs import rerun_row, retrain_row
from bench.scenario_reads import failed_share, failures

pytestmark = pytest.mark.unit


def _load(requests: int, ok: int, statuses: dict[int, int], timeouts: int = 0) -> LoadResult:
    return LoadResult(
        requests=requests, ok=ok, errors=requests - ok - timeouts, timeouts=timeouts,
        statuses=statuses,
    )  # fmt: skip


def test_reads_fail_when_every_aurora_get_failed() -> None:
    loads = {
        "Aurora at 200 req/s": _load(3_000, 0, {401: 3_000}),
        "bare uvicorn at 200 req/s": _load(3_000, 3_000, {200: 3_000}),
    }
    assert failures(loads) == [
        "Aurora at 200 req/s: 3000 of 3000 requests failed (100.0%; statuses {401: 3000}, "
        "0 timeouts)"
    ]


def test_reads_fail_past_one_percent_of_failed_requests_timeouts_included() -> None:
    few = _load(1_000, 995, {200: 995, 503: 3}, timeouts=2)
    many = _load(1_000, 980, {200: 980, 503: 10}, timeouts=10)
    assert failed_share(few) == pytest.approx(0.005)
    assert failures({"a": few}) == []
    assert failures({"a": many}) == [
        "a: 20 of 1000 requests failed (2.0%; statuses {200: 980, 503: 10}, 10 timeouts)"
    ]


def test_a_load_that_sent_nothing_has_failed() -> None:
    assert failures({"background ingest": LoadResult()}) == [
        "background ingest: 0 of 0 requests failed (100.0%; statuses {}, 0 timeouts)"
    ]


def test_a_failed_backfill_rerun_fails_the_scenario_with_its_last_log_line() -> None:
    row, problem = rerun_row(
        48.0, code=1, tail="INFO producing\nTraceback ...\nRuntimeError: broker gone\n"
    )
    assert problem == "the re-run failed: exit 1: RuntimeError: broker gone"
    assert row.aurora is None and row.ok is False
    assert row.note == "failed: exit 1: RuntimeError: broker gone"


def test_a_rerun_that_applied_events_fails_the_scenario() -> None:
    row, problem = rerun_row(
        30.0, code=0, applied=12, skipped=199_988, fact_order=(100, 112), on_hand_changed=3
    )
    assert row.ok is False and row.aurora == 30.0
    assert problem == (
        "the re-run changed something: 12 applied, 199988 skipped; fact_order 100 -> 112 rows; "
        "on-hand changed for 3 SKUs"
    )


def test_a_rerun_that_changed_nothing_is_ok() -> None:
    row, problem = rerun_row(
        6.3, code=0, applied=0, skipped=200_000, fact_order=(196_971, 196_971), on_hand_changed=0
    )
    assert problem is None and row.ok is True


def _retrain_result(labelled: int, train: int, held_out: int) -> dict[str, object]:
    return {
        "rows": {"labelled": labelled, "train": train, "train_positives": 116,
                 "held_out": held_out, "held_out_positives": 51},
        "metrics": {"brier": 0.0283},
        "baseline": {"version": "analytic-nb-1", "metrics": {"brier": 0.0529}},
        "promoted": False,
        "decision": "recall@24h below the active's",
    }  # fmt: skip


def test_the_retrain_row_names_each_count_once() -> None:
    row = retrain_row(24.3, _retrain_result(118_002, 6_863, 2_009), wanted=10_000)
    assert row.metric == (
        "retrain (python -m jobs.retrain) on a seeded sample of 10000 of 118002 labelled rows: "
        "6863 trained on, 2009 held out, 1128 purged at the cut"
    )
    assert "labelled" not in row.note
    assert row.note.startswith("116 stock-outs in the training rows, 51 held out; candidate:")
    assert row.note.endswith("not promoted (recall@24h below the active's)")


def test_the_retrain_row_without_a_sample() -> None:
    row = retrain_row(9.0, _retrain_result(5_000, 3_600, 1_000), wanted=10_000)
    assert row.metric == (
        "retrain (python -m jobs.retrain) on all 5000 labelled rows: 3600 trained on, "
        "1000 held out, 400 purged at the cut"
    )


def test_shares_and_cpu_figures_read_as_such_in_the_table() -> None:
    from bench.common import Row, ScenarioResult

    rows = [
        Row("failed", "%", aurora=0.0133, anchor=0.0, anchor_name="trivial"),
        Row("cpu", "µs", aurora=7.4321, anchor=7.0, anchor_name="window off"),
    ]
    table = markdown_table(
        {
            "date": "2026-12-07",
            "quick": True,
            "haproxy": True,
            "machine": {"cpus": 2, "load_average_1m_at_end": 1.0},
            "scenarios": {"x": ScenarioResult("x", "ok", rows=rows).as_dict()},
        }
    )
    assert "| x | failed | 0.01 % | 0.00 % (trivial) |" in table
    assert "| x | cpu | 7.4 µs | 7.0 µs (window off) |" in table
