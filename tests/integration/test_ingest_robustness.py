"""Issue 15 at the API (in-process app, real Tansu broker and Valkey, no Ray): bad lines that used
to be accepted (or answered 500) are 400s naming line and field, and a retried request is
answered once (Idempotency-Key) and folded once (the shards' event-id window) either way."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.ingest_keys import IdempotencyKeys, fingerprint
from aurora_ray.stream import ShardProcessor
from aurora_ray.tenants import NewTenant
from aurora_ray.testing import envelope, ndjson, order, sku_upserted
from tests.integration._services import (
    PARTITIONS,
    Services,
    closed_port_url,
    drive,
    read_topic,
    running_services,
    short_poll_consumer,
)
from tests.integration.test_api_inprocess import Api, _app, new_tenant, post_events, token

pytestmark = pytest.mark.integration

HOUR = 3600.0


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with running_services(tmp_path_factory.mktemp("ingest-robust")) as svc:
        yield svc


@pytest.fixture(scope="module")
def api(services: Services) -> Iterator[Api]:
    yield from _app(services)


@pytest.fixture
def tenant(api: Api) -> NewTenant:
    return new_tenant(api, "robust")


def retry_batch(tenant_id: str) -> bytes:
    """One sku.upserted with initial_stock 100, then ten orders of 1, with event ids."""
    t0 = time.time() - HOUR
    events = [sku_upserted(tenant_id, "R", "W", 100, at=t0)]
    events += [order(tenant_id, "R", "W", 1, at=t0 + 60 * i) for i in range(1, 11)]
    for i, event in enumerate(events):
        event["event_id"] = f"retry-{i}"
    return ndjson(events)


# -- bad lines -------------------------------------------------------------------------------------
def bad_line(tenant_id: str, case: str) -> bytes:
    event = order(tenant_id, "A", "W", 1, at=time.time() - HOUR)
    if case == "far_future":
        event["occurred_at"] = "9999-12-30T00:00:00Z"
        return ndjson([event])
    if case == "huge_qty":
        event["payload"]["qty"] = 2**63
        return ndjson([event])
    deep = "[" * 3000 + "]" * 3000
    raw = json.dumps(event).replace('"sku": "A"', f'"deep": {deep}, "sku": "A"')
    return raw.encode() + b"\n"


@pytest.mark.parametrize(
    ("case", "field"),
    [("far_future", "occurred_at"), ("huge_qty", "payload.qty"), ("deep", "line")],
)
def test_poison_lines_are_a_400_naming_line_and_field(
    api: Api, tenant: NewTenant, case: str, field: str
) -> None:
    bearer = token(api, tenant)
    good = ndjson([sku_upserted(tenant.tenant_id, "A", "W", 5, at=time.time() - HOUR)])
    response = post_events(api, bearer, good + bad_line(tenant.tenant_id, case))
    assert response.status_code == 400, response.text
    [error] = response.json()
    assert (error["line"], error["field"]) == (2, field)


# -- Idempotency-Key -------------------------------------------------------------------------------
def test_a_retry_with_the_same_key_gets_the_first_answer_and_produces_nothing(
    api: Api, tenant: NewTenant
) -> None:
    bearer = token(api, tenant)
    body = retry_batch(tenant.tenant_id)
    answers = [
        post_events(api, bearer, body, **{"Idempotency-Key": "batch-0001"}) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert [a.json() for a in answers] == [{"accepted": 11}] * 3
    assert "idempotent-replayed" not in answers[0].headers
    assert [a.headers.get("idempotent-replayed") for a in answers[1:]] == ["true", "true"]
    records = read_topic(api.settings.kafka_bootstrap, api.settings.topic_for(tenant.tenant_id), 11)
    assert len(records) == 11


def test_a_key_reused_with_another_body_is_a_422(api: Api, tenant: NewTenant) -> None:
    bearer = token(api, tenant)
    first = post_events(api, bearer, retry_batch(tenant.tenant_id), **{"Idempotency-Key": "k-2"})
    assert first.status_code == 202
    other = ndjson([sku_upserted(tenant.tenant_id, "Z", "W", 1, at=time.time() - HOUR)])
    again = post_events(api, bearer, other, **{"Idempotency-Key": "k-2"})
    assert again.status_code == 422 and again.json()["error"] == "idempotency_key_reused"


def test_refusals_are_kept_too_and_keys_are_per_tenant(api: Api, tenant: NewTenant) -> None:
    bearer = token(api, tenant)
    bad = bad_line(tenant.tenant_id, "huge_qty")
    first = post_events(api, bearer, bad, **{"Idempotency-Key": "k-3"})
    second = post_events(api, bearer, bad, **{"Idempotency-Key": "k-3"})
    assert first.status_code == second.status_code == 400
    assert second.json() == first.json() and second.headers["idempotent-replayed"] == "true"
    other = new_tenant(api, "other")
    mine = post_events(
        api, token(api, other), retry_batch(other.tenant_id), **{"Idempotency-Key": "k-3"}
    )
    assert mine.status_code == 202 and "idempotent-replayed" not in mine.headers


def test_a_key_still_running_is_a_409_and_a_bad_key_a_400(api: Api, tenant: NewTenant) -> None:
    bearer = token(api, tenant)
    body = retry_batch(tenant.tenant_id)
    keys = IdempotencyKeys(RedisStore(api.settings.redis_url), ttl_s=60)
    print_ = fingerprint(body, content_type="application/x-ndjson", content_encoding=None)
    claim = asyncio.run(keys.claim(tenant.tenant_id, "k-4", print_))  # another replica's request
    assert claim.kind == "new"
    running = post_events(api, bearer, body, **{"Idempotency-Key": "k-4"})
    assert running.status_code == 409 and running.headers["retry-after"] == "1"
    bad = post_events(api, bearer, body, **{"Idempotency-Key": "k" * 256})
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()[0]["field"]


def test_without_redis_a_keyed_request_runs_unkeyed(services: Services, api: Api) -> None:
    """Ingest needs no Redis but for the key: it is not refused for it (the shards still apply
    each event_id once)."""
    tenant = new_tenant(api, "keyed-redis-down")  # topic created while Redis was up
    for down in _app(services, redis_url=closed_port_url()):
        bearer = down.ctx.issuer.issue(
            tenant_id=tenant.tenant_id, client_id="c", scopes=frozenset({"events:write"})
        )
        body = ndjson([envelope(tenant.tenant_id, "x.y", {})])
        response = post_events(down, bearer, body, **{"Idempotency-Key": "k-5"})
        assert response.status_code == 202, response.text
        assert "idempotent-replayed" not in response.headers


# -- the symptom, through the shard ------------------------------------------------------------
def test_a_batch_posted_three_times_without_a_key_is_folded_once(
    api: Api, tenant: NewTenant
) -> None:
    bearer = token(api, tenant)
    body = retry_batch(tenant.tenant_id)
    for _ in range(3):  # a client retrying after timeouts, same event ids
        assert post_events(api, bearer, body).status_code == 202
    settings = api.settings.model_copy(update={"timer_period_hours": 0.0})
    proc = ShardProcessor(
        settings,
        tenant_id=tenant.tenant_id,
        shard=0,
        partitions=list(range(PARTITIONS)),
        store=RedisStore(settings.redis_url),
        consumer_factory=short_poll_consumer(settings, tenant.tenant_id, 0),
    )
    proc.restore()
    drive(proc, 33)
    prediction: dict[str, Any] = api.http.get(
        "/v1/stock/predictions",
        params={"sku": "R"},
        headers={"Authorization": f"Bearer {token(api, tenant)}"},
    ).json()[0]
    assert prediction["on_hand"] == 90
    proc.close()


# -- Redis down: 503, never 500 --------------------------------------------------------------------
def test_without_redis_every_route_needing_it_is_a_503_and_ingest_goes_on(
    services: Services, api: Api
) -> None:
    tenant = new_tenant(api, "redis-down")  # topic created while Redis was up
    for down in _app(services, redis_url=closed_port_url()):
        bearer = down.ctx.issuer.issue(
            tenant_id=tenant.tenant_id,
            client_id=tenant.client_id,
            scopes=frozenset({"events:write", "alerts:read", "settings:write"}),
        )
        headers = {"Authorization": f"Bearer {bearer}"}
        calls = {
            "alerts (fast path)": down.http.get("/v1/stock/alerts", headers=headers),
            "alerts (route)": down.http.get(
                "/v1/stock/alerts", params={"limit": "x"}, headers=headers
            ),
            "predictions": down.http.get("/v1/stock/predictions", headers=headers),
            "thresholds": down.http.get("/v1/settings/thresholds", headers=headers),
            "set thresholds": down.http.put(
                "/v1/settings/thresholds", json={"default": 0.5}, headers=headers
            ),
            "token": down.http.post(
                "/v1/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": tenant.client_id,
                    "client_secret": tenant.client_secret,
                },
            ),
            "export": down.http.get("/v1/exports/alerts.csv", headers=headers),
        }
        statuses = {name: r.status_code for name, r in calls.items()}
        assert statuses == {
            **dict.fromkeys(calls, 503),
            "alerts (route)": 422,  # a bad parameter is named before Redis is asked
        }, statuses
        assert calls["predictions"].headers["retry-after"] == "5"
        body = ndjson([sku_upserted(tenant.tenant_id, "A", "W", 5, at=time.time() - HOUR)])
        assert post_events(down, bearer, body).status_code == 202


def test_a_rate_limited_keyed_request_runs_again_when_retried(api: Api, tenant: NewTenant) -> None:
    """A 429 is not an answer to keep: once the bucket allows it, the retry is processed."""
    from aurora_ray.tenants import set_tenant_limits

    bearer = token(api, tenant)
    body = retry_batch(tenant.tenant_id)
    set_tenant_limits(api.settings, api.ctx.store, tenant.tenant_id, requests_per_s=0.01)
    post_events(api, bearer, body)  # takes the one request token the bucket holds
    first = post_events(api, bearer, body, **{"Idempotency-Key": "k-429"})
    assert first.status_code == 429, first.text
    set_tenant_limits(api.settings, api.ctx.store, tenant.tenant_id, reset=True)
    again = post_events(api, bearer, body, **{"Idempotency-Key": "k-429"})
    assert again.status_code == 202 and "idempotent-replayed" not in again.headers
