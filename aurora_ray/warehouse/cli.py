"""`aurora warehouse …`: warehouse maintenance commands (mounted by aurora_ray/cli.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

__all__ = ["warehouse_app"]

warehouse_app = typer.Typer(help="The Parquet warehouse.", no_args_is_help=True)


@warehouse_app.command()
def retention(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list, remove nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Drop day partitions past retention: fact_order 90 days, fact_prediction 2 years
    (AURORA_RETENTION_RAW_DAYS / AURORA_RETENTION_MODELLED_DAYS)."""
    from aurora_ray.settings import load_settings
    from aurora_ray.warehouse.retention import describe, run_retention

    try:
        settings = load_settings()
    except ValueError as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2) from exc
    report = run_retention(settings, dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    for line in describe(report):
        typer.echo(line)
