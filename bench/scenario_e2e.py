"""End to end: latency from the 202 of a request to its alert being readable, at a paced rate.

A tenant gets ``e2e_rate`` events/s of orders on SKUs with ample stock (scored, no alerts) for
``e2e_seconds``, every event with an id of its own (no body is sent twice). About every
``_PROBE_S`` seconds a request also carries a ``stock.snapshot`` with ``on_hand: 0`` for a fresh
probe SKU, which raises an alert at once. A poller reads ``GET /v1/stock/alerts`` every
``_POLL_S`` and notes when each probe's alert shows up; latency = seen - 202 (0 when the alert
was readable before the 202 came back), so the figure carries the poll period as its
resolution.

Throughput is judged in steady state: every ``_SAMPLE_S`` the poller also reads the tenant's
processed-events counter, and the scored rate is the counter's slope over the last
``_STEADY_SHARE`` of the run, beside the rate accepted over the same window; the backlog
(accepted - scored) at the start and the end of that window shows whether the stream keeps up.

The dedup cost: the run is made twice in a row, on two fresh tenants set up alike, with the
shards' event-id window on (the default), then off (``idempotency_window_events=0``); the ids
being distinct, the first run hashes, looks up and inserts every one. The tenants are not
registered: the scenario starts what the Supervisor starts for a tenant (its
``shards_per_tenant`` shards and its warehouse sink, the same classes and options) with each
run's settings, and stops them after (``bench.shards.tenant_actors``). Besides the three figures
of each run, the shards' CPU time per event scored (their processes' user + system time from the
first request to the end of the drain) shows the cost where it is paid.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import (
    T0_S,
    Row,
    ScenarioResult,
    Size,
    Target,
    events_per_s,
    gzip_body,
    order_lines,
    percentiles,
    snapshot_lines,
    unregistered_tenant,
)
from bench.load import paced_posts
from bench.load import run as run_load
from bench.shards import WINDOW_OFF, healths, process_cpu_seconds, tenant_actors

NAME = "e2e"
_BATCH = 1_000
_PROBE_S = 0.25  # a probe about every quarter second
_POLL_S = 0.05
_SKUS = 20_000
_SAMPLE_S = 0.25
_STEADY_SHARE = 0.75  # the window after the first quarter of the run (shards warmed up)
_STEP_S = 0.01  # event time between two orders, as in bench.common.order_lines
_CHUNK = 50  # bodies generated at a time


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


def bodies(tenant_id: str, n: int, *, skus: int, probe_every: int) -> list[bytes]:
    """``n`` gzip bodies of ``_BATCH`` orders, every event id distinct, event time running on
    from body to body; body ``i`` with ``i % probe_every == 0`` ends with the probe
    ``PROBE-<i>`` (a ``stock.snapshot`` with ``on_hand`` 0) instead of its last order."""
    out: list[bytes] = []
    for first in range(0, n, _CHUNK):
        count = min(_CHUNK, n - first)
        lines = order_lines(
            tenant_id,
            count * _BATCH,
            skus=skus,
            start_s=T0_S + first * _BATCH * _STEP_S,
            step_s=_STEP_S,
            seed=3 + first,
        )
        for j in range(count):
            i = first + j
            body = lines[j * _BATCH : (j + 1) * _BATCH]
            if i % probe_every == 0:
                body = body[:-1] + snapshot_lines(tenant_id, [i], on_hand=0, prefix="PROBE")
            out.append(gzip_body(body))
    return out


def probe_sku(i: int) -> str:
    return f"PROBE-{i:07d}"


@dataclass
class Measured:
    """One run's figures."""

    window: bool
    latencies_ms: list[float]
    steady: dict[str, float]
    overall: float
    shard_cpu_us: float | None  # per event scored
    ok: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def latency(self, q: str) -> float | None:
        value = percentiles(self.latencies_ms, (50, 99))[q]
        return None if value != value else value


def measure(target: Target, size: Size, *, window: bool) -> Measured:
    """One run on a fresh tenant, its shards with the event-id window on or off."""
    tenant, client = unregistered_tenant(target)
    tid = tenant.tenant_id
    settings = target.settings
    if not window:
        settings = settings.model_copy(update=dict(WINDOW_OFF))
    label = "window on" if window else "window off"
    skus = min(_SKUS, size.e2e_rate * 2)
    total = int(size.e2e_seconds / (_BATCH / size.e2e_rate))  # the bodies paced_posts sends
    probe_every = max(1, round(size.e2e_rate / _BATCH * _PROBE_S))
    target.progress(f"e2e ({label}): building {total} bodies of {_BATCH} events")
    plain = bodies(tid, total, skus=skus, probe_every=probe_every)
    prime = snapshot_lines(tid, range(skus), on_hand=1_000_000_000)
    accepted_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    accepted_series: list[tuple[float, int]] = []  # (time, events accepted so far)
    scored_series: list[tuple[float, int]] = []  # (time, events scored so far)

    def on_accepted(i: int, at: float) -> None:
        done = accepted_series[-1][1] if accepted_series else 0
        accepted_series.append((at, done + _BATCH))
        if i % probe_every == 0:
            accepted_at[probe_sku(i)] = at

    stop = threading.Event()

    def poll(token: str) -> None:
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

    with tenant_actors(target, tid, settings) as shards:
        for i in range(0, len(prime), _BATCH):
            client.post_events(b"\n".join(prime[i : i + _BATCH]))
        primed_s = wait_processed(target, tid, len(prime), 90)
        pids = [int(h["pid"]) for h in healths(shards)]
        token = client.token()
        poller = threading.Thread(target=poll, args=(token,), name="alert-poller", daemon=True)
        poller.start()
        target.progress(f"e2e ({label}): {size.e2e_rate} events/s for {size.e2e_seconds:.0f} s")
        cpu_before = process_cpu_seconds(pids)
        load_began = time.perf_counter()
        try:
            load = run_load(
                paced_posts(
                    target.api_url,
                    token,
                    lambda i: (plain[i % len(plain)], _BATCH),
                    rate=size.e2e_rate,
                    seconds=size.e2e_seconds,
                    events_per_body=_BATCH,
                    on_accepted=on_accepted,
                )
            )
            load_ended = time.perf_counter()
            drain_s = wait_processed(target, tid, len(prime) + load.accepted, 60)
            shard_cpu_s = process_cpu_seconds(pids) - cpu_before
            deadline = time.perf_counter() + 10
            while set(accepted_at) - set(seen_at) and time.perf_counter() < deadline:
                time.sleep(_POLL_S)
        finally:
            stop.set()
            poller.join(timeout=15)
            client.close()
        window_ids = sum(int(h.get("event_ids_remembered", 0)) for h in healths(shards))
    latencies = [max(0.0, seen_at[s] - t) * 1000 for s, t in accepted_at.items() if s in seen_at]
    processed = target.store.counters(tid).get("events_processed", 0) - len(prime)
    overall = events_per_s(processed, load.seconds + drain_s)
    steady = steady_state(accepted_series, scored_series, load_began, load_ended)
    ok = bool(latencies) and load.ok > 0
    return Measured(
        window=window,
        latencies_ms=latencies,
        steady=steady,
        overall=overall,
        shard_cpu_us=shard_cpu_s / processed * 1e6 if processed > 0 else None,
        ok=ok,
        reason="" if ok else f"{label}: probes seen {len(latencies)}, statuses {load.statuses}",
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
            "latency_ms": percentiles(latencies, (50, 99)),
            "request_latency_ms": percentiles(load.latencies_ms, (50, 99)),
            "shards": len(pids),
            "shard_cpu_seconds": shard_cpu_s,
            "event_ids_in_window": window_ids,
        },
    )


def ratio(on: float | None, off: float | None) -> float | None:
    """``on / off``, None unless both were measured."""
    if on is None or off is None or off != off or on != on or off <= 0:
        return None
    return on / off


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def rows_for(size: Size, on: Measured, off: Measured) -> list[Row]:
    """The three figures with the window on (judged as ever), the same with it off and the
    ratio on ÷ off, and the shards' CPU an event in both runs."""
    rate = size.e2e_rate
    steady_metric = (
        "end-to-end events/s scored in steady state (HTTP -> Kafka -> shard -> Redis; "
        f"last {_STEADY_SHARE:.0%} of the run)"
    )
    off_label = "event-id window off (idempotency_window_events=0)"

    def steady_note(run: Measured) -> str:
        steady = run.steady
        return (
            f"backlog {steady['backlog_start']:.0f} -> {steady['backlog_end']:.0f} events over "
            f"the window; {run.overall / 1000:.1f} K/s counted over the whole run and the drain "
            f"({run.details['drain_s']:.1f} s after the last request)"
        )

    held = on.steady["scored_per_s"] >= 45_000 and on.steady["backlog_end"] <= max(
        on.steady["backlog_start"] * 1.5, on.steady["accepted_per_s"] * 1.0
    )
    p99_on = on.latency("p99")
    cpu_ratio = ratio(on.shard_cpu_us, off.shard_cpu_us)
    judged = not size.quick  # a quick run's 6 000 events: the shards' idle polls dominate
    return [
        Row(
            metric=f"event -> alert latency p50 at {rate} events/s",
            unit="ms",
            aurora=on.latency("p50"),
            target="",
            note=f"{len(on.latencies_ms)} of {on.details['probes']} probes seen; poll every "
            f"{_POLL_S * 1000:.0f} ms",
        ),
        Row(
            metric=f"event -> alert latency p99 at {rate} events/s",
            unit="ms",
            aurora=p99_on,
            # The target is at 30 K/s; at a higher rate the figure is reported, not judged.
            target="<= 2000" if rate <= 30_000 else "",
            ok=(p99_on is not None and p99_on <= 2000) if rate <= 30_000 else None,
        ),
        Row(
            metric=steady_metric,
            unit="events/s",
            aurora=on.steady["scored_per_s"],
            anchor=on.steady["accepted_per_s"],
            anchor_name="accepted over the same window",
            # The PRD's burst, held: judged when the run offers it (--e2e-rate 45000 or more).
            target=">= 45000 sustained" if rate >= 45_000 else "",
            ok=held if rate >= 45_000 else None,
            note=steady_note(on),
        ),
        *(
            Row(
                metric=f"event -> alert latency {q} at {rate} events/s, {off_label}; "
                f"window on ÷ off = {_times(ratio(on.latency(q), off.latency(q)))}",
                unit="ms",
                aurora=off.latency(q),
                anchor=on.latency(q),
                anchor_name="window on (default), same run",
                note=f"{len(off.latencies_ms)} of {off.details['probes']} probes seen"
                if q == "p50"
                else "",
            )
            for q in ("p50", "p99")
        ),
        Row(
            metric=f"{steady_metric}, {off_label}; window on ÷ off = "
            f"{_times(ratio(on.steady['scored_per_s'], off.steady['scored_per_s']))}",
            unit="events/s",
            aurora=off.steady["scored_per_s"],
            anchor=off.steady["accepted_per_s"],
            anchor_name="accepted over the same window",
            note=steady_note(off),
        ),
        Row(
            metric=(
                f"shard CPU per event scored at {rate} events/s (the shards' processes, first "
                f"request to end of drain), event-id window on; on ÷ off = {_times(cpu_ratio)}"
            ),
            unit="µs",
            aurora=on.shard_cpu_us,
            anchor=off.shard_cpu_us,
            anchor_name="window off, same run",
            target="on <= 1.1 x off" if judged else "",
            ok=None if cpu_ratio is None or not judged else cpu_ratio <= 1.1,
            note=(
                f"{on.details['event_ids_in_window']} event ids in the window for "
                f"{on.details['processed']} events scored (and {on.details['primed_skus']} "
                f"priming snapshots); {on.details['shards']} shards"
            ),
        ),
    ]


def run(target: Target, size: Size) -> ScenarioResult:
    on = measure(target, size, window=True)
    off = measure(target, size, window=False)
    failed = [run.reason for run in (on, off) if not run.ok]
    return ScenarioResult(
        NAME,
        "failed" if failed else "ok",
        reason="; ".join(failed),
        rows=rows_for(size, on, off),
        details={
            **on.details,
            "window_off": off.details,
            "window_on_over_off": {
                "latency_p50": ratio(on.latency("p50"), off.latency("p50")),
                "latency_p99": ratio(on.latency("p99"), off.latency("p99")),
                "steady_scored": ratio(on.steady["scored_per_s"], off.steady["scored_per_s"]),
                "shard_cpu_per_event": ratio(on.shard_cpu_us, off.shard_cpu_us),
            },
        },
    )
