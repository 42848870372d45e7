"""The bench's table and files, and the `aurora bench` options (no stack started)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aurora_ray.cli import app
from bench.common import Row, ScenarioResult, percentiles
from bench.runner import markdown_table, write_results

pytestmark = pytest.mark.unit


def _results(*, quick: bool = False, haproxy: bool = True) -> dict[str, Any]:
    ingest = ScenarioResult(
        "ingest",
        "ok",
        rows=[
            Row(
                "ingest events/s",
                "events/s",
                aurora=98_500.0,
                anchor=410_000.0,
                anchor_name="raw confluent-kafka producer",
                target=">= 100000",
                ok=False,
            )
        ],
    )
    export = ScenarioResult("export", "skipped", reason="not available (later issue)")
    return {
        "date": "2026-11-29",
        "quick": quick,
        "haproxy": haproxy,
        "machine": {"cpus": 2, "load_average_1m_at_end": 1.5},
        "scenarios": {"ingest": ingest.as_dict(), "export": export.as_dict()},
    }


def test_table_puts_aurora_beside_the_anchor_and_the_target() -> None:
    table = markdown_table(_results())
    assert "98.5 K/s | 410.0 K/s (raw confluent-kafka producer) | >= 100000 | **no** |" in table
    assert "| export | skipped: not available (later issue) |" in table
    assert "HAProxy ingress" in table


def test_a_failed_scenario_with_a_job_log_stays_on_its_table_row() -> None:
    from bench.scenario_jobs import job_failed

    log = (
        "INFO retrain x: training on 1584 rows\nTraceback (most recent call last):\n"
        '  File "jobs/retrain.py", line 49, in main\n'
        "ValueError: too little training data: 800 rows | 0 stock-outs\n"
    )
    failed = job_failed("retrain", 1, log)
    assert failed.reason == "exit 1: ValueError: too little training data: 800 rows | 0 stock-outs"
    assert failed.details["log_tail"] == log
    results = _results()
    results["scenarios"]["retrain"] = failed.as_dict()
    results["scenarios"]["stream"] = ScenarioResult(
        "stream",
        "failed",
        reason="1 shard(s): folded 0 of 30000 records,\nno span of work measured",
        rows=[Row("stream events/s", "events/s", aurora=None, anchor=3.7e6, anchor_name="raw")],
    ).as_dict()
    table = markdown_table(results)
    body = table.splitlines()[4:]  # below the header and the separator
    assert all(line.startswith("| ") and line.endswith(" |") for line in body), table
    assert (
        "| retrain | failed: exit 1: ValueError: too little training data: 800 rows \\| "
        "0 stock-outs | | | | |" in table
    )
    # No figure for a run that measured nothing: a dash, and the failure on its own line.
    assert "| stream | stream events/s | – | 3700.0 K/s (raw) |  |  |" in table
    assert (
        "| stream | failed: 1 shard(s): folded 0 of 30000 records, no span of work measured |"
        in table
    )


def test_short_durations_and_request_rates_read_as_figures() -> None:
    from bench.runner import _fmt

    assert _fmt(0.0085, "s") == "8.5 ms"  # not "0.0 s"
    assert _fmt(102.5, "s") == "102.5 s"
    assert _fmt(3063.33, "req/s") == "3,063 req/s"
    assert _fmt(float("nan"), "events/s") == "–"


def test_files_are_named_by_date_and_kind(tmp_path: Path) -> None:
    json_path, md_path = write_results(_results(quick=True, haproxy=False), tmp_path)
    assert json_path.name == "2026-11-29-quick-no-haproxy.json"
    assert md_path.name == "2026-11-29-quick-no-haproxy.md"
    assert json.loads(json_path.read_text())["scenarios"]["export"]["status"] == "skipped"
    full, _ = write_results(_results(), tmp_path)
    assert full.name == "2026-11-29.json"
    part, _ = write_results({**_results(), "selected": ["backfill", "retrain"]}, tmp_path)
    assert part.name == "2026-11-29-backfill-retrain.json"  # never the day's full run


def test_percentiles_of_nothing_are_nan() -> None:
    assert all(v != v for v in percentiles([]).values())
    assert percentiles([1.0, 2.0, 3.0], (50,)) == {"p50": 2.0}


def test_cli_lists_the_options_and_refuses_an_unknown_scenario() -> None:
    runner = CliRunner()
    helped = runner.invoke(app, ["bench", "--help"])
    assert helped.exit_code == 0
    for option in ("--quick", "--scenario", "--out", "--no-haproxy"):
        assert option in helped.output
    refused = runner.invoke(app, ["bench", "--scenario", "nope"])
    assert refused.exit_code == 2


# -- e2e steady state ------------------------------------------------------------------------------
def test_steady_state_rates_and_backlog_over_the_last_three_quarters() -> None:
    from bench.scenario_e2e import steady_state

    # Accepted at 1 000 events/s for 20 s; scored 2 s behind at the same rate: it keeps up.
    accepted = [(float(t), 1_000 * t) for t in range(21)]
    scored = [(float(t), max(0, 1_000 * (t - 2))) for t in range(21)]
    got = steady_state(accepted, scored, 0.0, 20.0)
    assert got["window_s"] == pytest.approx(15.0)
    assert got["accepted_per_s"] == pytest.approx(1_000)
    assert got["scored_per_s"] == pytest.approx(1_000)
    assert got["backlog_start"] == pytest.approx(2_000)
    assert got["backlog_end"] == pytest.approx(2_000)


def test_steady_state_shows_a_growing_backlog() -> None:
    from bench.scenario_e2e import steady_state

    accepted = [(float(t), 1_000 * t) for t in range(21)]
    scored = [(float(t), 800 * t) for t in range(21)]  # falls behind
    got = steady_state(accepted, scored, 0.0, 20.0)
    assert got["scored_per_s"] == pytest.approx(800)
    assert got["backlog_end"] > got["backlog_start"]
