"""`aurora evaluate` end to end on a slice of the real data: every method, metrics and report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from aurora_ray.evaluation.runner import EvaluationConfig, evaluate

pytestmark = pytest.mark.unit

REAL_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "online_retail.parquet"


@pytest.fixture(scope="module")
def slice_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not REAL_DATA.exists():
        pytest.skip(f"{REAL_DATA} is not present")
    df = pd.read_parquet(REAL_DATA)
    busiest = df["StockCode"].value_counts().index[:60]
    path = tmp_path_factory.mktemp("eval") / "slice.parquet"
    df[df["StockCode"].isin(busiest)].to_parquet(path)
    return path


def test_evaluate_writes_report_metrics_and_plots(slice_file: Path, tmp_path: Path) -> None:
    config = EvaluationConfig(service_levels=(0.9,), service_level=0.98)
    results = evaluate(slice_file, tmp_path, config)
    for name in ("report.md", "metrics.json", "reliability.png", "lead_times.png",
                 "precision_recall.png", "stockouts.png", "frontier.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved["methods"]) == {"nightly-batch", "aurora-analytic", "xgboost"}
    for res in saved["methods"].values():
        cal = res["calibration"]
        assert 0 <= cal["brier"] <= 1 and 0 <= cal["ece"] <= 1 and cal["samples"] > 0
        for threshold in ("t0.7", "t0.9"):
            t = res[threshold]
            assert t["duplicates_per_10k"] == 0  # the 24 h dedup rule holds
            assert 0 <= t["recall_at_24h"] <= 1
    loop = results["closed_loop"]
    assert set(loop) == {"none", "nightly-batch", "aurora-analytic", "xgboost"}
    assert loop["none"]["expedite_orders"] == 0
    assert loop["aurora-analytic"]["expedite_orders"] > 0
    report = (tmp_path / "report.md").read_text()
    assert "| aurora-analytic | 0.7 |" in report and "Closed loop" in report
    # The rate oracle is a reference beside the methods, never one of them nor in the loop.
    oracle = saved["reference"]["rate-oracle"]
    assert oracle["label"].startswith("rate oracle (ceiling") and oracle["window_days"] == 7.0
    assert 0 <= oracle["t0.7"]["recall_at_24h"] <= 1 and oracle["calibration"]["samples"] > 0
    assert len(saved["oracle_ceiling"]) == len(saved["equal_precision"]) // 3
    assert "## The measured ceiling: a rate oracle" in report
    # Replenishment: every method ran the shop from test_from, the frontier swept two levels.
    rep = saved["replenishment"]
    assert list(rep["methods"]) == [
        "shop", "expedite", "classical-nightly", "aurora", "perfect-foresight"
    ]  # fmt: skip
    for method, run in (("shop", "none"), ("expedite", "aurora-analytic")):
        for key in ("stockout_episodes", "mean_on_hand", "orders_placed"):
            assert rep["methods"][method][key] == loop[run][key]
    for outcome in rep["methods"].values():
        assert outcome["mean_on_hand"] > 0 and outcome["units_ordered"] > 0
    assert [p["service_level"] for p in rep["frontier"]["aurora"]] == [0.9, 0.98]
    assert isinstance(rep["acceptance"]["target_met"], bool)
    assert "## Replenishment: the closed loop judges the action" in report


def test_the_oracle_alone_is_reported_as_a_reference(slice_file: Path, tmp_path: Path) -> None:
    results = evaluate(
        slice_file,
        tmp_path,
        EvaluationConfig(methods=("rate-oracle",), closed_loop=False, frontier=False),
    )
    assert results["methods"] == {} and set(results["reference"]) == {"rate-oracle"}
    assert results["oracle_ceiling"] == []  # no batch to compare with
    # No product method ran the alert loop: the replenishment runs the expedite loop itself.
    assert results["replenishment"]["methods"]["expedite"]["expedite_orders"] > 0
    assert (tmp_path / "report.md").stat().st_size > 0
