"""The `aurora` command line: run the stack, manage tenants, send events, run the demo."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from aurora_ray import __version__
from aurora_ray.models.cli import models_app, retrain_command
from aurora_ray.settings import Settings, load_settings
from aurora_ray.warehouse.cli import warehouse_app

app = typer.Typer(help="Aurora: real-time stock-out prediction on Ray.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants and their API clients.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
operators_app = typer.Typer(help="Operator API clients (the whole status).", no_args_is_help=True)
app.add_typer(operators_app, name="operators")
app.add_typer(warehouse_app, name="warehouse")
app.add_typer(models_app, name="models")
app.command("retrain")(retrain_command)
console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    from aurora_ray.stack import resolve_settings

    try:
        return resolve_settings(load_settings())
    except ValueError as exc:
        err.print(f"[red]invalid settings:[/] {exc}")
        raise typer.Exit(2) from exc


def _api_url(settings: Settings, url: str | None) -> str:
    from aurora_ray.stack import read_stack

    if url:
        return url
    info = read_stack(settings)
    return info.api_url if info else f"http://127.0.0.1:{settings.http_port}"


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
def up(port: Annotated[int | None, typer.Option(help="HTTP port (default 8000)")] = None) -> None:
    """Start Ray, Valkey and the broker (unless configured), the API and the shards."""
    from aurora_ray.stack import up as stack_up

    settings = load_settings()
    with console.status("starting the stack (Ray takes ~10 s)…"):
        info = stack_up(settings, http_port=port)
    console.print(
        f"[green]Aurora is up[/]  API {info.api_url}/docs   Ray dashboard {info.dashboard_url}"
    )
    console.print(
        f"Redis {info.redis_url}   Kafka {info.kafka_bootstrap}   "
        f"embedded: {', '.join(info.embedded) or 'none'}"
    )


@app.command()
def down() -> None:
    """Stop what `aurora up` started (shards write a final checkpoint first)."""
    from aurora_ray.stack import down as stack_down

    with console.status("stopping…"):
        stopped = stack_down(load_settings())
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def status(
    url: Annotated[str | None, typer.Option(help="API base URL (for Ray's health)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON body")] = False,
) -> None:
    """Health of Ray, Redis, Kafka and every tenant's shards (exit 1 when degraded).

    Reads Redis and Kafka directly with the stack's settings; Ray's health comes from the API's
    public `GET /status`. Over HTTP, an operator token gets the same body from
    `GET /v1/status/operator`."""
    from aurora_ray.adapters.kafka import TopicAdmin
    from aurora_ray.adapters.redis_store import RedisStore
    from aurora_ray.status import read_operator

    settings = _settings()
    _need_redis_and_kafka(settings)
    base = _api_url(settings, url)
    try:
        public = httpx.get(f"{base}/status", timeout=settings.health_timeout_s + 5).json()
        ray = public.get("components", {}).get("ray", {})
        ray_health = {"status": ray.get("status", "down"), "error": ray.get("reason", "")}
    except (httpx.HTTPError, ValueError) as exc:
        err.print(f"[red]the API at {base} does not answer:[/] {exc}")
        ray_health = {"status": "down", "error": f"the API at {base} does not answer: {exc}"}
    body = read_operator(
        settings,
        RedisStore(settings.redis_url),
        TopicAdmin(settings.kafka_bootstrap),
        lambda: ray_health,
    )
    if as_json:
        print(json.dumps(body, indent=2))
    else:
        _print_status(body)
    raise typer.Exit(0 if body["status"] == "ok" else 1)


def _print_status(body: dict[str, Any]) -> None:
    table = Table(title=f"Aurora {body.get('version')} — {body.get('status')}")
    table.add_column("component")
    table.add_column("status")
    table.add_column("detail")
    for name, comp in body["components"].items():
        detail = {k: v for k, v in comp.items() if k != "status"}
        table.add_row(name, comp["status"], json.dumps(detail) if detail else "")
    for tenant_id, view in body["tenants"].items():
        for shard in view["shards"]:
            age = shard["heartbeat_age_s"]
            table.add_row(
                shard["name"],
                shard["status"],
                f"lag {shard['lag']}, events {shard['events']}, "
                + (f"heartbeat {age} s ago" if age is not None else "no heartbeat yet"),
            )
        if view["topic"]["status"] != "ok":
            table.add_row(f"tenant:{tenant_id} topic", "missing", "")
        if view["warehouse"]["status"] != "ok":
            detail = {k: v for k, v in view["warehouse"].items() if k != "status"}
            status = view["warehouse"]["status"]  # failing (writes fail) or delayed
            table.add_row(f"tenant:{tenant_id} warehouse", status, json.dumps(detail))
    console.print(table)


@operators_app.command("create")
def operators_create(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Create an operator API client: its tokens read `GET /v1/status/operator` (every tenant's
    health) and nothing of any tenant's data. The secret is shown once."""
    from aurora_ray.adapters.redis_store import RedisStore
    from aurora_ray.tenants import create_operator_client

    settings = _settings()
    _need_redis(settings)
    try:
        client_id, client_secret = create_operator_client(RedisStore(settings.redis_url))
    except Exception as exc:  # Redis unreachable: one line, not a traceback
        err.print(f"[red]could not create the operator client:[/] {exc}")
        raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps({"client_id": client_id, "client_secret": client_secret}))
        return
    console.print(f"client_id      {client_id}")
    console.print(f"client_secret  {client_secret}")
    console.print("[yellow]The secret is shown once; it is stored hashed.[/]")


@tenants_app.command("calendar")
def tenants_calendar(
    tenant: Annotated[str, typer.Option("--tenant", help="tenant id")],
    fit: Annotated[bool, typer.Option("--fit", help="fit on the warehouse's orders")] = False,
    flat: Annotated[bool, typer.Option("--flat", help="remove it: a flat week")] = False,
    days: Annotated[int, typer.Option(help="days of orders to fit on", min=7)] = 91,
    as_json: Annotated[bool, typer.Option("--json", help="print the 168 shares as JSON")] = False,
) -> None:
    """Show, fit (--fit) or remove (--flat) the tenant's demand calendar: the share of its
    demand in each hour of the week (UTC), which scales every horizon's expected demand."""
    from aurora_ray.adapters.redis_store import RedisStore
    from aurora_ray.tenants import fit_demand_calendar

    if fit and flat:
        err.print("[red]--fit and --flat exclude each other[/]")
        raise typer.Exit(2)
    settings = _settings()
    _need_redis(settings)
    store = RedisStore(settings.redis_url)
    if fit:
        try:
            profile, rows = fit_demand_calendar(settings, store, tenant, days=days)
        except (LookupError, FileNotFoundError) as exc:
            err.print(f"[red]could not fit the calendar:[/] {exc}")
            raise typer.Exit(1) from exc
        err.print(f"fitted on {rows} order lines of the last {days} days")
    elif flat:
        store.put_demand_calendar(tenant, None)
        profile = None
    else:
        profile = store.demand_calendar(tenant)
    if as_json:
        print(json.dumps(list(profile) if profile else None))
        return
    if profile is None:
        print("flat week (no calendar)")
        return
    days_of_week = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    for d, name in enumerate(days_of_week):
        share = sum(profile[d * 24 : (d + 1) * 24])
        print(f"{name} {100 * share:5.1f} %  " + "#" * round(50 * share))


@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Option(help="display name")],
    region: Annotated[str, typer.Option(help="eu-central-1 | us-east-1")] = "eu-central-1",
    tier: Annotated[str, typer.Option(help="standard | premium")] = "standard",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Create a tenant, its topic and an API client; the secret is shown once."""
    from aurora_ray.adapters.kafka import TopicAdmin
    from aurora_ray.adapters.redis_store import RedisStore
    from aurora_ray.tenants import create_tenant

    if region not in ("eu-central-1", "us-east-1"):
        err.print(f"[red]--region must be eu-central-1 or us-east-1, not {region!r}[/]")
        raise typer.Exit(2)
    if tier not in ("standard", "premium"):
        err.print(f"[red]--tier must be standard or premium, not {tier!r}[/]")
        raise typer.Exit(2)
    if not name.strip():
        err.print("[red]--name must not be empty[/]")
        raise typer.Exit(2)
    settings = _settings()
    _need_redis_and_kafka(settings)
    try:
        tenant = create_tenant(
            settings,
            RedisStore(settings.redis_url),
            TopicAdmin(settings.kafka_bootstrap),
            name=name,
            region=region,  # type: ignore[arg-type]
            tier=tier,  # type: ignore[arg-type]
        )
    except Exception as exc:  # Redis or the broker unreachable: one line, not a traceback
        err.print(f"[red]could not create the tenant:[/] {exc}")
        raise typer.Exit(1) from exc
    record = {
        "tenant_id": tenant.tenant_id,
        "client_id": tenant.client_id,
        "client_secret": tenant.client_secret,
    }
    if as_json:
        print(json.dumps(record))
        return
    console.print(f"tenant_id      {tenant.tenant_id}")
    console.print(f"client_id      {tenant.client_id}")
    console.print(f"client_secret  {tenant.client_secret}")
    console.print("[yellow]The secret is shown once; it is stored hashed.[/]")


def _show_limits(settings: Settings, tenant: str, limits: Any, as_json: bool) -> None:
    buckets = limits.buckets(settings)
    if as_json:
        record = {
            "tenant_id": tenant,
            "requests_per_s": limits.requests_per_s,
            "events_per_s": limits.events_per_s,
            "events_peak_per_s": limits.events_peak_per_s,
            "overridden": sorted(limits.overridden),
            "enabled": settings.rate_limit_enabled,
            "buckets": [
                {"name": b.name, "rate_per_s": b.rate, "capacity": b.capacity} for b in buckets
            ],
        }
        print(json.dumps(record))
        return
    table = Table("bucket", "rate / s", "holds", "set by")
    sources = ("requests_per_s", "events_peak_per_s", "events_per_s")
    for bucket, source in zip(buckets, sources, strict=True):
        by = "tenant" if source in limits.overridden else "default"
        table.add_row(bucket.name, f"{bucket.rate:,.6g}", f"{bucket.capacity:,.0f}", by)
    console.print(table)
    if not settings.rate_limit_enabled:
        console.print("[yellow]the rate limiter is off (AURORA_RATE_LIMIT_ENABLED=false)[/]")


def _need_redis(settings: Settings) -> None:
    """Exit 1, saying so, when no Redis is configured (and no embedded stack runs)."""
    if not settings.redis_url:
        err.print("[red]no Redis configured and no embedded stack running: run `aurora up`[/]")
        raise typer.Exit(1)


def _need_redis_and_kafka(settings: Settings) -> None:
    if not settings.redis_url or not settings.kafka_bootstrap:
        err.print(
            "[red]no Redis/Kafka configured and no embedded stack running: run `aurora up`[/]"
        )
        raise typer.Exit(1)


def _redis_store(settings: Settings) -> Any:
    from aurora_ray.adapters.redis_store import RedisStore

    _need_redis(settings)
    return RedisStore(settings.redis_url)


@tenants_app.command("limits")
def tenants_limits(
    tenant: Annotated[str, typer.Argument(help="tenant id")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Show the tenant's rate limits: each token bucket's rate and capacity, and whether the
    tenant's own override or the default sets it."""
    from aurora_ray.tenants import tenant_limits

    settings = _settings()
    try:
        limits = tenant_limits(settings, _redis_store(settings), tenant)
    except LookupError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    _show_limits(settings, tenant, limits, as_json)


@tenants_app.command("set-limits")
def tenants_set_limits(
    tenant: Annotated[str, typer.Argument(help="tenant id")],
    requests_per_s: Annotated[
        float | None, typer.Option("--requests-per-s", help="requests a second")
    ] = None,
    events_per_s: Annotated[
        float | None, typer.Option("--events-per-s", help="events a second, sustained")
    ] = None,
    events_peak_per_s: Annotated[
        float | None,
        typer.Option(
            "--events-peak-per-s",
            help="events a second in a burst (default: the sustained rate times the default "
            "peak/sustained ratio)",
        ),
    ] = None,
    reset: Annotated[bool, typer.Option("--reset", help="back to the defaults first")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Override the tenant's rate limits; every API replica applies them from its next request."""
    from aurora_ray.tenants import set_tenant_limits

    settings = _settings()
    try:
        limits = set_tenant_limits(
            settings,
            _redis_store(settings),
            tenant,
            requests_per_s=requests_per_s,
            events_per_s=events_per_s,
            events_peak_per_s=events_peak_per_s,
            reset=reset,
        )
    except ValueError as exc:
        err.print(f"[red]invalid limits:[/] {exc}")
        raise typer.Exit(2) from exc
    except LookupError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    _show_limits(settings, tenant, limits, as_json)


def _credentials(client_id: str | None, client_secret: str | None) -> tuple[str, str]:
    cid = client_id or os.environ.get("AURORA_CLIENT_ID")
    secret = client_secret or os.environ.get("AURORA_CLIENT_SECRET")
    if not cid or not secret:
        err.print(
            "[red]give --client-id/--client-secret or AURORA_CLIENT_ID/AURORA_CLIENT_SECRET[/]"
        )
        raise typer.Exit(2)
    return cid, secret


@app.command()
def ingest(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="NDJSON (or .ndjson.gz)")
    ],
    client_id: Annotated[str | None, typer.Option(help="or AURORA_CLIENT_ID")] = None,
    client_secret: Annotated[str | None, typer.Option(help="or AURORA_CLIENT_SECRET")] = None,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="lines per request")] = 1000,
    url: Annotated[str | None, typer.Option(help="API base URL")] = None,
) -> None:
    """Send an NDJSON file through the API in batches, with progress."""
    from aurora_ray.client import ApiError, AuroraClient, iter_ndjson_batches

    settings = _settings()
    cid, secret = _credentials(client_id, client_secret)
    client = AuroraClient(_api_url(settings, url), client_id=cid, client_secret=secret)
    total_bytes = file.stat().st_size
    accepted = 0
    with Progress(
        TextColumn("[bold]ingest"),
        BarColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[accepted]} events"),
        console=console,
    ) as progress:
        task = progress.add_task("ingest", total=total_bytes, accepted=0)
        for body, size, first_line in iter_ndjson_batches(file, batch):
            try:
                accepted += client.post_events(body)
            except ApiError as exc:
                progress.stop()
                _report_rejection(exc, first_line, accepted)
                raise typer.Exit(1) from exc
            except httpx.HTTPError as exc:
                progress.stop()
                err.print(
                    f"[red]the API at {client.base_url} does not answer:[/] {exc}; "
                    f"{accepted} events before line {first_line} were accepted"
                )
                raise typer.Exit(1) from exc
            progress.update(task, advance=size, accepted=accepted)
    console.print(f"[green]{accepted} events accepted[/]")


def _report_rejection(exc: Any, first_line: int, accepted: int) -> None:
    err.print(
        f"[red]request refused with HTTP {exc.status}[/]; {accepted} events before it were accepted"
    )
    if isinstance(exc.body, list):
        for item in exc.body:
            line = first_line + int(item.get("line", 1)) - 1
            err.print(f"  line {line}: {item.get('field')}: {item.get('message')}")
    else:
        err.print(f"  {exc.body}")


@app.command()
def demo(
    rate: Annotated[int, typer.Option(min=100, help="events per second")] = 2000,
    duration: Annotated[float, typer.Option(min=5, help="seconds of streaming")] = 60,
    skus: Annotated[int, typer.Option(min=10, help="SKUs in the catalogue")] = 600,
    port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
    keep: Annotated[bool, typer.Option(help="leave a stack the demo started running")] = False,
) -> None:
    """Start the embedded stack if needed and stream a realistic mix; show alerts live."""
    from aurora_ray.demo import run_demo

    code = run_demo(
        load_settings(),
        rate=rate,
        duration=duration,
        n_skus=skus,
        port=port,
        console=console,
        keep=keep,
    )
    raise typer.Exit(code)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option(help="every scenario at a small size (< 1 min)")] = False,
    scenario: Annotated[
        list[str] | None, typer.Option(help="run only this scenario (repeat); default: all")
    ] = None,
    out: Annotated[Path, typer.Option(help="folder for <date>.json and .md")] = Path(
        "bench/results"
    ),
    haproxy: Annotated[bool, typer.Option(help="Serve's HAProxy ingress")] = True,
    port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
    e2e_rate: Annotated[
        int | None, typer.Option(min=1, help="events/s offered in the e2e scenario")
    ] = None,
) -> None:
    """Benchmark Aurora beside the same-run raw limits of this machine (code in bench/)."""
    import importlib

    runner = importlib.import_module("bench.runner")  # a shell package: no static import
    unknown = [s for s in scenario or [] if s not in runner.SCENARIOS]
    if unknown:
        known = ", ".join(runner.SCENARIOS)
        err.print(f"[red]unknown scenario(s) {', '.join(unknown)}; known: {known}[/]")
        raise typer.Exit(2)
    _results, json_path, md_path = runner.bench_cli(
        quick=quick,
        scenarios=scenario,
        out_dir=out,
        haproxy=haproxy,
        port=port,
        progress=lambda msg: console.print(msg, style="dim", markup=False, highlight=False),
        e2e_rate=e2e_rate,
    )
    console.print(md_path.read_text(), markup=False, highlight=False, soft_wrap=True)
    console.print(f"written: {json_path} and {md_path}")


def _date(text: str, option: str = "--test-from") -> Any:
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        err.print(f"[red]{option} must be a date like 2011-09-01, not {text!r}[/]")
        raise typer.Exit(2) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="CSV(.gz) or Parquet")],
    out: Annotated[Path, typer.Option(help="folder for report.md, metrics.json and plots")],
    method: Annotated[
        list[str] | None, typer.Option(help="method to compare (repeat); default: all")
    ] = None,
    test_from: Annotated[str, typer.Option(help="first day of the test split")] = "2011-09-01",
    closed_loop: Annotated[bool, typer.Option(help="also run the closed loop")] = True,
    through_pipeline: Annotated[
        bool, typer.Option(help="also send the stream through the running (or embedded) stack")
    ] = False,
    purchase_orders: Annotated[
        bool, typer.Option(help="the simulated shop sends its purchase orders (stock.ordered)")
    ] = True,
    training_simulations: Annotated[
        int, typer.Option(min=1, help="simulations of the training period XGBoost learns from")
    ] = 8,
    end: Annotated[
        str | None, typer.Option(help="end of the test split (default: the day after the data)")
    ] = None,
    replenishment: Annotated[
        bool, typer.Option(help="also let each replenishment method run the shop from test_from")
    ] = True,
    frontier: Annotated[
        bool, typer.Option(help="sweep the service level of the classical policy and Aurora")
    ] = True,
    service_level: Annotated[
        float | None,
        typer.Option(
            min=0.5, max=0.9999, help="replenishment target (default: Aurora's live default)"
        ),
    ] = None,
) -> None:
    """Compare stock-out predictors on real demand with a simulated inventory (offline)."""
    import time

    from aurora_ray.evaluation.methods import METHODS
    from aurora_ray.evaluation.report import headline_table, replenishment_table
    from aurora_ray.evaluation.runner import EvaluationConfig
    from aurora_ray.evaluation.runner import evaluate as run_evaluation

    methods = tuple(method or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        err.print(f"[red]unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}[/]")
        raise typer.Exit(2)
    began = time.monotonic()
    if through_pipeline and "aurora-analytic" not in methods:
        err.print("[red]--through-pipeline needs the aurora-analytic method[/]")
        raise typer.Exit(2)
    config = EvaluationConfig(
        methods=methods,
        test_from=_date(test_from),
        closed_loop=closed_loop,
        through_pipeline=through_pipeline,
        purchase_orders=purchase_orders,
        training_simulations=training_simulations,
        end=_date(end, "--end") if end else None,
        replenishment=replenishment,
        frontier=frontier,
        service_level=service_level,
    )
    results = run_evaluation(
        data,
        out,
        config,
        progress=lambda msg: console.print(f"[dim]{time.monotonic() - began:6.1f} s[/] {msg}"),
    )
    console.print(headline_table(results), markup=False, highlight=False)
    if "replenishment" in results:
        console.print(replenishment_table(results["replenishment"]), markup=False, highlight=False)
    check = results.get("through_pipeline")
    if check:
        console.print(
            f"through the pipeline: offline {check['offline']} alerts, live {check['live']}, "
            f"matched {check['matched']}"
        )
        if not check["agree"]:
            err.print("[red]the live system and the offline replay disagree[/]")
            raise typer.Exit(1)


@app.command()
def simulate(
    data: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="CSV(.gz) or Parquet")],
    out: Annotated[Path, typer.Option(help="NDJSON file to write (.gz compresses)")],
    tenant: Annotated[str, typer.Option(help="tenant_id written into the events")] = (
        "00000000-0000-0000-0000-000000005eed"
    ),
    test_from: Annotated[str, typer.Option(help="first day of the test split")] = "2011-09-01",
    purchase_orders: Annotated[
        bool, typer.Option(help="send the shop's purchase orders (stock.ordered)")
    ] = True,
) -> None:
    """Write the simulated event stream around real demand (for the demo, benchmarks, tests)."""
    from aurora_ray.evaluation.simulate import build_benchmark, write_ndjson

    with console.status("simulating…"):
        bench = build_benchmark(
            data, tenant_id=tenant, test_from=_date(test_from), purchase_orders=purchase_orders
        )
        written = write_ndjson(bench.result.events, out)
    stats = bench.test_stats
    console.print(
        f"{written} events for {len(bench.skus)} SKUs -> {out}; test period: "
        f"{stats.episodes} stock-out episodes, {100 * stats.rate:.2f} % of SKU-days out of stock"
    )


@app.command()
def backfill(
    source: Annotated[str, typer.Argument(help="NDJSON(.gz) or Parquet: a path or a URI")],
    tenant: Annotated[str, typer.Option(help="tenant id")],
    wait: Annotated[bool, typer.Option(help="show progress until the job ends")] = False,
    engine: Annotated[str, typer.Option(help="ray-data | local (validation in one process)")] = (
        "ray-data"
    ),
    dashboard: Annotated[str | None, typer.Option(help="Ray dashboard URL (job API)")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="--wait gives up after this many s")] = (
        3600
    ),
) -> None:
    """Submit a backfill as a Ray job; prints its id (exit 1 with --wait if it failed)."""
    import redis

    from aurora_ray.backfill_job import backfill_status, submit_backfill, wait_backfill
    from aurora_ray.stack import read_stack

    if engine not in ("ray-data", "local"):
        err.print(f"[red]--engine must be ray-data or local, not {engine!r}[/]")
        raise typer.Exit(2)
    if "://" not in source and not Path(source).is_file():
        err.print(f"[red]no such file: {source}[/]")
        raise typer.Exit(2)
    settings = _settings()
    info = read_stack(settings)
    url = dashboard or (info.dashboard_url if info else settings.ray_dashboard_url)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    try:
        backfill_id, job_id = submit_backfill(
            settings, tenant_id=tenant, source=source, redis_client=client, dashboard_url=url,
            engine=engine,  # type: ignore[arg-type]
        )  # fmt: skip
    except Exception as exc:  # Redis or the dashboard unreachable: one line, not a traceback
        err.print(f"[red]could not submit the backfill:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"backfill {backfill_id}   Ray job {job_id}")
    if not wait:
        return
    with Progress(
        TextColumn("[bold]{task.fields[state]}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        console=console,
    ) as bar:
        task = bar.add_task("backfill", total=1.0, state="submitted", counts="")

        def show(record: dict[str, Any]) -> None:
            counts = ", ".join(
                f"{name} {record.get(name, 0)}"
                for name in ("read", "rejected", "duplicates", "written", "produced")
            )
            bar.update(task, completed=record["progress"], state=record["state"], counts=counts)

        record = wait_backfill(
            lambda: backfill_status(
                settings,
                tenant_id=tenant,
                backfill_id=backfill_id,
                redis_client=client,
                dashboard_url=url,
            ),  # fmt: skip
            timeout_s=timeout,
            on_update=show,
        )
    done = record or {}
    if done.get("state") != "succeeded":
        state = done.get("state", "unknown")
        err.print(f"[red]backfill {backfill_id} {state}:[/] {done.get('error')}")
        raise typer.Exit(1)
    console.print(
        f"[green]backfill {backfill_id} succeeded[/]: accepted {done['accepted']}, rejected "
        f"{done['rejected']} (in {done['rejects']}), duplicates {done['duplicates']}, "
        f"written {done['written']}, produced {done['produced']}"
    )


@app.command("export")
def export_command(
    kind: Annotated[str, typer.Argument(help="alerts | predictions")],
    tenant: Annotated[str, typer.Option("--tenant", help="tenant id")],
    out: Annotated[Path, typer.Option("--out", help="CSV file to write")],
    since: Annotated[str | None, typer.Option(help="at or after, ISO 8601 with a zone")] = None,
    until: Annotated[str | None, typer.Option(help="before, ISO 8601 with a zone")] = None,
    sku: Annotated[str | None, typer.Option(help="one SKU")] = None,
    warehouse: Annotated[str | None, typer.Option(help="one warehouse")] = None,
    min_probability: Annotated[str | None, typer.Option("--min-probability", help="0..1")] = None,
) -> None:
    """Write the tenant's alerts (oldest first; since/until bound created_at) or live
    predictions (by SKU; since/until bound as_of) as CSV, read straight from Redis: UTF-8 with
    a BOM, a header row, times in UTC."""
    import time

    from aurora_ray.adapters.redis_store import RedisStore
    from aurora_ray.export import ExportParamError, export_alerts, export_predictions, parse_filter

    if kind not in ("alerts", "predictions"):
        err.print(f"[red]export what? alerts or predictions, not {kind!r}[/]")
        raise typer.Exit(2)
    try:
        flt = parse_filter(
            since=since, until=until, sku=sku, warehouse=warehouse, min_probability=min_probability
        )
    except ExportParamError as exc:
        err.print(f"[red]invalid --{exc.param.replace('_', '-')}:[/] {exc.message}")
        raise typer.Exit(2) from exc
    settings = _settings()
    _need_redis(settings)
    store = RedisStore(settings.redis_url)
    began = time.perf_counter()
    partial = out.with_name(out.name + ".partial")
    try:
        if store.tenant(tenant) is None:
            err.print(f"[red]no tenant {tenant!r}[/] (`aurora tenants create` makes one)")
            raise typer.Exit(1)
        with Progress(
            TextColumn(f"exporting {kind}"), BarColumn(), TextColumn("{task.completed:,.0f} rows"),
            console=err, transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task(kind, total=None)

            def show(rows: int, expected: int | None) -> None:
                bar.update(task, completed=rows, total=expected)

            make = export_alerts if kind == "alerts" else export_predictions
            export = make(store, tenant, flt, progress=show)
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as handle:
                rows = export.write_to(handle)
            partial.replace(out)
    except typer.Exit:
        raise
    except Exception as exc:  # Redis unreachable, disk full: one line, not a traceback
        partial.unlink(missing_ok=True)
        err.print(f"[red]export failed:[/] {exc}")
        raise typer.Exit(1) from exc
    seconds = time.perf_counter() - began
    console.print(f"{rows} {kind} rows written to {out} in {seconds:.2f} s")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
