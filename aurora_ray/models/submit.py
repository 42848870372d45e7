"""Submitting the retrain job through Ray's job submission API (see aurora_ray.ray_jobs)."""

from __future__ import annotations

import uuid

from aurora_ray.ray_jobs import submit_module
from aurora_ray.settings import Settings

__all__ = ["submit_retrain"]


def submit_retrain(
    settings: Settings,
    *,
    tenant_id: str,
    dashboard_url: str | None = None,
    extra_args: list[str] | None = None,
) -> str:
    """Submit ``python -m jobs.retrain --tenant ID``; returns the Ray job id."""
    return submit_module(
        settings,
        "jobs.retrain",
        ["--tenant", tenant_id, *(extra_args or [])],
        job_id=f"aurora-retrain-{uuid.uuid4().hex[:10]}",
        metadata={"aurora": "retrain", "tenant_id": tenant_id},
        dashboard_url=dashboard_url,
    )
