"""Reads: GET /v1/stock/alerts p50/p95/p99 at open-loop rates while ingest runs, beside a bare
ASGI endpoint (Starlette on uvicorn, one worker, 127.0.0.1) hit the same way at the same time of
the same ingest load.

A registered tenant is primed with 100 alerting SKUs; a background thread paces
``read_ingest_rate`` events/s into another registered tenant for the whole scenario.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

from aurora_ray.embedded import free_port, wait_port
from bench.common import (
    Row,
    ScenarioResult,
    Size,
    Target,
    gzip_body,
    order_lines,
    percentiles,
    registered_tenant,
    snapshot_lines,
)
from bench.load import LoadResult, open_loop_gets, paced_posts
from bench.load import run as run_load
from bench.scenario_e2e import wait_processed

NAME = "reads"
_BATCH = 1_000


def _summary(load: LoadResult) -> dict[str, Any]:
    return {
        **percentiles(load.latencies_ms, (50, 95, 99)),
        "requests": load.requests,
        "ok": load.ok,
        "errors": load.errors,
        "timeouts": load.timeouts,
        "achieved_per_s": load.requests / load.seconds if load.seconds else 0.0,
    }


def run(target: Target, size: Size) -> ScenarioResult:
    tenant, client = registered_tenant(target, "bench-reads")
    client.post_events(b"\n".join(snapshot_lines(tenant.tenant_id, range(100), on_hand=0)))
    token = client.token()
    alerts_url = f"{target.api_url}/v1/stock/alerts?limit=10"
    headers = {"Authorization": f"Bearer {token}"}

    writer, writer_client = registered_tenant(target, "bench-reads-ingest")
    lines = order_lines(writer.tenant_id, _BATCH * 30, skus=5_000, seed=4)
    bodies = [gzip_body(lines[i : i + _BATCH]) for i in range(0, len(lines), _BATCH)]
    writer_token = writer_client.token()
    ingest_seconds = 2 * len(size.read_rates) * (size.read_seconds + 1) + 4
    background: dict[str, LoadResult] = {}

    def ingest() -> None:
        background["load"] = run_load(
            paced_posts(
                target.api_url,
                writer_token,
                lambda i: (bodies[i % len(bodies)], _BATCH),
                rate=size.read_ingest_rate,
                seconds=ingest_seconds,
                events_per_body=_BATCH,
            )
        )

    # Both tenants' shards up (the Supervisor starts them; a new actor costs CPU for a while)
    # before anything is timed.
    writer_client.post_events(b"\n".join(lines[:_BATCH]))
    wait_processed(target, tenant.tenant_id, 100, 60)
    wait_processed(target, writer.tenant_id, _BATCH, 60)
    port = free_port()
    bare = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "bench.bare_asgi", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[Row] = []
    details: dict[str, Any] = {"ingest_rate": size.read_ingest_rate}
    thread = threading.Thread(target=ingest, name="reads-ingest", daemon=True)
    try:
        wait_port(port, timeout=30, what="bare uvicorn", process=bare)
        thread.start()
        for rate in size.read_rates:
            target.progress(f"reads: {rate} req/s for {size.read_seconds:.0f} s (and anchor)")
            aurora = run_load(
                open_loop_gets(alerts_url, rate=rate, seconds=size.read_seconds, headers=headers)
            )
            anchor = run_load(
                open_loop_gets(
                    f"http://127.0.0.1:{port}/v1/stock/alerts", rate=rate, seconds=size.read_seconds
                )
            )
            a, b = _summary(aurora), _summary(anchor)
            details[f"{rate}_per_s"] = {"aurora": a, "bare_asgi": b}
            for q in ("p50", "p95", "p99"):
                rows.append(
                    Row(
                        metric=f"GET /v1/stock/alerts {q} at {rate} req/s, ingest running",
                        unit="ms",
                        aurora=a[q],
                        anchor=b[q],
                        anchor_name="bare Starlette/uvicorn",
                        target="<= 50" if (q == "p95" and rate >= 500) else "",
                        ok=(a[q] <= 50) if (q == "p95" and rate >= 500) else None,
                        note=f"{a['errors']} errors, {a['timeouts']} timeouts"
                        if q == "p99" and (a["errors"] or a["timeouts"])
                        else "",
                    )
                )
    finally:
        thread.join(timeout=ingest_seconds + 60)
        bare.terminate()
        try:
            bare.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bare.kill()
            bare.wait(timeout=10)
        client.close()
        writer_client.close()
    load = background.get("load")
    details["background_ingest"] = (
        {"accepted": load.accepted, "seconds": load.seconds, "statuses": load.statuses}
        if load
        else None
    )
    return ScenarioResult(NAME, "ok", rows=rows, details=details)
