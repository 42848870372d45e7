"""The HTTP API surface: health, OpenAPI, the retired /v1/ingest, body checks of
POST /v1/ingest/events (media type, size limits, gzip, the `sku_id` alias, unknown event types),
alert pagination and filters, and the thresholds settings."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aurora_ray import __version__
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.testing import (
    envelope,
    iso,
    ndjson,
    order,
    sku_upserted,
    stock_snapshot,
    wait_for,
)
from tests.integration.helpers import all_alert_pages, bearer, next_link, parse_ts, topic_size

pytestmark = pytest.mark.integration

NDJSON = {"Content-Type": "application/x-ndjson"}
HOUR = 3600.0


@pytest.fixture(scope="module")
def tenant(stack) -> Iterator[Any]:
    """One tenant shared by the tests of this module that do not depend on its other data."""
    from aurora_ray.adapters.kafka import TopicAdmin
    from aurora_ray.client import AuroraClient
    from aurora_ray.tenants import create_tenant
    from tests.conftest import TenantClient

    created = create_tenant(
        stack.settings,
        RedisStore(stack.settings.redis_url),
        TopicAdmin(stack.settings.kafka_bootstrap),
        name="api-surface",
    )
    client = AuroraClient(
        stack.base_url, client_id=created.client_id, client_secret=created.client_secret
    )
    yield TenantClient(created.tenant_id, created.client_id, created.client_secret, client)
    client.close()


def _orders(tenant_id: str, n: int, *, sku: str = "SKU-1", at: float | None = None) -> list[dict]:
    at = at if at is not None else time.time() - 3600
    return [order(tenant_id, sku, "DE-HAM", 1, at=at + i, order_id=f"o-{i}") for i in range(n)]


def _post(stack, token: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/v1/ingest/events",
        content=body,
        headers={**bearer(token), **headers},
        timeout=120,
    )


# -- health and documentation ----------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/status", "/v1/status"])
def test_public_status_is_200_at_once_for_a_new_tenant_and_names_none(stack, path: str) -> None:
    fresh = _new_tenant(stack, "fresh")  # its shards have no heartbeat yet
    response = httpx.get(f"{stack.base_url}{path}", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "version": __version__,
        "components": {name: {"status": "ok"} for name in ("ray", "redis", "kafka")},
    }
    assert fresh.tenant_id not in response.text


def test_a_new_tenants_shards_are_starting_then_ok_through_serve(stack) -> None:
    """Real shards started by the Supervisor: `starting` until their first heartbeat (never
    `down`), then `ok`; the public status answers 200 all along."""
    from aurora_ray.auth import TokenIssuer

    issuer = TokenIssuer(
        stack.settings.jwt_secret.get_secret_value(), issuer=stack.settings.jwt_issuer
    )
    created = _new_tenant(stack, "starting")
    # A token of any scope, issued here: no grant round trip before the first look.
    token = issuer.issue(
        tenant_id=created.tenant_id, client_id="c", scopes=frozenset({"alerts:read"})
    )
    seen: list[str] = []

    def ok() -> dict[str, Any] | None:
        public = httpx.get(f"{stack.base_url}/status", timeout=30)
        assert public.status_code == 200, public.text
        response = httpx.get(
            f"{stack.base_url}/v1/status/tenant", headers=bearer(token), timeout=30
        )
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(s["status"] for s in body["shards"])
        return body if body["status"] == "ok" else None

    body = wait_for(ok, timeout=120, interval=0.2, what="the new tenant's shards to be ok")
    assert seen[0] == "starting", seen[:5]
    assert "down" not in seen, seen
    names = [s["name"] for s in body["shards"]]
    assert names == [f"tenant:{created.tenant_id}:{n}" for n in range(len(names))]
    assert all(s["heartbeat_age_s"] is not None and s["lag"] is not None for s in body["shards"])


def _new_tenant(stack, name: str) -> Any:
    from aurora_ray.adapters.kafka import TopicAdmin
    from aurora_ray.tenants import create_tenant

    return create_tenant(
        stack.settings,
        RedisStore(stack.settings.redis_url),
        TopicAdmin(stack.settings.kafka_bootstrap),
        name=name,
    )


def test_writes_have_a_serve_application_of_their_own(stack, tenant) -> None:
    """ADR-006: /v1/ingest/* goes to `aurora-ingest` (longest route prefix), the rest to
    `aurora`; each application runs its own deployment, and writes work through it."""
    from ray import serve

    apps = serve.status().applications
    assert apps["aurora"].status == "RUNNING"
    assert apps["aurora-ingest"].status == "RUNNING"
    assert set(apps["aurora-ingest"].deployments) == {"AuroraIngest"}
    assert set(apps["aurora"].deployments) == {"AuroraAPI"}
    line = json.dumps(
        {
            "tenant_id": tenant.tenant_id,
            "event_type": "stock.snapshot",
            "payload": {"sku": "ROUTED", "warehouse": "W1", "on_hand": 5},
        }
    )
    response = _post(stack, tenant.client.token(), line, **NDJSON)
    assert response.status_code == 202, response.text


def test_docs_and_openapi_list_every_route(stack) -> None:
    docs = httpx.get(f"{stack.base_url}/docs", timeout=30)
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]

    response = httpx.get(f"{stack.base_url}/openapi.json", timeout=30)
    assert response.status_code == 200
    spec = response.json()
    paths = spec["paths"]
    for path in (
        "/v1/ingest/events",
        "/v1/stock/alerts",
        "/v1/stock/predictions",
        "/v1/stock/recommendations",
        "/v1/settings/thresholds",
        "/v1/settings/replenishment",
        "/v1/oauth/token",
        "/v1/status",
        "/v1/status/tenant",
        "/v1/status/operator",
    ):
        assert path in paths, f"{path} is missing from the OpenAPI document"
    assert "post" in paths["/v1/ingest/events"]
    assert "application/x-ndjson" in paths["/v1/ingest/events"]["post"]["requestBody"]["content"]
    assert {"get", "put"} <= set(paths["/v1/settings/thresholds"])
    assert spec["info"]["version"] == __version__


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_old_ingest_path_answers_410_naming_the_new_one(stack, tenant, method: str) -> None:
    response = httpx.request(
        method,
        f"{stack.base_url}/v1/ingest",
        content=ndjson(_orders(tenant.tenant_id, 1)),
        headers={**bearer(tenant.client.token()), **NDJSON},
        timeout=30,
    )
    assert response.status_code == 410
    body = response.json()
    assert body["error"] == "gone"
    assert body["new_path"] == "/v1/ingest/events"
    assert "/v1/ingest/events" in body["message"]


# -- body checks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "text/plain"},
        {},
        {"Content-Type": "application/x-ndjson", "Content-Encoding": "br"},
    ],
    ids=["json", "text", "none", "brotli"],
)
def test_wrong_media_type_or_encoding_is_415(stack, tenant, headers: dict[str, str]) -> None:
    body = ndjson(_orders(tenant.tenant_id, 3))
    response = _post(stack, tenant.client.token(), body, **headers)
    assert response.status_code == 415, response.text
    assert response.json()["error"] in ("unsupported_media_type", "unsupported_encoding")


def _body_of_exactly(tenant_id: str, size: int) -> bytes:
    """Valid-looking NDJSON of exactly ``size`` bytes (the last line padded with blanks)."""
    line = ndjson(_orders(tenant_id, 1))
    lines = (size // len(line)) - 1
    body = line * lines
    rest = size - len(body)
    last = line.rstrip(b"\n")
    return body + last + b" " * (rest - len(last) - 1) + b"\n"


def _gzip_stream(line: bytes, inflated: int) -> bytes:
    """gzip of ``line`` repeated to ``inflated`` bytes, compressed without holding it in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = line * (1_048_576 // len(line))
    out, total = [], 0
    while total < inflated:
        out.append(compressor.compress(chunk))
        total += len(chunk)
    out.append(compressor.flush())
    return b"".join(out)


def test_bodies_over_the_limit_are_413_and_produce_nothing(stack, tenant) -> None:
    refused = tenant
    size_before = topic_size(stack, refused.tenant_id)
    token = refused.client.token()
    limit = stack.settings.max_body_bytes
    assert limit == 10 * 1024 * 1024

    body = _body_of_exactly(refused.tenant_id, limit + 1)
    assert len(body) == limit + 1
    response = _post(stack, token, body, **NDJSON)
    assert response.status_code == 413, response.text[:500]
    assert response.json()["error"] == "payload_too_large"

    # The same without Content-Length (chunked): the limit is enforced on what was read.
    chunks = [body[i : i + 1_048_576] for i in range(0, len(body), 1_048_576)]
    response = _post(stack, token, iter(chunks), **NDJSON)
    assert response.status_code == 413, response.text[:500]

    # A gzip bomb: ~100 KB on the wire that inflates to 100 MB of valid lines.
    bomb = _gzip_stream(ndjson(_orders(refused.tenant_id, 1)), 100 * 1024 * 1024)
    assert len(bomb) < limit
    response = _post(stack, token, bomb, **NDJSON, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413, response.text[:500]
    assert response.json()["error"] == "payload_too_large"

    # Just over the limit once inflated.
    small_bomb = gzip.compress(_body_of_exactly(refused.tenant_id, limit + 1))
    response = _post(stack, token, small_bomb, **NDJSON, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413, response.text[:500]

    assert topic_size(stack, refused.tenant_id) == size_before


def test_gzip_ndjson_is_accepted(stack, tenant) -> None:
    events = _orders(tenant.tenant_id, 25, sku="GZ-1")
    response = _post(
        stack,
        tenant.client.token(),
        gzip.compress(ndjson(events)),
        **NDJSON,
        **{"Content-Encoding": "gzip"},
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 25}
    assert "Deprecation" not in response.headers

    response = _post(
        stack, tenant.client.token(), b"\x1f\x8b not gzip", **NDJSON, **{"Content-Encoding": "gzip"}
    )
    assert response.status_code == 400
    assert response.json()[0]["field"] == "body"


def test_sku_id_alias_is_accepted_with_a_deprecation_header(stack, tenant) -> None:
    at = time.time() - 2 * HOUR
    upsert = sku_upserted(tenant.tenant_id, "ALIAS-1", "DE-HAM", 40, at=at)
    upsert["payload"]["sku_id"] = upsert["payload"].pop("sku")
    sale = order(tenant.tenant_id, "ALIAS-1", "DE-HAM", 3, at=at + 60, order_id="alias-1")
    sale["payload"]["sku_id"] = sale["payload"].pop("sku")
    response = _post(stack, tenant.client.token(), ndjson([upsert, sale]), **NDJSON)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2}
    assert response.headers.get("Deprecation"), dict(response.headers)
    assert "sku_id" in response.headers.get("Warning", "")

    # The alias is the same SKU downstream.
    def predicted():
        rows = tenant.client.get("/v1/stock/predictions", sku="ALIAS-1").json()
        return rows and rows[0]["on_hand"] == 37 and rows

    [row] = wait_for(predicted, timeout=120, what="ALIAS-1 to be scored")
    assert row["sku"] == "ALIAS-1" and row["warehouse"] == "DE-HAM"


def _counters(stack, tenant_id: str) -> dict[str, int]:
    return RedisStore(stack.settings.redis_url).counters(tenant_id)


def test_unknown_event_types_are_accepted_and_counted(stack, make_tenant) -> None:
    """Unknown types are accepted, kept on the topic and counted; a catalogue-only sku.upserted
    (no initial_stock) is a known type that moves no state and is not counted as unknown."""
    counted = make_tenant("unknown-types")
    tid = counted.tenant_id
    at = time.time() - HOUR
    events = [
        envelope(tid, "promo.started", {"sku": "U-1", "warehouse": "DE-HAM", "pct": 10}, at=at),
        envelope(tid, "promo.ended", {"sku": "U-1", "warehouse": "DE-HAM"}, at=at + 1),
        envelope(tid, "weather.changed", {"city": "Hamburg"}, at=at + 2),
        sku_upserted(tid, "U-1", "DE-HAM", 10, at=at + 3),
        sku_upserted(tid, "U-2", "DE-HAM", 10, at=at + 4),
        envelope(
            tid, "sku.upserted", {"sku": "U-3", "warehouse": "DE-HAM", "brand": "x"}, at=at + 5
        ),
    ]
    response = _post(stack, counted.client.token(), ndjson(events), **NDJSON)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 6}
    assert topic_size(stack, tid) == 6  # unknown types are kept on the topic

    counters = wait_for(
        lambda: (c := _counters(stack, tid)).get("events_processed", 0) >= 6 and c,
        timeout=120,
        what="the shard to process the 6 events",
    )
    assert counters["events_processed"] == 6
    assert counters.get("events_unknown_type") == 3, counters
    assert counters.get("dead_letters", 0) == 0
    rows = counted.client.get("/v1/stock/predictions").json()
    assert sorted(r["sku"] for r in rows) == ["U-1", "U-2"]  # U-3: catalogue only, stock unknown


# -- alerts: pagination and filters ----------------------------------------------------------------
def test_alert_pagination_and_filters(stack, make_tenant) -> None:
    alerted = make_tenant("pagination")
    api, tid = alerted.client, alerted.tenant_id
    # MID will be alerted with a probability well below 1 (about 0.55).
    assert api.put("/v1/settings/thresholds", json={"skus": {"MID": 0.05}}).status_code == 200
    t0 = time.time() - 10 * 24 * HOUR

    def out_of_stock(sku: str, warehouse: str) -> list[dict]:
        return [
            sku_upserted(tid, sku, warehouse, 10, at=t0),
            stock_snapshot(tid, sku, warehouse, 0, at=t0 + 60),
        ]

    first = [e for sku in ("A0", "A1", "A2") for e in out_of_stock(sku, "DE-HAM")]
    assert api.post_events(ndjson(first)) == len(first)
    wait_for(lambda: len(api.alerts()) == 3, timeout=120, what="the first 3 alerts")

    second = [
        *out_of_stock("A3", "DE-HAM"),
        *out_of_stock("B0", "FR-PAR"),
        *out_of_stock("B1", "FR-PAR"),
        sku_upserted(tid, "MID", "DE-HAM", 9, at=t0),
        order(tid, "MID", "DE-HAM", 1, at=t0 + HOUR, order_id="mid-1"),
    ]
    assert api.post_events(ndjson(second)) == len(second)
    everything = wait_for(
        lambda: (a := api.alerts(limit=1000)) and len(a) >= 7 and a,
        timeout=120,
        what="7 alerts",
    )
    time.sleep(1.0)  # nothing else may arrive: one alert per SKU
    everything = api.alerts(limit=1000)
    assert sorted(a["sku"] for a in everything) == ["A0", "A1", "A2", "A3", "B0", "B1", "MID"]
    [mid] = [a for a in everything if a["sku"] == "MID"]
    assert 0.05 <= mid["probability"] < 0.9, mid
    assert all(a["probability"] == 1.0 for a in everything if a["sku"] != "MID")

    # limit=2, following Link rel="next" until there is none.
    token = api.token()
    pages = all_alert_pages(stack.base_url, token, limit=2)
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    seen = [a for page in pages for a in page]
    ids = [a["alert_id"] for a in seen]
    assert len(ids) == len(set(ids)) == 7, "an alert was served twice or skipped"
    assert ids == [a["alert_id"] for a in everything], "pages differ from one big page"
    created = [parse_ts(a["created_at"]) for a in seen]
    assert created == sorted(created, reverse=True), "not newest first"
    second_skus = {"A3", "B0", "B1", "MID"}
    assert {a["sku"] for a in seen[:4]} == second_skus, "the later alerts must come first"

    # Filters; the next link carries them (and a cursor).
    response = api.get("/v1/stock/alerts", warehouse="FR-PAR", limit=1)
    link = next_link(response)
    assert link is not None
    assert link.startswith(f"{stack.base_url}/v1/stock/alerts?")
    assert "warehouse=FR-PAR" in link and "limit=1" in link and "cursor=" in link
    last = api.get("/v1/stock/alerts", warehouse="FR-PAR", limit=2)
    assert len(last.json()) == 2 and next_link(last) is None
    by_warehouse = all_alert_pages(stack.base_url, token, warehouse="FR-PAR", limit=1)
    assert [len(p) for p in by_warehouse] == [1, 1]
    assert sorted(a["sku"] for p in by_warehouse for a in p) == ["B0", "B1"]
    hamburg = [
        a for p in all_alert_pages(stack.base_url, token, warehouse="DE-HAM", limit=2) for a in p
    ]
    assert sorted(a["sku"] for a in hamburg) == ["A0", "A1", "A2", "A3", "MID"]

    sure = api.alerts(min_probability=0.9)
    assert sorted(a["sku"] for a in sure) == ["A0", "A1", "A2", "A3", "B0", "B1"]
    assert len(api.alerts(min_probability=0.05)) == 7
    assert len(api.alerts(min_probability=0)) == 7

    since = min(a["created_at"] for a in seen if a["sku"] in second_skus)
    recent = api.alerts(since=since)
    assert {a["sku"] for a in recent} == second_skus
    assert api.alerts(since=iso(time.time() + 3600)) == []
    assert len(api.alerts(since=iso(time.time() - 3600))) == 7
    assert [a["sku"] for a in api.alerts(sku="MID")] == ["MID"]
    assert api.alerts(sku="A0", warehouse="FR-PAR") == []

    # Bad parameters.
    naive = api.get("/v1/stock/alerts", since="2025-01-01T00:00:00")
    assert naive.status_code == 422
    assert api.get("/v1/stock/alerts", limit=0).status_code == 422
    assert api.get("/v1/stock/alerts", min_probability=1.5).status_code == 422
    assert api.get("/v1/stock/alerts", cursor="not-a-cursor").status_code == 400

    # Predictions of the same tenant: every SKU, out of stock ones with probability 1.
    predictions = api.get("/v1/stock/predictions").json()
    assert {p["sku"] for p in predictions} == {"A0", "A1", "A2", "A3", "B0", "B1", "MID"}
    assert api.get("/v1/stock/predictions", warehouse="FR-PAR").json() == [
        p for p in predictions if p["warehouse"] == "FR-PAR"
    ]


# -- thresholds ------------------------------------------------------------------------------------
def test_thresholds_round_trip(tenant) -> None:
    api = tenant.client
    default = {"default": 0.7, "skus": {}}
    assert api.get("/v1/settings/thresholds").json() == default

    update = {"default": 0.8, "skus": {"A": 0.9, "B@DE-HAM": 0.5}}
    response = api.put("/v1/settings/thresholds", json=update)
    assert response.status_code == 200, response.text
    assert response.json() == update
    assert api.get("/v1/settings/thresholds").json() == update

    # Only what is named changes; null removes a per-SKU override.
    response = api.put("/v1/settings/thresholds", json={"skus": {"A": None, "C": 0.95}})
    expected = {"default": 0.8, "skus": {"B@DE-HAM": 0.5, "C": 0.95}}
    assert response.json() == expected
    assert api.put("/v1/settings/thresholds", json={}).json() == expected
    assert api.get("/v1/settings/thresholds").json() == expected

    for bad in (
        {"default": 1.5},
        {"default": 0},
        {"default": -0.2},
        {"default": "high"},
        {"skus": {"A": "high"}},
        {"skus": ["A"]},
    ):
        response = api.put("/v1/settings/thresholds", json=bad)
        assert response.status_code == 422, (bad, response.status_code, response.text)
    assert api.get("/v1/settings/thresholds").json() == expected


def test_invalid_per_sku_threshold_is_422(tenant) -> None:
    api = tenant.client
    accepted = {}
    try:
        for value in (1.5, -1.0, 0.0):
            response = api.put("/v1/settings/thresholds", json={"skus": {"BAD-X": value}})
            if response.status_code != 422:
                accepted[value] = response.status_code
        stored = api.get("/v1/settings/thresholds").json()["skus"]
    finally:
        api.put("/v1/settings/thresholds", json={"skus": {"BAD-X": None}})
    assert not accepted, f"out-of-range per-SKU thresholds accepted: {accepted}; stored {stored}"


def test_an_overloaded_deployment_answers_503_with_retry_after_not_an_endless_queue(
    stack,
) -> None:
    """Serve's queue bound as the API's deployments configure it (serve.app.BACKPRESSURE), on a
    deployment of one slot and one queue place: what is past the queue is answered at once with
    a retryable 503 and Retry-After: 1 (Ray 2.60), while the admitted requests complete."""
    from concurrent.futures import ThreadPoolExecutor

    from ray import serve

    from serve.app import BACKPRESSURE

    @serve.deployment(
        max_ongoing_requests=1,
        max_queued_requests=1,
        backpressure_config=BACKPRESSURE,
        ray_actor_options={"num_cpus": 0},
    )
    class Slow:
        async def __call__(self, _request: Any) -> str:
            import asyncio

            await asyncio.sleep(1.5)
            return "done"

    serve.run(Slow.bind(), name="backpressure-test", route_prefix="/backpressure-test")
    try:
        url = f"{stack.base_url}/backpressure-test"

        def get(_: int) -> tuple[int, str | None, float]:
            start = time.monotonic()
            response = httpx.get(url, timeout=60)
            return (
                response.status_code,
                response.headers.get("retry-after"),
                (time.monotonic() - start),
            )

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(get, range(6)))
    finally:
        serve.delete("backpressure-test")
    statuses = sorted(status for status, _, _ in results)
    assert statuses.count(200) >= 1 and statuses.count(503) >= 3, results
    assert set(statuses) <= {200, 503}, results
    for status, retry_after, seconds in results:
        if status == 503:
            assert retry_after == "1" and seconds < 1.0, results  # refused at once
