"""`aurora demo`: a live demo on the embedded stack.

Starts the stack unless one is running, creates a demo tenant, streams the simulated mix of
:mod:`aurora_ray.demo_stream` through the HTTP API at ``rate`` events/s for ``duration`` seconds
with a progress bar and a live table of the newest alerts, then prints where to look. A stack the
demo started is stopped at the end, also on Ctrl-C, so nothing is left running.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aurora_ray.client import AuroraClient
from aurora_ray.demo_stream import DemoSku, DemoStream, demo_catalogue, to_ndjson
from aurora_ray.settings import Settings
from aurora_ray.stack import provision_tenant, running_stack

__all__ = ["run_demo"]

_TICK_S = 0.25
_BATCH = 1000


def _short(stamp: Any) -> str:
    """``2026-12-05T10:54:12.000Z`` as ``12-05 10:54`` (UTC), to fit a terminal's width."""
    return stamp[5:16].replace("T", " ") if isinstance(stamp, str) else "–"


def _alerts_table(alerts: list[dict[str, Any]], shown: int) -> Table:
    table = Table(title=f"newest alerts ({shown} so far; times UTC)", expand=False)
    columns = ("sku", "warehouse", "probability", "predicted_oos_at", "order_by", "qty", "as_of")
    for column in columns:
        table.add_column(column)
    for alert in alerts:
        table.add_row(
            alert["sku"],
            alert["warehouse"],
            f"{alert['probability']:.3f}",
            _short(alert["predicted_oos_at"]),
            _short(alert.get("order_by")),  # the order the alert calls for (absent on old alerts)
            str(alert.get("recommended_qty", "–")),
            _short(alert["as_of"]),
        )
    return table


def _curl_lines(api_url: str, client_id: str, secret: str) -> list[str]:
    return [
        f"TOKEN=$(curl -s -u {client_id}:{secret} -d grant_type=client_credentials "
        f"{api_url}/v1/oauth/token | python3 -c "
        "'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f'curl -s -H "Authorization: Bearer $TOKEN" "{api_url}/v1/stock/alerts?limit=5"',
        f'curl -s -H "Authorization: Bearer $TOKEN" "{api_url}/v1/stock/recommendations?limit=5"',
    ]


def run_demo(
    settings: Settings,
    *,
    rate: int,
    duration: float,
    n_skus: int,
    port: int | None,
    console: Console,
    keep: bool = False,
) -> int:
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with running_stack(
            settings, http_port=port, keep=keep, progress=lambda msg: console.print(msg)
        ) as info:
            tenant, client = provision_tenant(settings, info, name=f"demo-{int(time.time())}")
            console.print(f"demo tenant {tenant.tenant_id}   API docs {info.api_url}/docs")
            sent = _stream(
                client,
                tenant.tenant_id,
                rate=rate,
                duration=duration,
                n_skus=n_skus,
                console=console,
            )
            alerts = client.alerts(limit=1000)
            console.print()
            console.print(
                f"[green]streamed {sent} events; {len(alerts)} alerts raised[/] "
                f"(draining SKUs run out in event time during the demo)"
            )
            console.print(f"API docs:       {info.api_url}/docs")
            console.print(f"Ray dashboard:  {info.dashboard_url}")
            console.print("Read the alerts (while the stack runs):")
            for line in _curl_lines(info.api_url, tenant.client_id, tenant.client_secret):
                console.print(f"  {line}", soft_wrap=True, highlight=False, markup=False)
            client.close()
        return 0
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _demo_start(catalogue: list[DemoSku], total: int) -> datetime:
    """Where the demo's event time starts: far enough back that ``total`` events never reach
    past the server's clock (the API refuses event times more than the allowed skew ahead),
    and at least five days back. The stream emits about 1.3 events per order of the
    catalogue's order rate (restocks and cancellations besides the orders): 1.5 is the margin."""
    orders_per_h = max(1.0, sum(s.order_rate_per_h for s in catalogue))
    span = timedelta(hours=1.5 * total / orders_per_h + 6)
    return datetime.now(UTC).replace(microsecond=0) - max(timedelta(days=5), span)


def _stream(
    client: AuroraClient,
    tenant_id: str,
    *,
    rate: int,
    duration: float,
    n_skus: int,
    console: Console,
) -> int:
    catalogue = demo_catalogue(n_skus)
    total = int(rate * duration)
    stream = DemoStream(catalogue, tenant_id, start=_demo_start(catalogue, total))
    client.post_events(to_ndjson(stream.initial_events()))
    progress = Progress(
        TextColumn("[bold]streaming"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} events"),
        TextColumn("event time {task.fields[clock]}"),
        TimeElapsedColumn(),
    )
    task = progress.add_task("stream", total=total, clock="")
    latest: list[dict[str, Any]] = []
    seen = {"count": 0}
    stop = threading.Event()

    def poll_alerts() -> None:
        while not stop.wait(1.0):
            with contextlib.suppress(Exception):
                page = client.alerts(limit=10)
                latest[:] = page
                seen["count"] = len(client.alerts(limit=1000))

    poller = threading.Thread(target=poll_alerts, daemon=True)
    poller.start()
    sent = 0
    began = time.monotonic()
    try:
        with Live(
            Group(progress, _alerts_table(latest, 0)), console=console, refresh_per_second=4
        ) as live:
            while sent < total and time.monotonic() - began < duration + 30:
                due = min(total, int((time.monotonic() - began) * rate))
                while sent < due:
                    events = stream.next_events(min(_BATCH, due - sent))
                    sent += client.post_events(to_ndjson(events))
                progress.update(task, completed=sent, clock=stream.clock.strftime("%a %d %b %H:%M"))
                live.update(Group(progress, _alerts_table(latest, seen["count"])))
                time.sleep(_TICK_S)
            time.sleep(2.0)  # let the shards score the tail
            latest[:] = client.alerts(limit=10)
            live.update(Group(progress, _alerts_table(latest, len(client.alerts(limit=1000)))))
    finally:
        stop.set()
        poller.join(timeout=5)
    return sent
