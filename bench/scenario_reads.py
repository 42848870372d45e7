"""Reads: GET /v1/stock/alerts p50/p95/p99 at open-loop rates while ingest runs, beside two
anchors hit the same way under the same ingest load: a bare ASGI endpoint (Starlette on uvicorn,
one worker, 127.0.0.1) and the same trivial handler deployed on Serve behind the same ingress
(the ceiling Serve puts on any read here).

A registered tenant is primed with 100 alerting SKUs; a background thread paces
``read_ingest_rate`` events/s into another registered tenant for the whole scenario.

A request that did not get its ``200`` (another status, a connection error, a timeout) is a
failure: the share of them is a figure at each rate, and the scenario fails, naming them, when
more than ``MAX_FAILED_SHARE`` of any load's requests failed (Aurora's, an anchor's, the
background ingest's), or none succeeded: latencies of refusals are not read latencies.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

from aurora_ray.embedded import free_port, wait_port
from bench import bare_asgi
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
from bench.load import LoadResult, closed_loop_gets, open_loop_gets, paced_posts
from bench.load import run as run_load
from bench.scenario_e2e import wait_processed
from bench.shards import connect_ray

NAME = "reads"
_BATCH = 1_000
_CLIENTS = 8
MAX_FAILED_SHARE = 0.01


def failed_share(load: LoadResult) -> float:
    """The share of requests that failed (not a 200 / 202, or no answer in time)."""
    return (load.requests - load.ok) / load.requests if load.requests else 1.0


def failures(loads: dict[str, LoadResult], *, max_share: float = MAX_FAILED_SHARE) -> list[str]:
    """What makes the scenario fail: every load whose failed share is above ``max_share``, or
    that succeeded not once, with its counts."""
    out = []
    for name, load in loads.items():
        share = failed_share(load)
        if load.ok == 0 or share > max_share:
            statuses = ", ".join(f"{k}: {v}" for k, v in sorted(load.statuses.items()))
            out.append(
                f"{name}: {load.requests - load.ok} of {load.requests} requests failed "
                f"({share:.1%}; statuses {{{statuses}}}, {load.timeouts} timeouts)"
            )
    return out


def _summary(load: LoadResult) -> dict[str, Any]:
    return {
        **percentiles(load.latencies_ms, (50, 95, 99)),
        "requests": load.requests,
        "ok": load.ok,
        "errors": load.errors,
        "timeouts": load.timeouts,
        "achieved_per_s": load.requests / load.seconds if load.seconds else 0.0,
        "failed_share": failed_share(load),
        "statuses": {str(k): v for k, v in load.statuses.items()},
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
    # Three open-loop runs a rate (Aurora and both anchors), then two closed-loop runs.
    ingest_seconds = (3 * len(size.read_rates) + 2) * (size.read_seconds + 1) + 4
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
    loads: dict[str, LoadResult] = {}
    thread = threading.Thread(target=ingest, name="reads-ingest", daemon=True)
    connect_ray(target)
    trivial_url = f"{target.api_url}{bare_asgi.deploy_on_serve()}/v1/stock/alerts"
    try:
        wait_port(port, timeout=30, what="bare uvicorn", process=bare)
        thread.start()
        for rate in size.read_rates:
            target.progress(f"reads: {rate} req/s for {size.read_seconds:.0f} s (and anchors)")
            aurora = run_load(
                open_loop_gets(alerts_url, rate=rate, seconds=size.read_seconds, headers=headers)
            )
            on_serve = run_load(open_loop_gets(trivial_url, rate=rate, seconds=size.read_seconds))
            anchor = run_load(
                open_loop_gets(
                    f"http://127.0.0.1:{port}/v1/stock/alerts", rate=rate, seconds=size.read_seconds
                )
            )
            loads.update({
                f"Aurora at {rate} req/s": aurora,
                f"trivial handler on Serve at {rate} req/s": on_serve,
                f"bare uvicorn at {rate} req/s": anchor,
            })  # fmt: skip
            a, s, b = _summary(aurora), _summary(on_serve), _summary(anchor)
            details[f"{rate}_per_s"] = {"aurora": a, "trivial_on_serve": s, "bare_asgi": b}
            for q in ("p50", "p95", "p99"):
                rows.append(
                    Row(
                        metric=f"GET /v1/stock/alerts {q} at {rate} req/s, ingest running",
                        unit="ms",
                        aurora=a[q],
                        anchor=b[q],
                        anchor_name=(
                            f"bare Starlette/uvicorn; {s[q]:.1f} ms trivial handler on Serve"
                        ),
                        target="<= 50" if (q == "p95" and rate >= 500) else "",
                        ok=(a[q] <= 50) if (q == "p95" and rate >= 500) else None,
                    )
                )
            rows.append(
                Row(
                    metric=f"GET /v1/stock/alerts failed (not 200, or no answer in 10 s) at "
                    f"{rate} req/s, ingest running",
                    unit="%",
                    aurora=100 * a["failed_share"],
                    anchor=100 * s["failed_share"],
                    anchor_name="trivial handler on Serve; bare uvicorn "
                    f"{100 * b['failed_share']:.2f} %",
                    target="0",
                    ok=aurora.ok == aurora.requests,
                    note=f"{aurora.requests - aurora.ok} of {aurora.requests} failed"
                    + (
                        f": statuses {dict(sorted(aurora.statuses.items()))}, "
                        f"{aurora.timeouts} timeouts"
                        if aurora.ok < aurora.requests
                        else ""
                    ),
                )
            )
        # Capacity under the same ingest: closed loop, as many reads as each answers.
        target.progress(f"reads: closed loop, {_CLIENTS} connections, {size.read_seconds:.0f} s")
        capacity = {
            name: run_load(
                closed_loop_gets(url, clients=_CLIENTS, seconds=size.read_seconds, headers=h)
            )
            for name, url, h in (
                ("aurora", alerts_url, headers),
                ("trivial_on_serve", trivial_url, None),
            )
        }
        loads.update({f"{name} closed loop": r for name, r in capacity.items()})
        per_s = {name: r.ok / r.seconds if r.seconds else 0.0 for name, r in capacity.items()}
        details["closed_loop_per_s"] = per_s
        rows.append(
            Row(
                metric=(
                    f"GET /v1/stock/alerts answered per second, closed loop "
                    f"({_CLIENTS} connections), ingest running"
                ),
                unit="req/s",
                aurora=per_s["aurora"],
                anchor=per_s["trivial_on_serve"],
                anchor_name="trivial handler on Serve, same ingress",
            )
        )
    finally:
        thread.join(timeout=ingest_seconds + 60)
        bare_asgi.remove_from_serve()
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
    problems = failures({**loads, **({"background ingest": load} if load else {})})
    if load is None:
        problems.append("the background ingest did not finish")
    return ScenarioResult(
        NAME, "failed" if problems else "ok", reason="; ".join(problems), rows=rows,
        details=details,
    )  # fmt: skip
