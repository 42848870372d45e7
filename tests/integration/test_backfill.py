"""Backfill as a real Ray job on the session stack: counts, rejects, fact_order, the SKU state
equal to the truth; a second run applies nothing; the HTTP endpoints (upload, id, status)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pyarrow.parquet as pq
import pytest
import redis

from aurora_ray.backfill_job import backfill_status, run_backfill, submit_backfill, wait_backfill
from aurora_ray.demo_stream import DemoStream, demo_catalogue, to_ndjson
from aurora_ray.testing import wait_for
from aurora_ray.warehouse import Warehouse
from tests.integration.helpers import bearer

pytestmark = pytest.mark.integration

N_EVENTS = 3_000
OTHER_TENANT = "99999999-2222-3333-4444-555555555555"


def _event_file(path: Path, tenant_id: str) -> tuple[dict[str, int], dict[int, str], int, set[str]]:
    """A demo history with bad lines and one repeated event put in.

    Returns the true on-hand stock per sku@warehouse, line number -> the field a reject names,
    the number of non-blank lines, and the event ids of the orders."""
    stream = DemoStream(
        demo_catalogue(n_skus=40), tenant_id, datetime(2025, 3, 1, tzinfo=UTC), id_prefix="hist"
    )
    events = stream.initial_events() + stream.next_events(N_EVENTS - 40)
    truth = stream.on_hand
    orders = {e["event_id"] for e in events if e["event_type"] == "order.created"}
    lines = to_ndjson(events).splitlines()
    bad_qty = json.loads(lines[100])
    bad_qty["payload"]["qty"] = 0
    no_time = json.loads(lines[200])
    del no_time["occurred_at"]
    foreign = json.loads(lines[300])
    foreign["tenant_id"] = OTHER_TENANT
    inserts = [  # (line number in the final file, content), ascending
        (5, b"{this is not json"),
        (150, msgspec.json.encode(bad_qty)),
        (151, b""),
        (700, msgspec.json.encode(no_time)),
        (1_200, msgspec.json.encode(foreign)),
        (2_500, lines[2_000]),  # the same event again: a duplicate within the file
    ]
    for number, content in inserts:
        lines.insert(number - 1, content)
    path.write_bytes(b"\n".join(lines) + b"\n")
    fields = {5: "line", 150: "payload.qty", 700: "occurred_at", 1_200: "tenant_id"}
    return truth, fields, len([x for x in lines if x.strip()]), orders


def _run(stack: Any, client: redis.Redis, tenant_id: str, source: Path) -> dict[str, Any]:
    backfill_id, _job = submit_backfill(
        stack.settings, tenant_id=tenant_id, source=str(source), redis_client=client,
        dashboard_url=stack.dashboard_url,
    )  # fmt: skip
    record = wait_backfill(
        lambda: backfill_status(
            stack.settings, tenant_id=tenant_id, backfill_id=backfill_id, redis_client=client,
            dashboard_url=stack.dashboard_url,
        ),  # fmt: skip
        timeout_s=300,
        interval_s=0.5,
    )
    assert record is not None, "no record"
    assert record["state"] == "succeeded", record.get("error")
    return record


def _on_hand(tenant: Any) -> dict[str, int]:
    predictions = tenant.client.get("/v1/stock/predictions", limit=10_000).json()
    return {f"{p['sku']}@{p['warehouse']}": p["on_hand"] for p in predictions}


def test_backfill_job_applies_history_once(stack, make_tenant, tmp_path: Path) -> None:
    tenant = make_tenant("backfill")
    tid = tenant.tenant_id
    client = redis.Redis.from_url(stack.settings.redis_url)
    source = tmp_path / "history.ndjson"
    truth, fields, lines, orders = _event_file(source, tid)

    first = _run(stack, client, tid, source)
    assert first["read"] == lines
    assert first["rejected"] == len(fields)
    assert first["accepted"] == lines - len(fields)
    assert first["duplicates_in_file"] == 1 and first["duplicates_applied"] == 0
    assert first["produced"] == first["accepted"] - 1
    assert first["written"] == len(orders)
    assert first["progress"] == 1.0 and first["folded"] == "1"

    # The rejects file: the file's own line numbers, the field, the raw line.
    rejects = [json.loads(x) for x in Path(first["rejects"]).read_text().splitlines()]
    assert [r["line"] for r in rejects] == sorted(fields)
    raw_lines = source.read_bytes().split(b"\n")
    for reject in rejects:
        assert reject["errors"][0]["field"] == fields[reject["line"]]
        assert reject["raw"].encode() == raw_lines[reject["line"] - 1]

    # fact_order: every order once in the backfill's own files, ids as in the file.
    warehouse = Warehouse(stack.settings.warehouse_uri)
    dataset = warehouse.dataset("fact_order", tid)
    own = [f for f in dataset.files if Path(f).name.startswith(first["id"])]
    own_ids = [
        i for f in own for i in pq.read_table(f, columns=["event_id"])["event_id"].to_pylist()
    ]
    assert sorted(own_ids) == sorted(orders)
    assert warehouse.event_ids(tid) == orders

    # A retry under the same id (in-process here) keeps the first attempt's plan: it replaces
    # its own fact_order files and produces nothing the first attempt had acknowledged.
    retry = run_backfill(
        stack.settings, tenant_id=tid, source=str(source), backfill_id=first["id"],
        engine="local", redis_client=client,
    )  # fmt: skip
    assert retry.counts.duplicates_applied == 0
    assert retry.counts.written == first["written"] and retry.counts.produced == first["produced"]
    assert client.hget(f"aurora:t:{tid}:backfill:{first['id']}", "attempt") == b"2"

    # The shards folded the history: every SKU's stock equals the truth.
    wait_for(lambda: _on_hand(tenant) == truth, timeout=180, interval=1.0, what="on hand = truth")
    # The warehouse sink read the produced records too and left their orders to the job: after
    # a few of its flushes, fact_order still holds each order once.
    time.sleep(3 * stack.settings.warehouse_flush_s + 1)
    assert warehouse.read("fact_order", tid, columns=["event_id"]).num_rows == len(orders)

    # Again, under a new id: everything is a duplicate, nothing is written or produced.
    second = _run(stack, client, tid, source)
    assert second["duplicates_applied"] == first["produced"]
    assert second["written"] == 0 and second["produced"] == 0
    assert second["rejected"] == len(fields)
    assert warehouse.event_ids(tid) == orders
    own = [f for f in warehouse.dataset("fact_order", tid).files if second["id"] in f]
    assert not own
    assert _on_hand(tenant) == truth


def test_backfill_http_upload_and_status(stack, make_tenant, tmp_path: Path) -> None:
    tenant = make_tenant("backfill-http")
    other = make_tenant("backfill-other")
    source = tmp_path / "history.ndjson.gz"
    plain = tmp_path / "plain.ndjson"
    truth, fields, lines, _orders = _event_file(plain, tenant.tenant_id)
    import gzip

    source.write_bytes(gzip.compress(plain.read_bytes()))
    token = tenant.client.token()
    with httpx.Client(base_url=stack.base_url, timeout=60) as http:
        with open(source, "rb") as f:
            response = http.post(
                "/v1/ingest/backfill",
                files={"file": ("history.ndjson.gz", f, "application/gzip")},
                headers=bearer(token),
            )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status_url"] == f"/v1/ingest/backfill/{body['id']}"

        def finished() -> dict[str, Any] | None:
            status = http.get(body["status_url"], headers=bearer(token))
            assert status.status_code == 200, status.text
            record = status.json()
            return record if record["state"] in ("succeeded", "failed") else None

        record = wait_for(finished, timeout=300, interval=1.0, what="the uploaded backfill")
        assert record["state"] == "succeeded", record
        assert record["read"] == lines and record["rejected"] == len(fields)
        assert record["progress"] == 1.0 and record["folded"] is True
        assert Path(record["rejects"]).is_file()

        # Other tenants and unknown ids: 404; a local path as URI: 400; no token: 401.
        other_token = other.client.token()
        assert http.get(body["status_url"], headers=bearer(other_token)).status_code == 404
        missing = http.get("/v1/ingest/backfill/bf-0000000000000000", headers=bearer(token))
        assert missing.status_code == 404
        local = http.post("/v1/ingest/backfill", json={"uri": "/etc/passwd"}, headers=bearer(token))
        assert local.status_code == 400
        assert http.get(body["status_url"]).status_code == 401
        schema = http.get("/openapi.json").json()
        assert "/v1/ingest/backfill/{backfill_id}" in schema["paths"]
    wait_for(lambda: _on_hand(tenant) == truth, timeout=180, interval=1.0, what="on hand = truth")
