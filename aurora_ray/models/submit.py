"""Submitting the retrain job through Ray's job submission API and following it."""

from __future__ import annotations

import shlex
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aurora_ray.settings import Settings

__all__ = ["follow_job", "job_env", "submit_retrain"]

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def job_env(settings: Settings) -> dict[str, str]:
    """The settings the job process needs (it builds its own Settings from the environment)."""
    warehouse = settings.warehouse_uri
    if "://" not in warehouse:
        warehouse = str(Path(warehouse).resolve())
    return {
        "AURORA_REDIS_URL": settings.redis_url,
        "AURORA_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "AURORA_WAREHOUSE_URI": warehouse,
        "AURORA_DATA_DIR": str(settings.data_dir.resolve()),
        "AURORA_HORIZON_HOURS": repr(settings.horizon_hours),
        "AURORA_DEFAULT_THRESHOLD": repr(settings.default_threshold),
        "AURORA_MODEL_VERSION": settings.model_version,
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def submit_retrain(
    settings: Settings,
    *,
    tenant_id: str,
    dashboard_url: str | None = None,
    extra_args: list[str] | None = None,
) -> str:
    """Submit ``python -m jobs.retrain --tenant ID``; returns the Ray job id."""
    from aurora_ray.backfill_job import job_client

    argv = [sys.executable, "-m", "jobs.retrain", "--tenant", tenant_id, *(extra_args or [])]
    entrypoint = " ".join(shlex.quote(part) for part in argv)
    job_id = f"aurora-retrain-{uuid.uuid4().hex[:10]}"
    job_client(settings, dashboard_url).submit_job(
        entrypoint=entrypoint,
        submission_id=job_id,
        runtime_env={"env_vars": job_env(settings)},
        metadata={"aurora": "retrain", "tenant_id": tenant_id},
    )
    return job_id


def follow_job(
    client: Any,
    job_id: str,
    *,
    timeout_s: float = 3600.0,
    interval_s: float = 1.0,
    on_log: Callable[[str], None] = lambda _line: None,
) -> str:
    """Poll the job until it ends (or ``timeout_s``), handing new log lines to ``on_log``;
    returns the last status name (``SUCCEEDED``, ``FAILED``, ``STOPPED`` or a running one)."""
    deadline = time.monotonic() + timeout_s
    shown = 0
    status = "PENDING"
    while True:
        status = str(client.get_job_status(job_id)).rsplit(".", 1)[-1]
        logs = str(client.get_job_logs(job_id))
        for line in logs[shown:].splitlines():
            on_log(line)
        shown = len(logs)
        if status in TERMINAL or time.monotonic() >= deadline:
            return status
        time.sleep(interval_s)
