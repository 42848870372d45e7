"""Batch paths: backfill of ``backfill_events`` events, CSV export of ``export_rows`` rows, and
retrain on ``retrain_rows`` rows.

Each runs its Ray job entry point (``python -m jobs.<name> …``, the command ``ray job submit``
runs) as a subprocess connected to the stack's Ray, timed from start to exit. A path whose code is
not there yet is reported as skipped, "not available". CSV export is timed over HTTP instead
(``GET /v1/exports/alerts.csv``), beside a raw Redis read of the same keys.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    Row,
    ScenarioResult,
    Size,
    Target,
    cpu_by_role,
    cpu_count,
    cpu_snapshot,
    events_per_s,
    load_average,
    machine_busy_seconds,
    produce_raw,
    registered_tenant,
    unregistered_tenant,
)

__all__ = [
    "available",
    "job_failed",
    "rerun_row",
    "retrain_row",
    "run_backfill",
    "run_export",
    "run_retrain",
]

_TIMEOUT_S = 900.0  # a 5 M-event backfill took 13 min on a loaded 2-core machine
_QUICK_TIMEOUT_S = 300.0  # --quick: small inputs; bounds a hang (a retrain took 83 s at load 28)


def available(*modules: str) -> str | None:
    """None when every module can be imported, else the first missing one."""
    for module in modules:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except ModuleNotFoundError:
            return module
    return None


def _ray_address(target: Target) -> str:
    if target.ray_address:
        return target.ray_address
    import ray

    return str(ray.get_runtime_context().gcs_address)


def _job_env(target: Target) -> dict[str, str]:
    """The environment a submitted job gets (``ray_jobs.job_env``: shard and partition counts
    too, which the backfill's wait for the shards needs), pointed at the stack's Ray."""
    from aurora_ray.ray_jobs import job_env

    s = target.settings
    address = _ray_address(target)
    return {
        **os.environ,
        **job_env(s),
        "RAY_ADDRESS": address,
        "AURORA_RAY_ADDRESS": address,
        "AURORA_JWT_SECRET": s.jwt_secret.get_secret_value(),
    }


def _run_job(target: Target, argv: list[str], *, timeout_s: float) -> tuple[int, float, str]:
    began = time.perf_counter()
    try:
        done = subprocess.run(  # noqa: S603 - our own job modules, fixed arguments
            [sys.executable, "-m", *argv],
            env=_job_env(target),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        code, tail = done.returncode, (done.stderr or done.stdout)[-800:]
    except subprocess.TimeoutExpired:
        code, tail = -1, f"timed out after {timeout_s:.0f} s"
    return code, time.perf_counter() - began, tail


def job_failed(name: str, code: int, tail: str) -> ScenarioResult:
    """A job that exited non-zero: the reason is its last line (the exception, for a Python
    job), the log's tail goes in the details."""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    return ScenarioResult(name, "failed", reason=f"exit {code}: {last}", details={"log_tail": tail})


_BACKFILLED: list[str] = []  # tenants the backfill scenario filled (retrain trains on them)
_QUICK_DAYS = 20.0  # --quick: 200 K events over 20 days, ~20 micro-batches of the shards
_FULL_DAYS = 75.0  # the full size: 5 M events over ~75 days


def _progress_record(target: Target, tenant_id: str, backfill_id: str) -> dict[str, str]:
    from aurora_ray.backfill_job import BackfillProgress

    return BackfillProgress(target.store.client, tenant_id, backfill_id).get()


def _phases(record: dict[str, str]) -> dict[str, float]:
    out = {}
    for item in filter(None, record.get("seconds", "").split(",")):
        name, _, value = item.partition(":")
        out[name] = round(float(value), 2)
    return out


def _fact_order_rows(target: Target, tenant_id: str) -> int:
    from aurora_ray.warehouse import Warehouse

    table = Warehouse.from_settings(target.settings).read(
        "fact_order", tenant_id, columns=["event_id"]
    )
    return int(table.num_rows)


def _on_hand(target: Target, tenant_id: str, pages: int = 1_000) -> dict[tuple[str, str], int]:
    """Every SKU's on hand in the read model (bounded: at most ``pages`` pages of 1 000 SKUs)."""
    store, out, after = target.store, {}, None
    for _ in range(pages):
        page, after = store.predictions(tenant_id, sku=None, warehouse=None, after=after)
        out.update({(p["sku"], p["warehouse"]): int(p["on_hand"]) for p in page})
        if after is None:
            break
    return out


def _differences(truth: dict[tuple[str, str], int], seen: dict[tuple[str, str], int]) -> int:
    return sum(1 for key, value in truth.items() if seen.get(key) != value)


def _backfill_once(
    target: Target, size: Size, tenant_id: str, path: Path
) -> tuple[int, float, str, dict[str, str], float]:
    backfill_id = f"bench-{uuid.uuid4().hex[:8]}"
    load = load_average()
    code, seconds, tail = _run_job(
        target,
        ["jobs.backfill", "--tenant", tenant_id, "--source", str(path),
         "--backfill-id", backfill_id],
        timeout_s=_QUICK_TIMEOUT_S if size.quick else _TIMEOUT_S,
    )  # fmt: skip
    return code, seconds, tail, _progress_record(target, tenant_id, backfill_id), load


def _produce_anchor(target: Target, path: Path, chunk: int = 500_000) -> tuple[int, float]:
    """The raw producer (bench.common.produce_raw) on the file's lines, to a topic no shard
    reads; the lines are read outside the clock, ``chunk`` at a time, and each chunk's producer
    start-up (its first record) too. (delivered, seconds)"""
    anchor = unregistered_tenant(target)[0]
    topic = target.settings.topic_for(anchor.tenant_id)
    delivered, seconds = 0, 0.0
    with open(path, "rb") as lines:
        for _ in range(10_000):  # bounded: 5 G lines
            part = [(None, line.rstrip(b"\n")) for line in itertools.islice(lines, chunk)]
            if not part:
                break
            produced = produce_raw(target.settings.kafka_bootstrap, topic, part)
            delivered, seconds = delivered + produced.delivered, seconds + produced.seconds
    return delivered, seconds


def _validation_cpu_per_line(path: Path, tenant_id: str, sample_bytes: int = 8 << 20) -> float:
    """CPU seconds a line of :func:`aurora_ray.backfill.validate_chunk` (the live API's parser
    and the backfill's checks) on the first ``sample_bytes`` of the file, in this process."""
    from aurora_ray.backfill import validate_chunk

    with open(path, "rb") as f:
        data = f.read(sample_bytes)
    data = data[: data.rfind(b"\n")]
    lines = data.count(b"\n") + 1
    began = time.process_time()
    validate_chunk(data, first_line=1, tenant_id=tenant_id, received_ms=0)
    return (time.process_time() - began) / lines


def run_backfill(target: Target, size: Size) -> ScenarioResult:
    """A seeded history (bench/history.py) backfilled into a fresh tenant, then the same file
    again: the second run must apply nothing and change neither fact_order nor on-hand."""
    missing = available("aurora_ray.backfill", "jobs.backfill")
    if missing:
        return ScenarioResult("backfill", "skipped", reason=f"not available ({missing} missing)")
    from bench.history import generate_history

    tenant, client = registered_tenant(target, "bench-backfill")
    client.close()
    n = size.backfill_events
    target.progress(f"backfill: generating {n} events")
    began = time.perf_counter()
    history = generate_history(
        tenant.tenant_id, n, days=_QUICK_DAYS if size.quick else _FULL_DAYS, seed=7
    )
    generated_s = time.perf_counter() - began
    details: dict[str, Any] = {"history": history.summary(), "generate_seconds": generated_s}
    target.progress(f"backfill: {history.summary()} generated in {generated_s:.1f} s")
    with tempfile.TemporaryDirectory(prefix="aurora-bench-") as tmp:
        path = history.write(Path(tmp) / "events.ndjson")
        del history.data
        target.progress(f"backfill: running jobs.backfill on {n} events")
        cpu_before, children_before = cpu_snapshot(), resource.getrusage(resource.RUSAGE_CHILDREN)
        busy_before = machine_busy_seconds()
        code, seconds, tail, first, load = _backfill_once(target, size, tenant.tenant_id, path)
        machine_busy = machine_busy_seconds() - busy_before
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = cpu_by_role(cpu_before, cpu_snapshot())
        cpu["job driver"] = (children.ru_utime + children.ru_stime) - (
            children_before.ru_utime + children_before.ru_stime
        )
        cpu.pop("other", None)  # the bench itself and the machine's other processes
        if code != 0:
            return job_failed("backfill", code, tail)
        _BACKFILLED.append(tenant.tenant_id)
        rows_after_first = _fact_order_rows(target, tenant.tenant_id)
        on_hand_first = _on_hand(target, tenant.tenant_id)
        wrong_first = _differences(history.on_hand, on_hand_first)
        details.update(
            events=n, seconds=seconds, load_before=load, first=first, phases=_phases(first),
            fact_order_rows=rows_after_first, on_hand_wrong=wrong_first,
        )  # fmt: skip
        target.progress(f"backfill: {seconds:.1f} s, phases {_phases(first)}; re-running")
        code2, seconds2, tail2, second, load2 = _backfill_once(target, size, tenant.tenant_id, path)
        target.progress("backfill anchors: raw producer and validation CPU on the same lines")
        produced, produce_s = _produce_anchor(target, path)
        per_line_s = _validation_cpu_per_line(path, tenant.tenant_id)
    phases = _phases(first)
    cores = cpu_count()
    fold_s = phases.get("producing", 0.0) + phases.get("folding", 0.0)
    floors: dict[str, Any] = {
        "raw_produce_seconds": produce_s,
        "raw_produced": produced,
        "validate_cpu_us_per_line": per_line_s * 1e6,
        "validate_floor_seconds": per_line_s * n / cores,
        "shard_fold_events_per_s": events_per_s(n, fold_s),
    }
    floors["cpu_seconds"] = cpu
    floors["cpu_floor_seconds"] = sum(cpu.values()) / cores
    floors["machine_busy_seconds"] = machine_busy
    details["floors"] = floors
    rows = [
        Row(
            metric=f"backfill {n} events (python -m jobs.backfill; phases in details)",
            unit="s",
            aurora=seconds,
            anchor=produce_s,
            anchor_name=f"raw producer, the same {produced} lines",
            target="<= 120 (5 M events)",
            ok=seconds <= 120 if n >= 5_000_000 else None,
            note=(
                f"{events_per_s(n, seconds):.0f} events/s, {history.span_days:.0f} days, "
                f"{history.skus} SKUs; on-hand = truth for "
                f"{len(history.on_hand) - wrong_first}/{len(history.on_hand)} SKUs; "
                f"load {load:.1f}"
            ),
        ),
        Row(
            metric="backfill phases: validating / deduplicating / producing (+ fact_order) / "
            "folding after the last record",
            unit="s",
            aurora=sum(
                phases.get(k, 0.0) for k in ("validating", "deduplicating", "producing", "folding")
            ),
            note=(
                " / ".join(
                    f"{phases.get(k, 0.0):.1f}"
                    for k in ("validating", "deduplicating", "producing", "folding")
                )
                + f" s; fact_order writes {phases.get('writing', 0.0):.1f} s beside producing; "
                f"the shard folded {floors['shard_fold_events_per_s']:.0f} events/s from the "
                f"first record produced; validation "
                f"{floors['validate_cpu_us_per_line']:.1f} µs CPU a line, "
                f"{floors['validate_floor_seconds']:.0f} s on {cores} cores at best"
            ),
        ),
    ]
    rows.append(
        Row(
            metric=(
                "backfill CPU: seconds used by the stack's processes during the backfill, "
                f"÷ {cores} cores (the wall time it cannot beat here)"
            ),
            unit="s",
            aurora=floors["cpu_floor_seconds"],
            note=", ".join(f"{role} {secs:.0f}" for role, secs in sorted(
                cpu.items(), key=lambda kv: -kv[1])) + " CPU s (processes alive at the end); "
                f"the whole machine was busy {machine_busy:.0f} CPU s "
                f"({machine_busy / cores:.1f} s ÷ {cores} cores, ended processes and the "
                "machine's other work included)",
        )
    )  # fmt: skip
    problems = []
    if wrong_first:
        problems.append(
            f"on-hand differs from the generator's truth for {wrong_first} of "
            f"{len(history.on_hand)} SKUs"
        )
    if code2 != 0:
        details["rerun_error"] = f"exit {code2}: {tail2}"
        row, problem = rerun_row(seconds2, code=code2, tail=tail2)
    else:
        rows_after_second = _fact_order_rows(target, tenant.tenant_id)
        on_hand_second = _on_hand(target, tenant.tenant_id)
        changed = _differences(on_hand_first, on_hand_second)
        details.update(
            rerun={"seconds": seconds2, "load_before": load2, "record": second,
                   "phases": _phases(second), "fact_order_rows": rows_after_second,
                   "on_hand_changed": changed},
        )  # fmt: skip
        row, problem = rerun_row(
            seconds2,
            code=0,
            applied=int(second.get("produced", -1)),
            skipped=int(second.get("duplicates_applied", -1)),
            fact_order=(rows_after_first, rows_after_second),
            on_hand_changed=changed,
        )
    rows.append(row)
    if problem:
        problems.append(problem)
    return ScenarioResult(
        "backfill", "failed" if problems else "ok", reason="; ".join(problems), rows=rows,
        details=details,
    )  # fmt: skip


def rerun_row(
    seconds: float,
    *,
    code: int,
    tail: str = "",
    applied: int = -1,
    skipped: int = -1,
    fact_order: tuple[int, int] = (0, 0),
    on_hand_changed: int = 0,
) -> tuple[Row, str | None]:
    """The re-run of the same file, and what makes the scenario fail (None: nothing): a job
    that failed, or a re-run that applied anything or changed fact_order or an on-hand."""
    metric = "re-run of the same file: events applied / skipped as already applied"
    target = "0 applied, nothing changed"
    if code != 0:
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        reason = f"exit {code}: {lines[-1] if lines else 'no output'}"
        row = Row(metric=metric, unit="s", aurora=None, target=target, ok=False,
                  note=f"failed: {reason}")  # fmt: skip
        return row, f"the re-run failed: {reason}"
    before, after = fact_order
    unchanged = applied == 0 and before == after and on_hand_changed == 0
    summary = (
        f"{applied} applied, {skipped} skipped; fact_order {before} -> {after} rows; on-hand "
        f"changed for {on_hand_changed} SKUs"
    )
    row = Row(metric=metric, unit="s", aurora=seconds, target=target, ok=unchanged, note=summary)
    return row, None if unchanged else f"the re-run changed something: {summary}"


def run_export(target: Target, size: Size) -> ScenarioResult:
    """``export_rows`` alerts written into Redis by the store's own write path, then timed as
    ``GET /v1/exports/alerts.csv`` on 127.0.0.1 (rows counted as they stream in), beside the
    same keys read with bare ZRANGEs and formatted with the csv module in this process."""
    missing = available("aurora_ray.export", "serve.routes_export")
    if missing:
        return ScenarioResult("export", "skipped", reason=f"not available ({missing} missing)")
    import csv
    import io
    from typing import cast

    import httpx
    import msgspec

    from aurora_ray.adapters.keys import tenant_key as redis_key
    from aurora_ray.export import ALERT_COLUMNS, export_alerts

    n = size.export_rows
    timeout_s = _QUICK_TIMEOUT_S if size.quick else 300.0
    deadline = time.monotonic() + timeout_s
    tenant, client = registered_tenant(target, "bench-export")
    store = target.store
    target.progress(f"export: writing {n} alerts into Redis (RedisStore.write_outputs)")
    written, write_s = _write_bench_alerts(target, tenant.tenant_id, n, deadline=deadline)
    if written < n:
        client.close()
        return ScenarioResult(
            "export", "failed", reason=f"wrote only {written} of {n} alerts in {timeout_s:.0f} s"
        )
    key = redis_key(tenant.tenant_id, "alerts")
    runs = 1 if size.quick else 3
    http_s: list[float] = []
    received, total_bytes, streamed = 0, 0, False
    first_byte_s: list[float] = []  # far below the total when the body is really streamed
    try:
        token = client.token()
        with httpx.Client(timeout=min(120.0, timeout_s)) as http:
            for i in range(runs):
                if time.monotonic() > deadline:
                    break
                target.progress(f"export: GET /v1/exports/alerts.csv ({i + 1}/{runs})")
                began = time.perf_counter()
                with http.stream(
                    "GET",
                    f"{target.api_url}/v1/exports/alerts.csv",
                    headers={"Authorization": f"Bearer {token}"},
                ) as response:
                    if response.status_code != 200:
                        response.read()
                        return ScenarioResult(
                            "export", "failed", reason=f"HTTP {response.status_code}: "
                            f"{response.text[:300]}",
                        )  # fmt: skip
                    streamed = "content-length" not in response.headers
                    lines, total_bytes = 0, 0
                    for chunk in response.iter_bytes():
                        if not total_bytes:
                            first_byte_s.append(time.perf_counter() - began)
                        lines += chunk.count(b"\n")  # CRLF may straddle two chunks
                        total_bytes += len(chunk)
                http_s.append(time.perf_counter() - began)
                received = lines - 1  # the header
    finally:
        client.close()
    if received != n:
        return ScenarioResult("export", "failed", reason=f"received {received} rows, wrote {n}")

    # Anchors: the same key read by rank in chunks of 10 000, bare; then decoded and formatted
    # by the csv module (what any exporter has to do at least); and Aurora's export in-process.
    def zrange(start: int) -> list[bytes]:
        return cast(list[bytes], store.client.zrange(key, start, start + 9_999))

    def zrange_all() -> list[bytes]:
        members: list[bytes] = []
        for start in range(0, n, 10_000):
            members += zrange(start)
        return members

    began = time.perf_counter()
    zrange_all()
    zrange_s = time.perf_counter() - began
    began = time.perf_counter()
    decode = msgspec.json.decode
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(ALERT_COLUMNS)
    for start in range(0, n, 10_000):
        records: list[dict[str, object]] = [decode(m) for m in zrange(start)]
        writer.writerows([[a[c] for c in ALERT_COLUMNS] for a in records])
    anchor_bytes = len(buffer.getvalue().encode("utf-8"))
    anchor_s = time.perf_counter() - began
    began = time.perf_counter()
    in_process_rows = export_alerts(store, tenant.tenant_id).write_to(io.BytesIO())
    in_process_s = time.perf_counter() - began
    _drop_bench_alerts(target, tenant.tenant_id, n)

    seconds = sorted(http_s)[len(http_s) // 2]
    row = Row(
        metric=f"CSV export {n} alerts (GET /v1/exports/alerts.csv)",
        unit="s",
        aurora=seconds,
        anchor=anchor_s,
        anchor_name="ZRANGE + csv module in-process",
        target="<= 2 (100 K rows)",
        ok=seconds <= 2.0 if n >= 100_000 else None,
        note=(
            f"{n / seconds:.0f} rows/s, {total_bytes / 1e6:.1f} MB; median of {len(http_s)}; "
            f"bare ZRANGE {zrange_s:.2f} s; Aurora's export in-process {in_process_s:.2f} s"
        ),
    )
    return ScenarioResult(
        "export",
        "ok",
        rows=[row],
        details={
            "rows": n,
            "http_seconds": http_s,
            "first_byte_seconds": first_byte_s,
            "bytes": total_bytes,
            "chunked": streamed,
            "write_seconds": write_s,
            "zrange_seconds": zrange_s,
            "anchor_seconds": anchor_s,
            "anchor_bytes": anchor_bytes,
            "in_process_seconds": in_process_s,
            "in_process_rows": in_process_rows,
            "haproxy": target.haproxy,
            "load_1min": os.getloadavg()[0],
        },
    )


def _write_bench_alerts(
    target: Target, tenant_id: str, n: int, *, deadline: float, chunk: int = 10_000
) -> tuple[int, float]:
    """``n`` alerts over 20 000 SKUs in 4 warehouses, written as the shards write them
    (``write_outputs``: one transaction a chunk); returns (written, seconds)."""
    from aurora_ray.domain.alerts import AlertRecord, alert_id_for

    store = target.store
    warehouses = ("DE-HAM", "DE-BER", "FR-PAR", "NL-AMS")
    now = time.time()
    began = time.perf_counter()
    written = 0
    while written < n and time.monotonic() < deadline:
        alerts = []
        for i in range(written, min(n, written + chunk)):
            sku, warehouse = f"SKU-{i % 20_000:07d}", warehouses[i % 4]
            as_of = 1_748_854_800.0 + i
            alerts.append(
                AlertRecord(
                    alert_id=alert_id_for(tenant_id, f"{sku}@{warehouse}", as_of),
                    sku=sku,
                    warehouse=warehouse,
                    probability=0.7 + (i % 300) / 1000,
                    predicted_oos_at="2025-06-04T09:00:00.000Z",
                    as_of_s=as_of,
                    created_s=now - (n - i) * 0.001,
                    model_version="analytic-nb-1",
                )
            )
        store.write_outputs(tenant_id, shard=0, predictions={}, alerts=alerts)
        written += len(alerts)
    return written, time.perf_counter() - began


def _drop_bench_alerts(target: Target, tenant_id: str, n: int) -> None:
    """Free the bench alerts (the memory scenario measures Redis after this one)."""
    from aurora_ray.adapters.keys import tenant_key as redis_key

    pipe = target.store.client.pipeline(transaction=False)
    pipe.unlink(redis_key(tenant_id, "alerts"))
    for i in range(min(n, 20_000)):
        pipe.unlink(redis_key(tenant_id, "alerts", "sku", f"SKU-{i:07d}"))
    pipe.execute()


def retrain_row(seconds: float, result: dict[str, Any], *, wanted: int) -> Row:
    """The retrain row: every count in it from the job's result, one meaning each. The job
    labels every row, samples ``wanted`` of them (``--max-rows``), cuts the sample in time:
    the earlier part is trained on, the last 20 % held out, the rows between purged (their
    horizon reaches into the held-out part)."""
    counts, metrics = result.get("rows", {}), result.get("metrics", {})
    baseline = result.get("baseline", {})
    labelled = int(counts.get("labelled", 0))
    train, held_out = int(counts.get("train", 0)), int(counts.get("held_out", 0))
    sampled = min(labelled, wanted)
    used = f"a seeded sample of {sampled} of" if sampled < labelled else "all"

    def fmt(values: dict[str, Any]) -> str:
        shown = ("brier", "recall@24h@0.7", "recall@24h@active_precision")
        return ", ".join(f"{k} {values[k]:.4f}" for k in shown if isinstance(values.get(k), float))

    return Row(
        metric=(
            f"retrain (python -m jobs.retrain) on {used} {labelled} labelled rows: {train} "
            f"trained on, {held_out} held out, {sampled - train - held_out} purged at the cut"
        ),
        unit="s",
        aurora=seconds,
        note=(
            f"{counts.get('train_positives')} stock-outs in the training rows, "
            f"{counts.get('held_out_positives')} held out; candidate: {fmt(metrics)}; active "
            f"{baseline.get('version')}: {fmt(baseline.get('metrics', {}))}; "
            f"{'promoted' if result.get('promoted') else 'not promoted'} ({result.get('decision')})"
        ),
    )


def run_retrain(target: Target, size: Size) -> ScenarioResult:
    missing = available("aurora_ray.models.retrain", "jobs.retrain")
    if missing:
        return ScenarioResult("retrain", "skipped", reason=f"not available ({missing} missing)")
    if not _BACKFILLED:
        return ScenarioResult(
            "retrain",
            "skipped",
            reason="needs the backfill scenario's tenant and its fact_prediction rows",
        )
    tenant_id = _BACKFILLED[-1]
    wanted = size.retrain_rows
    target.progress(f"retrain: jobs.retrain on the backfilled tenant ({wanted} rows wanted)")
    with tempfile.TemporaryDirectory(prefix="aurora-bench-") as tmp:
        out = Path(tmp) / "retrain.json"
        code, seconds, tail = _run_job(
            target,
            ["jobs.retrain", "--tenant", tenant_id, "--max-rows", str(wanted),
             "--result-json", str(out)],
            timeout_s=_QUICK_TIMEOUT_S if size.quick else _TIMEOUT_S,
        )  # fmt: skip
        result = json.loads(out.read_text()) if out.exists() else {}
    if code != 0:
        return job_failed("retrain", code, tail)
    if not result.get("rows"):
        return ScenarioResult(
            "retrain", "failed", reason="the job wrote no result", details={"log_tail": tail}
        )
    row = retrain_row(seconds, result, wanted=wanted)
    return ScenarioResult(
        "retrain", "ok", rows=[row], details={"seconds": seconds, "result": result}
    )
