"""End to end: latency from the 202 of a request to its alert being readable, at a paced rate.

A registered tenant (the Supervisor's shards) gets ``e2e_rate`` events/s of orders on SKUs with
ample stock (scored, no alerts) for ``e2e_seconds``. About every ``_PROBE_S`` seconds a request
also carries a ``stock.snapshot`` with ``on_hand: 0`` for a fresh probe SKU, which raises an
alert at once. A poller reads ``GET /v1/stock/alerts`` every ``_POLL_S`` and notes when each
probe's alert shows up; latency = seen - 202 (0 when the alert was readable before the 202 came
back), so the figure carries the poll period as its resolution.

Throughput is judged in steady state: every ``_SAMPLE_S`` the poller also reads the tenant's
processed-events counter, and the scored rate is the counter's slope over the last
``_STEADY_SHARE`` of the run, beside the rate accepted over the same window; the backlog
(accepted - scored) at the start and the end of that window shows whether the stream keeps up.
"""

from __future__ import annotations

import threading
import time

import httpx

from bench.common import (
    Row,
    ScenarioResult,
    Size,
    Target,
    events_per_s,
    gzip_body,
    order_lines,
    percentiles,
    registered_tenant,
    snapshot_lines,
)
from bench.load import paced_posts
from bench.load import run as run_load

NAME = "e2e"
_BATCH = 1_000
_PROBE_S = 0.25  # a probe about every quarter second
_POLL_S = 0.05
_SKUS = 20_000
_SAMPLE_S = 0.25
_STEADY_SHARE = 0.75  # the window after the first quarter of the run (shards warmed up)


def _at(samples: list[tuple[float, int]], t: float) -> float:
    """The counter at time ``t``, linearly interpolated between samples (clamped)."""
    if not samples:
        return 0.0
    if t <= samples[0][0]:
        return float(samples[0][1])
    for (t0, v0), (t1, v1) in zip(samples, samples[1:], strict=False):
        if t0 <= t <= t1:
            return v0 + (v1 - v0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)
    return float(samples[-1][1])


def steady_state(
    accepted: list[tuple[float, int]], scored: list[tuple[float, int]], began: float, ended: float
) -> dict[str, float]:
    """Rates and backlog over the last ``_STEADY_SHARE`` of ``[began, ended]``; both series
    are (time, cumulative events)."""
    start = ended - (ended - began) * _STEADY_SHARE
    span = max(ended - start, 1e-9)
    return {
        "window_s": span,
        "accepted_per_s": (_at(accepted, ended) - _at(accepted, start)) / span,
        "scored_per_s": (_at(scored, ended) - _at(scored, start)) / span,
        "backlog_start": _at(accepted, start) - _at(scored, start),
        "backlog_end": _at(accepted, ended) - _at(scored, ended),
    }


def wait_processed(target: Target, tenant_id: str, count: int, timeout_s: float) -> float:
    """Seconds until the tenant's shards processed ``count`` records (bounded)."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        if target.store.counters(tenant_id).get("events_processed", 0) >= count:
            break
        time.sleep(0.05)
    return time.perf_counter() - began


def run(target: Target, size: Size) -> ScenarioResult:
    tenant, client = registered_tenant(target, "bench-e2e")
    tid = tenant.tenant_id
    skus = min(_SKUS, size.e2e_rate * 2)
    prime = snapshot_lines(tid, range(skus), on_hand=1_000_000_000)
    for i in range(0, len(prime), _BATCH):
        client.post_events(b"\n".join(prime[i : i + _BATCH]))
    primed_s = wait_processed(target, tid, len(prime), 90)
    token = client.token()
    background = order_lines(tid, _BATCH * 60, skus=skus, seed=3)
    plain = [gzip_body(background[i : i + _BATCH]) for i in range(0, len(background), _BATCH)]
    probe_every = max(1, round(size.e2e_rate / _BATCH * _PROBE_S))
    accepted_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    accepted_series: list[tuple[float, int]] = []  # (time, events accepted so far)
    scored_series: list[tuple[float, int]] = []  # (time, events scored so far)

    def next_body(i: int) -> tuple[bytes, int]:
        if i % probe_every:
            return plain[i % len(plain)], _BATCH
        start = (i % len(plain)) * _BATCH
        probe = snapshot_lines(tid, [i], on_hand=0, prefix="PROBE")
        return gzip_body(background[start : start + _BATCH - 1] + probe), _BATCH

    def on_accepted(i: int, at: float) -> None:
        done = accepted_series[-1][1] if accepted_series else 0
        accepted_series.append((at, done + _BATCH))
        if i % probe_every == 0:
            accepted_at[f"PROBE-{i:07d}"] = at

    stop = threading.Event()

    def poll() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        next_sample = 0.0
        with httpx.Client(base_url=target.api_url, timeout=10) as http:
            while not stop.wait(_POLL_S):
                if time.perf_counter() >= next_sample:
                    counted = target.store.counters(tid).get("events_processed", 0)
                    scored_series.append((time.perf_counter(), counted - len(prime)))
                    next_sample = time.perf_counter() + _SAMPLE_S
                try:
                    alerts = http.get("/v1/stock/alerts", params={"limit": 100}, headers=headers)
                except httpx.HTTPError:
                    continue
                if alerts.status_code != 200:
                    continue
                now = time.perf_counter()
                for alert in alerts.json():
                    if alert["sku"].startswith("PROBE-"):
                        seen_at.setdefault(alert["sku"], now)

    poller = threading.Thread(target=poll, name="alert-poller", daemon=True)
    poller.start()
    target.progress(f"e2e: {size.e2e_rate} events/s for {size.e2e_seconds:.0f} s")
    load_began = time.perf_counter()
    try:
        load = run_load(
            paced_posts(
                target.api_url,
                token,
                next_body,
                rate=size.e2e_rate,
                seconds=size.e2e_seconds,
                events_per_body=_BATCH,
                on_accepted=on_accepted,
            )
        )
        load_ended = time.perf_counter()
        drain_s = wait_processed(target, tid, len(prime) + load.accepted, 60)
        deadline = time.perf_counter() + 10
        while set(accepted_at) - set(seen_at) and time.perf_counter() < deadline:
            time.sleep(_POLL_S)
    finally:
        stop.set()
        poller.join(timeout=15)
        client.close()
    latencies = [max(0.0, seen_at[s] - t) * 1000 for s, t in accepted_at.items() if s in seen_at]
    lat = percentiles(latencies, (50, 99))
    processed = target.store.counters(tid).get("events_processed", 0) - len(prime)
    overall = events_per_s(processed, load.seconds + drain_s)
    steady = steady_state(accepted_series, scored_series, load_began, load_ended)
    held = steady["scored_per_s"] >= 45_000 and steady["backlog_end"] <= max(
        steady["backlog_start"] * 1.5, steady["accepted_per_s"] * 1.0
    )
    rows = [
        Row(
            metric=f"event -> alert latency p50 at {size.e2e_rate} events/s",
            unit="ms",
            aurora=lat["p50"],
            target="",
            note=f"{len(latencies)} of {len(accepted_at)} probes seen; poll every "
            f"{_POLL_S * 1000:.0f} ms",
        ),
        Row(
            metric=f"event -> alert latency p99 at {size.e2e_rate} events/s",
            unit="ms",
            aurora=lat["p99"],
            # The target is at 30 K/s; at a higher rate the figure is reported, not judged.
            target="<= 2000" if size.e2e_rate <= 30_000 else "",
            ok=(lat["p99"] <= 2000 if latencies else False) if size.e2e_rate <= 30_000 else None,
        ),
        Row(
            metric=(
                "end-to-end events/s scored in steady state (HTTP -> Kafka -> shard -> Redis; "
                f"last {_STEADY_SHARE:.0%} of the run)"
            ),
            unit="events/s",
            aurora=steady["scored_per_s"],
            anchor=steady["accepted_per_s"],
            anchor_name="accepted over the same window",
            # The PRD's burst, held: judged when the run offers it (--e2e-rate 45000 or more).
            target=">= 45000 sustained" if size.e2e_rate >= 45_000 else "",
            ok=held if size.e2e_rate >= 45_000 else None,
            note=(
                f"backlog {steady['backlog_start']:.0f} -> {steady['backlog_end']:.0f} events "
                f"over the window; {overall / 1000:.1f} K/s counted over the whole run and the "
                f"drain ({drain_s:.1f} s after the last request)"
            ),
        ),
    ]
    ok = bool(latencies) and load.ok > 0
    return ScenarioResult(
        NAME,
        "ok" if ok else "failed",
        reason="" if ok else f"probes seen {len(latencies)}, statuses {load.statuses}",
        rows=rows,
        details={
            "rate": size.e2e_rate,
            "seconds": load.seconds,
            "accepted": load.accepted,
            "requests": load.requests,
            "statuses": {str(k): v for k, v in load.statuses.items()},
            "timeouts": load.timeouts,
            "processed": processed,
            "drain_s": drain_s,
            "overall_scored_per_s": overall,
            "steady_state": steady,
            "primed_skus": skus,
            "primed_s": primed_s,
            "probes": len(accepted_at),
            "probes_seen": len(latencies),
            "latency_ms": lat,
            "request_latency_ms": percentiles(load.latencies_ms, (50, 99)),
        },
    )
