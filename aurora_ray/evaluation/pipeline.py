"""`aurora evaluate --through-pipeline`: the simulated stream through the real system.

The stream goes through the HTTP API (validation, Kafka, the shard actors, Redis) of a running
stack (or the embedded one, started and stopped here), the alerts are read back through
``GET /v1/stock/alerts``, and they are compared with the offline replay's alerts at the same
threshold: the same SKUs at the same event times, or the difference is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.client import AuroraClient
from aurora_ray.demo_stream import to_ndjson
from aurora_ray.settings import Settings
from aurora_ray.stack import provision_tenant, resolve_settings, running_stack

__all__ = ["compare_alerts", "through_pipeline"]

_BATCH = 5000


def _ms(stamp: str) -> int:
    return round(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def compare_alerts(offline: set[tuple[str, int]], live: set[tuple[str, int]]) -> dict[str, Any]:
    """Alerts as ``(sku, event time in ms)``: how many agree, and a sample of each difference."""
    return {
        "offline": len(offline),
        "live": len(live),
        "matched": len(offline & live),
        "only_offline": sorted(offline - live)[:20],
        "only_live": sorted(live - offline)[:20],
        "agree": offline == live,
    }


def _processed(client: AuroraClient) -> int:
    body = client.get("/v1/status/tenant").json()  # the client's own tenant
    return sum(int(s.get("events") or 0) for s in body.get("shards", []))


def _live_alerts(client: AuroraClient) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    url: str | None = "/v1/stock/alerts?limit=1000"
    while url:
        response = client.http.get(url, headers={"Authorization": f"Bearer {client.token()}"})
        response.raise_for_status()
        out.update((a["sku"], _ms(a["as_of"])) for a in response.json())
        link = response.links.get("next")
        url = link["url"] if link else None
    return out


def through_pipeline(
    settings: Settings,
    events: Sequence[Mapping[str, Any]],
    offline: set[tuple[str, int]],
    *,
    progress: Callable[[str], None] = lambda _msg: None,
    timeout_s: float = 900.0,
    calendar: tuple[float, ...] | None = None,
) -> dict[str, Any]:
    """Send ``events`` through the API of a fresh tenant (with the offline replay's demand
    calendar in its settings); compare its alerts with ``offline``."""
    with running_stack(settings, progress=progress) as info:
        tenant, client = provision_tenant(settings, info, name=f"evaluation-{int(time.time())}")
        if calendar is not None:
            RedisStore(resolve_settings(settings).redis_url).put_demand_calendar(
                tenant.tenant_id, calendar
            )
        began = time.monotonic()
        for i in range(0, len(events), _BATCH):
            batch = [{**e, "tenant_id": tenant.tenant_id} for e in events[i : i + _BATCH]]
            client.post_events(to_ndjson(batch))
            if (i // _BATCH) % 10 == 0:
                progress(f"sent {i + len(batch)} of {len(events)} events")
        sent_s = time.monotonic() - began
        deadline = time.monotonic() + timeout_s
        while _processed(client) < len(events):
            if time.monotonic() > deadline:
                raise TimeoutError("the shards did not process the whole stream in time")
            time.sleep(0.5)
        scored_s = time.monotonic() - began
        progress(f"{len(events)} events sent in {sent_s:.1f} s, scored after {scored_s:.1f} s")
        result = compare_alerts(offline, _live_alerts(client))
        result.update({"events": len(events), "sent_s": sent_s, "scored_s": scored_s})
        client.close()
        return result
