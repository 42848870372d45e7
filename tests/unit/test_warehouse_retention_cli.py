"""`aurora warehouse retention` and `python -m jobs.retention` over a local warehouse."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from aurora_ray.cli import app
from aurora_ray.warehouse import FACT_ORDER, Warehouse
from jobs.retention import main as retention_job

pytestmark = pytest.mark.unit

TENANT = "3f6b2a52-5a53-4c4e-9d4b-0c1f2a3b4c5d"


def _fill(root: Path) -> Warehouse:
    wh = Warehouse(str(root))
    now = datetime.now(UTC)
    for days_ago in (1, 200):
        at = now - timedelta(days=days_ago)
        table = pa.table(
            {"event_id": [f"e{days_ago}"], "sku_id": ["S"], "price": [1.0], "order_ts": [at]}
        )
        wh.write_fact_order(TENANT, table, batch_id=f"b{days_ago}")
    return wh


def test_cli_dry_run_then_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wh = _fill(tmp_path)
    monkeypatch.setenv("AURORA_WAREHOUSE_URI", str(tmp_path))
    runner = CliRunner()
    dry = runner.invoke(app, ["warehouse", "retention", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove 1 partitions" in dry.output
    assert wh.read(FACT_ORDER, TENANT).num_rows == 2
    done = runner.invoke(app, ["warehouse", "retention", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["partitions"] == 1 and report["removed"][0]["table"] == FACT_ORDER
    assert wh.event_ids(TENANT) == {"e1"}


def test_job_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wh = _fill(tmp_path)
    assert retention_job(["--uri", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["partitions"] == 1
    assert wh.event_ids(TENANT) == {"e1"}
