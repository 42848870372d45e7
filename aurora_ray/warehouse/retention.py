"""Retention with the configured periods: shared by `aurora warehouse retention` and the Ray job."""

from __future__ import annotations

from datetime import datetime

from aurora_ray.settings import Settings
from aurora_ray.warehouse.store import RetentionReport, Warehouse

__all__ = ["describe", "run_retention"]


def run_retention(
    settings: Settings, *, dry_run: bool = False, now: datetime | None = None
) -> RetentionReport:
    """Drop day partitions past ``retention_raw_days`` (fact_order) and
    ``retention_modelled_days`` (fact_prediction) under ``warehouse_uri``."""
    return Warehouse.from_settings(settings).retention(
        now,
        raw_days=settings.retention_raw_days,
        modelled_days=settings.retention_modelled_days,
        dry_run=dry_run,
    )


def describe(report: RetentionReport) -> list[str]:
    """Human-readable lines: one per removed partition, then a summary."""
    verb = "would remove" if report.dry_run else "removed"
    lines = [
        f"{verb} {r.table} tenant {r.tenant_id} day {r.day.isoformat()} "
        f"({r.files} files, {r.bytes} bytes)"
        for r in report.removed
    ]
    cutoffs = ", ".join(f"{t} before {d.isoformat()}" for t, d in report.cutoffs.items())
    total = report.as_dict()
    lines.append(
        f"{verb} {total['partitions']} partitions, {total['files']} files, "
        f"{total['bytes']} bytes ({cutoffs})"
    )
    return lines
