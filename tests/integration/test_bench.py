"""`aurora bench --quick` on the session stack: every scenario runs, or says why it was skipped,
and the JSON and the Markdown table are written. Never a timed assertion: figures are reported,
not judged, here.

The bench runs in this process against the session `stack` (its Ray, Valkey and broker), not as
`aurora bench --quick` in a subprocess: that would start a second Ray head (fixed ports 6380 and
8265, ~1 GiB and ~20 s more) beside the session's on a 2-core machine. The CLI's own part (option
parsing, starting and stopping the stack) is `running_stack` + this same `run_bench`; the option
parsing is unit-tested in tests/unit/test_bench_report.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

_MEASURED = ("ingest", "stream", "e2e", "reads", "backfill", "retrain", "memory")


@pytest.mark.timeout(900)  # a loaded shared machine; the batch jobs alone may take 3 min
def test_quick_bench_writes_every_scenario(stack, tmp_path: Path) -> None:
    """Every scenario reports: the quick run's retrain row once failed for want of training
    rows, then on a column of floats and nulls."""
    from bench.common import Target
    from bench.runner import SCENARIOS, run_bench, write_results

    messages: list[str] = []
    target = Target(
        settings=stack.settings,
        api_url=stack.base_url,
        ray_address=None,  # this process is connected to the session's Ray
        haproxy=False,
        progress=messages.append,
        owns_stack=True,  # the ingest application is deployed again with the limiter off
    )
    results = run_bench(target, quick=True)
    json_path, md_path = write_results(results, tmp_path / "results")

    written = json.loads(json_path.read_text())
    assert set(written["scenarios"]) == set(SCENARIOS)
    for name, scenario in written["scenarios"].items():
        assert scenario["status"] in ("ok", "skipped", "failed"), name
        if scenario["status"] != "ok":
            assert scenario["reason"], f"{name} is {scenario['status']} without a reason"
    for name in _MEASURED:  # the stack's own paths must run through
        scenario = written["scenarios"][name]
        assert scenario["status"] == "ok", (name, scenario["reason"], scenario["details"])
        assert scenario["rows"], name
        assert all(row["aurora"] is not None for row in scenario["rows"]), name
    export = written["scenarios"]["export"]  # rows over HTTP, counted, equal rows written
    assert export["status"] == "ok", (export["reason"], export["details"])
    assert export["details"]["in_process_rows"] == export["details"]["rows"] > 0
    # Aurora's figures stand beside same-run anchors.
    ingest = written["scenarios"]["ingest"]
    assert ingest["rows"][0]["anchor"] > 0
    # Every accepted event reached the topic, none twice: counted to each partition's end (a
    # loaded machine once read 59 967 for 60 000 from the listed offsets, a batch short). A
    # request timed out or answered 5xx may have been kept or not: its events are "unsettled".
    details = ingest["details"]
    variants = list(details["variants"].values())
    for run in [details, *variants, *(v["as_deployed_after"] for v in variants)]:
        assert run["accepted_events"] <= run["records_in_topic"], run
        assert run["records_in_topic"] <= run["accepted_events"] + run["unsettled_events"], run
    assert written["scenarios"]["stream"]["rows"][0]["anchor"] > 0
    assert written["scenarios"]["e2e"]["details"]["probes_seen"] > 0
    # The limiter's and the event-id window's cost, each beside the same measurement without.
    assert "rate limiter off" in ingest["rows"][1]["metric"]
    assert "event-id window off" in written["scenarios"]["stream"]["rows"][1]["metric"]
    assert "recommendations off" in written["scenarios"]["stream"]["rows"][2]["metric"]
    assert written["scenarios"]["e2e"]["details"]["window_off"]["probes_seen"] > 0
    retrain = written["scenarios"]["retrain"]["details"]["result"]
    assert retrain["rows"]["train_positives"] > 0 and retrain["rows"]["held_out"] > 0

    table = md_path.read_text()
    assert "| scenario | metric | Aurora | same-run anchor | target | met |" in table
    for name in SCENARIOS:
        assert f"| {name} |" in table
    assert "raw confluent-kafka producer" in table and "bare Starlette/uvicorn" in table
    assert any("[memory]" in m for m in messages)  # progress was reported


@pytest.mark.timeout(180)
def test_stream_scenario_measures_a_topic_folded_in_one_micro_batch(stack) -> None:
    """The quick run's symptom: a topic small enough to fold in one micro-batch, between two
    polls of the shards' health, read "0.0 K/s" (0 events over ~1 µs). The rate must come from
    the shards' own span of work, over every event, and the out-of-stock SKUs' alerts must be
    there; with 1 and 2 shards."""
    import dataclasses

    from bench import scenario_stream
    from bench.common import Size, Target

    size = dataclasses.replace(
        Size.of(quick=True), stream_events=5_000, stream_skus=500, shard_counts=(1, 2)
    )
    target = Target(
        # The production micro-batch (the session stack folds 2 000 events at most): the whole
        # topic in one, as the quick run's 30 000 events were.
        settings=stack.settings.model_copy(update={"batch_max_events": 50_000}),
        api_url=stack.base_url,
        ray_address=None,
        haproxy=False,
    )
    result = scenario_stream.run(target, size)

    # 1 shard, 1 shard with the event-id window off, 1 without recommendations, 2 shards.
    assert [row.aurora is not None and row.aurora > 0 for row in result.rows] == [True] * 4, [
        (row.aurora, row.note) for row in result.rows
    ]
    assert result.status == "ok", (result.reason, result.details)
    expected_alerts = result.details["out_of_stock_skus"]
    assert expected_alerts == 5
    for run_name, shards in (("1", 1), ("1-window-off", 1), ("1-recommendations-off", 1), ("2", 2)):
        run = result.details["by_shards"][run_name]
        assert run["events"] == run["expected"] == 5_000, run
        assert run["counters"]["events_processed"] == 5_000
        assert run["counters"].get("events_duplicate", 0) == 0
        assert run["counters"]["alerts_generated"] == expected_alerts
        assert 0 < run["seconds"] < run["waited_s"], run
        assert run["rate"] == pytest.approx(5_000 / run["seconds"])
        assert len(run["per_shard"]) == shards
        assert all(s["events"] > 0 for s in run["per_shard"]), run["per_shard"]
        # Every id of the topic went into the window, or none with the window off.
        assert run["event_ids_remembered"] == (0 if "window-off" in run_name else 5_000)
    for row in result.rows:
        assert f"{expected_alerts} alerts ({expected_alerts} SKUs out of stock)" in row.note
    off = result.rows[1]
    assert off.metric.startswith("stream events/s, 1 shard(s), 500 SKUs, event-id window off")
    assert off.anchor == result.rows[0].aurora  # beside the same run with the window on
    on_over_off = result.details["window_on_over_off"]
    assert on_over_off == pytest.approx(result.rows[0].aurora / off.aurora)
    assert f"window on ÷ off = {on_over_off:.2f}" in off.metric
    plain = result.rows[2]  # the scoring of before recommendations, beside the default
    assert plain.metric.startswith("stream events/s, 1 shard(s), 500 SKUs, recommendations off")
    assert plain.anchor == result.rows[0].aurora
    share = result.details["recommendations_on_over_off"]
    assert share == pytest.approx(result.rows[0].aurora / plain.aurora)
    assert f"on ÷ off = {share:.2f}" in plain.metric and plain.ok is None  # judged in full runs


def test_raw_producer_times_everything_but_its_first_record(stack) -> None:
    """The anchors' producer: every record delivered, the first one (a new producer's
    connection and id, ~0.5 s here) outside the clock."""
    import uuid

    from aurora_ray.adapters.kafka import TopicAdmin
    from bench.common import produce_raw

    topic = f"bench-anchor-{uuid.uuid4().hex[:8]}"
    TopicAdmin(stack.settings.kafka_bootstrap).ensure_topic(topic, 4)
    records = [(None, b'{"n":%d}' % i) for i in range(2_000)]
    produced = produce_raw(stack.settings.kafka_bootstrap, topic, records)
    assert (produced.delivered, produced.timed) == (2_000, 1_999)
    assert produced.seconds > 0 and produced.rate == 1_999 / produced.seconds
    assert produce_raw(stack.settings.kafka_bootstrap, topic, []) == (0, 0, 0.0)


def _target(stack, **kwargs):
    from bench.common import Target

    return Target(
        settings=stack.settings, api_url=stack.base_url, ray_address=None, haproxy=False,
        **kwargs,
    )  # fmt: skip


@pytest.mark.timeout(240)
def test_e2e_runs_with_the_event_id_window_on_then_off(stack) -> None:
    """The same paced load twice, on two tenants whose shards (and warehouse sink) the scenario
    starts itself: with the window on every event's id is in it; with it off none is."""
    import dataclasses

    from bench import scenario_e2e
    from bench.common import Size

    size = dataclasses.replace(Size.of(quick=True), e2e_rate=2_000, e2e_seconds=2.0)
    result = scenario_e2e.run(_target(stack), size)

    assert result.status == "ok", (result.reason, result.details)
    on, off = result.details, result.details["window_off"]
    for run in (on, off):
        assert run["accepted"] == run["processed"] == 4_000, run
        assert run["probes_seen"] == run["probes"] > 0, run
        assert run["shards"] == stack.settings.shards_per_tenant
        assert run["shard_cpu_seconds"] > 0
    # The priming snapshots and every event of the load: each id inserted once.
    assert on["event_ids_in_window"] == on["primed_skus"] + on["processed"]
    assert off["event_ids_in_window"] == 0
    assert [row.aurora is not None for row in result.rows] == [True] * 7
    assert "event-id window off (idempotency_window_events=0)" in result.rows[3].metric
    ratios = result.details["window_on_over_off"]
    assert ratios["shard_cpu_per_event"] == pytest.approx(
        result.rows[-1].aurora / result.rows[-1].anchor
    )


@pytest.mark.timeout(240)
def test_reads_fail_when_every_aurora_get_is_refused(stack, monkeypatch) -> None:
    """The symptom: every Aurora GET answered 401 (a token the API does not take) and the
    scenario still read "ok", the errors only in the p99 note."""
    import dataclasses

    from bench import scenario_reads
    from bench.common import Size

    real_open, real_closed = scenario_reads.open_loop_gets, scenario_reads.closed_loop_gets

    def bad_token(headers):  # only Aurora's requests carry a token; the anchors none
        return {"Authorization": "Bearer not-a-token"} if headers else None

    monkeypatch.setattr(
        scenario_reads, "open_loop_gets",
        lambda url, headers=None, **kw: real_open(url, headers=bad_token(headers), **kw),
    )  # fmt: skip
    monkeypatch.setattr(
        scenario_reads, "closed_loop_gets",
        lambda url, headers=None, **kw: real_closed(url, headers=bad_token(headers), **kw),
    )  # fmt: skip
    size = dataclasses.replace(
        Size.of(quick=True), read_rates=(20,), read_seconds=1.0, read_ingest_rate=1_000
    )
    result = scenario_reads.run(_target(stack), size)

    assert result.status == "failed", result.details
    assert result.reason.startswith("Aurora at 20 req/s: 20 of 20 requests failed (100.0%; "
                                    "statuses {401: 20}")  # fmt: skip
    assert "aurora closed loop:" in result.reason
    assert "bare uvicorn" not in result.reason and "background ingest" not in result.reason
    failed = next(
        row for row in result.rows if row.metric.startswith("GET /v1/stock/alerts failed")
    )
    assert failed.aurora == 100.0 and failed.ok is False and failed.anchor == 0.0


@pytest.mark.timeout(300)
def test_backfill_fails_when_its_rerun_fails(stack, monkeypatch) -> None:
    """The symptom: the re-run of the same file failed and the scenario stayed "ok"."""
    import dataclasses

    from bench import scenario_jobs
    from bench.common import Size

    real = scenario_jobs._backfill_once
    calls: list[int] = []

    def second_fails(target, size, tenant_id, path):
        calls.append(1)
        if len(calls) == 1:
            return real(target, size, tenant_id, path)
        tail = "INFO validating\nTraceback (most recent call last):\nRuntimeError: broker gone\n"
        return 1, 0.5, tail, {}, 0.0

    monkeypatch.setattr(scenario_jobs, "_backfill_once", second_fails)
    size = dataclasses.replace(Size.of(quick=True), backfill_events=3_000)
    result = scenario_jobs.run_backfill(_target(stack), size)

    assert len(calls) == 2
    assert result.status == "failed", result.details
    assert result.reason == "the re-run failed: exit 1: RuntimeError: broker gone"
    rerun = result.rows[-1]
    assert rerun.aurora is None and rerun.ok is False
    assert result.rows[0].aurora is not None  # the first run's figures are kept


def _refused(stack, token: str, body: bytes) -> bool:
    """Whether a tenant allowed one request a second is refused a second request at once (the
    rate limiter runs), posting directly (the client would wait out a 429)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson",
               "Content-Encoding": "gzip"}  # fmt: skip
    with httpx.Client(base_url=stack.base_url, timeout=10) as http:
        codes = [http.post("/v1/ingest/events", content=body, headers=headers).status_code
                 for _ in range(3)]  # fmt: skip
    return 429 in codes


@pytest.mark.timeout(300)
def test_ingest_measures_the_api_as_deployed_then_with_the_limiter_off(stack, monkeypatch) -> None:
    """The limiter's cost in the same run: the ingest application deployed again with
    rate_limit_enabled=false for the second measurement, then back as it was for the third."""
    import dataclasses

    from bench import scenario_ingest
    from bench.common import Size, gzip_body, order_lines, unregistered_tenant

    target = _target(stack, owns_stack=True)
    throttled, client = unregistered_tenant(target)
    target.store.put_rate_limit_overrides(throttled.tenant_id, {"requests_per_s": 1.0})
    token = client.token()
    client.close()
    body = gzip_body(order_lines(throttled.tenant_id, 2, skus=2, seed=9))
    limited_during: list[bool] = []
    real = scenario_ingest._measure

    def measure_and_probe(*args, **kwargs):
        limited_during.append(_refused(stack, token, body))
        return real(*args, **kwargs)

    monkeypatch.setattr(scenario_ingest, "_measure", measure_and_probe)
    size = dataclasses.replace(
        Size.of(quick=True), ingest_seconds=1.0, ingest_clients=1, producer_messages=2_000
    )
    result = scenario_ingest.run(target, size)

    assert result.status == "ok", (result.reason, result.details)
    # As deployed: limited; the variant: not; as deployed again, after it: limited.
    assert limited_during == [True, False, True]
    deployed, off = result.rows
    assert deployed.aurora > 0 and off.aurora > 0
    assert off.metric.startswith("ingest events/s, rate limiter off (rate_limit_enabled=false)")
    rates = result.details["as_deployed_rates"]
    assert rates[0] == deployed.aurora and off.anchor == pytest.approx(sum(rates) / 2)
    variant = result.details["variants"]["rate limiter off (rate_limit_enabled=false)"]
    assert variant["records_in_topic"] == variant["accepted_events"] > 0
    assert variant["to_variant_s"] > 0 and variant["back_s"] > 0


def test_a_stack_the_bench_found_running_is_never_redeployed(stack) -> None:
    import dataclasses

    from bench import scenario_ingest
    from bench.common import Size

    size = dataclasses.replace(
        Size.of(quick=True), ingest_seconds=0.5, ingest_clients=1, producer_messages=1_000
    )
    result = scenario_ingest.run(_target(stack), size)
    assert result.status == "ok", result.reason
    assert result.rows[1].aurora is None and result.rows[1].ok is None
    assert result.rows[1].note == "not measured: the bench redeploys only a stack it started"
