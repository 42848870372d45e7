"""`aurora evaluate --through-pipeline` on a slice of the real data: the live system (HTTP ->
Kafka -> shard actors -> Redis) raises exactly the alerts of the offline replay."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest

from aurora_ray.evaluation.runner import EvaluationConfig, evaluate
from aurora_ray.stack import StackInfo

pytestmark = pytest.mark.integration

REAL_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "online_retail.parquet"


def test_live_alerts_equal_the_offline_replay(stack, tmp_path: Path) -> None:
    if not REAL_DATA.exists():
        pytest.skip(f"{REAL_DATA} is not present")
    df = pd.read_parquet(REAL_DATA)
    busiest = df["StockCode"].value_counts().index[:40]
    data = tmp_path / "slice.parquet"
    df[df["StockCode"].isin(busiest)].to_parquet(data)
    # Point the pipeline at the session's stack, as `aurora up` would have recorded it.
    info = StackInfo(
        redis_url=stack.settings.redis_url,
        kafka_bootstrap=stack.settings.kafka_bootstrap,
        ray_address="",
        api_url=stack.base_url,
        dashboard_url="",
        embedded=[],
        started_ray=False,
    )
    (stack.data_dir / "stack.json").write_text(json.dumps(asdict(info)))
    config = EvaluationConfig(
        methods=("aurora-analytic",),
        closed_loop=False,
        through_pipeline=True,
        replenishment=False,  # the replenishment loops are offline; tests/unit covers them
    )
    results = evaluate(data, tmp_path / "out", config, settings=stack.settings)
    check = results["through_pipeline"]
    assert check["offline"] > 0
    assert check["agree"], check
    assert "agree on every alert" in (tmp_path / "out" / "report.md").read_text()
