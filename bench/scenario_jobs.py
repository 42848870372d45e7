"""Batch paths: backfill of ``backfill_events`` events, CSV export of ``export_rows`` rows, and
retrain on ``retrain_rows`` rows.

Each runs its Ray job entry point (``python -m jobs.<name> …``, the command ``ray job submit``
runs) as a subprocess connected to the stack's Ray, timed from start to exit. A path whose code is
not there yet is reported as skipped, "not available"; CSV export belongs to a later issue.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import (
    Row,
    ScenarioResult,
    Size,
    Target,
    events_per_s,
    order_lines,
    registered_tenant,
    snapshot_lines,
)

__all__ = ["available", "run_backfill", "run_export", "run_retrain"]

_TIMEOUT_S = 900.0  # a 5 M-event backfill took 13 min on a loaded 2-core machine
_QUICK_TIMEOUT_S = 90.0  # --quick: small inputs; a job that needs longer is reported as failed


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
    s = target.settings
    return {
        **os.environ,
        "RAY_ADDRESS": _ray_address(target),
        "AURORA_REDIS_URL": s.redis_url,
        "AURORA_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "AURORA_DATA_DIR": str(s.data_dir),
        "AURORA_WAREHOUSE_URI": s.warehouse_uri,
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


_BACKFILLED: list[str] = []  # tenants the backfill scenario filled (retrain trains on them)


def run_backfill(target: Target, size: Size) -> ScenarioResult:
    missing = available("aurora_ray.backfill", "jobs.backfill")
    if missing:
        return ScenarioResult("backfill", "skipped", reason=f"not available ({missing} missing)")
    tenant, client = registered_tenant(target, "bench-backfill")
    client.close()
    n = size.backfill_events
    target.progress(f"backfill: writing {n} events")
    with tempfile.TemporaryDirectory(prefix="aurora-bench-") as tmp:
        path = Path(tmp) / "events.ndjson"
        with open(path, "wb") as out:
            out.write(b"\n".join(snapshot_lines(tenant.tenant_id, range(20_000), on_hand=10**6)))
            written = 20_000
            chunk = 200_000
            while written < n:
                count = min(chunk, n - written)
                lines = order_lines(tenant.tenant_id, count, skus=20_000, seed=written)
                out.write(b"\n" + b"\n".join(lines))
                written += count
        target.progress(f"backfill: running jobs.backfill on {n} events")
        code, seconds, tail = _run_job(
            target,
            [
                "jobs.backfill",
                "--tenant",
                tenant.tenant_id,
                "--source",
                str(path),
                "--backfill-id",
                f"bench-{uuid.uuid4().hex[:8]}",
            ],
            timeout_s=_QUICK_TIMEOUT_S if size.quick else _TIMEOUT_S,
        )
    if code != 0:
        return ScenarioResult("backfill", "failed", reason=f"exit {code}: {tail}")
    _BACKFILLED.append(tenant.tenant_id)
    row = Row(
        metric=f"backfill {n} events (python -m jobs.backfill)",
        unit="s",
        aurora=seconds,
        target="<= 120 (5 M events)",
        ok=seconds <= 120 if n >= 5_000_000 else None,
        note=f"{events_per_s(n, seconds):.0f} events/s",
    )
    return ScenarioResult("backfill", "ok", rows=[row], details={"events": n, "seconds": seconds})


def run_export(target: Target, size: Size) -> ScenarioResult:
    return ScenarioResult("export", "skipped", reason="not available (CSV export is a later issue)")


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
    target.progress(f"retrain: jobs.retrain on the backfilled tenant ({size.retrain_rows} wanted)")
    code, seconds, tail = _run_job(
        target,
        ["jobs.retrain", "--tenant", tenant_id],
        timeout_s=_QUICK_TIMEOUT_S if size.quick else _TIMEOUT_S,
    )
    if code != 0:
        return ScenarioResult("retrain", "failed", reason=f"exit {code}: {tail}")
    row = Row(
        metric="retrain (python -m jobs.retrain)",
        unit="s",
        aurora=seconds,
        note="on the fact_prediction rows the backfilled tenant's shards wrote",
    )
    return ScenarioResult("retrain", "ok", rows=[row], details={"seconds": seconds})
