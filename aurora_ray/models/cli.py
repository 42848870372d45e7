"""`aurora retrain` and `aurora models …` (mounted by aurora_ray/cli.py)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

__all__ = ["models_app", "retrain_command"]

models_app = typer.Typer(
    help="Model versions: list, promote, rollback, drift.", no_args_is_help=True
)
TenantOpt = Annotated[str, typer.Option("--tenant", help="tenant id")]


def _settings() -> Any:
    from aurora_ray.settings import load_settings
    from aurora_ray.stack import resolve_settings

    try:
        return resolve_settings(load_settings())
    except ValueError as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2) from exc


def _registry(settings: Any) -> Any:
    from aurora_ray.adapters.redis_store import RedisStore
    from aurora_ray.models.registry import ModelRegistry

    if not settings.redis_url:
        typer.echo("no Redis: start the stack (aurora up) or set AURORA_REDIS_URL", err=True)
        raise typer.Exit(2)
    return ModelRegistry(RedisStore(settings.redis_url), baseline_version=settings.model_version)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)


@models_app.command("list")
def list_versions(
    tenant: TenantOpt,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON array of versions")] = False,
) -> None:
    """Versions of the tenant's model, newest first, the analytic baseline last."""
    rows = _registry(_settings()).listing(tenant)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'version':<30} {'active':<6} {'status':<9} {'brier':>7} {'recall@0.7':>10}")
    for row in rows:
        m = row["metrics"] or {}
        typer.echo(
            f"{row['version']:<30} {'*' if row['active'] else '':<6} {row['status']:<9} "
            f"{_fmt(m.get('brier')):>7} {_fmt(m.get('recall@0.7')):>10}"
        )


@models_app.command()
def promote(
    version: Annotated[str, typer.Argument(help="version to activate (no comparison)")],
    tenant: TenantOpt,
) -> None:
    """Force VERSION active; shards swap to it before their next micro-batch."""
    from aurora_ray.models.registry import RegistryError

    try:
        replaced = _registry(_settings()).promote(tenant, version)
    except RegistryError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"active: {version} (was {replaced})")


@models_app.command()
def rollback(tenant: TenantOpt) -> None:
    """Go back to the version that was active before the current one."""
    from aurora_ray.models.registry import RegistryError

    try:
        version = _registry(_settings()).rollback(tenant)
    except RegistryError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"active: {version}")


@models_app.command()
def drift(tenant: TenantOpt) -> None:
    """PSI of recent features against training and calibration of recent outcomes (stored)."""
    from aurora_ray.models.retrain import compute_drift

    report = compute_drift(_settings(), tenant_id=tenant)
    if report is None:
        typer.echo("the analytic baseline is active (or no predictions yet): nothing to compare")
        return
    typer.echo(json.dumps(report, indent=2))


def retrain_command(
    tenant: TenantOpt,
    wait: Annotated[bool, typer.Option("--wait", help="follow the job; exit 1 on failure")] = False,
    no_promote: Annotated[bool, typer.Option("--no-promote", help="register only")] = False,
    dashboard: Annotated[
        str | None, typer.Option(help="Ray dashboard URL (default: the running stack's)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait with --wait")] = 3600.0,
) -> None:
    """Retrain the tenant's model as a Ray job (Ray Data + XGBoost); prints the job id."""
    from aurora_ray.models.submit import submit_retrain
    from aurora_ray.ray_jobs import follow_job, job_client
    from aurora_ray.stack import read_stack

    settings = _settings()
    info = read_stack(settings)
    url = dashboard or (info.dashboard_url if info else None)
    try:
        job_id = submit_retrain(
            settings,
            tenant_id=tenant,
            dashboard_url=url,
            extra_args=["--no-promote"] if no_promote else None,
        )
    except Exception as exc:
        typer.echo(f"could not submit the retrain job: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(job_id)
    if not wait:
        return
    status = follow_job(job_client(settings, url), job_id, timeout_s=timeout, on_log=typer.echo)
    typer.echo(f"job {job_id}: {status}")
    if status != "SUCCEEDED":
        raise typer.Exit(1)
