"""Acceptance (d): one bad line among 1 000 rejects the whole request, naming that line, and
nothing of it reaches the topic."""

from __future__ import annotations

import time

import httpx
import pytest

from aurora_ray.testing import ndjson, order, topic_records

pytestmark = pytest.mark.integration


def _topic_size(stack, tenant_id: str) -> int:
    settings = stack.settings
    return len(
        topic_records(
            settings.kafka_bootstrap, settings.topic_for(tenant_id), settings.partitions_per_topic
        )
    )


def test_one_bad_line_rejects_the_whole_request(stack, make_tenant) -> None:
    tenant = make_tenant("bad-line")
    now = time.time()
    events = [
        order(tenant.tenant_id, f"SKU-{i % 50}", "DE-HAM", 1, at=now - 60, order_id=str(i))
        for i in range(1000)
    ]
    events[636]["payload"]["qty"] = 0
    token = tenant.client.token()
    response = httpx.post(
        f"{stack.base_url}/v1/ingest/events",
        content=ndjson(events),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 400
    assert response.json() == [
        {"line": 637, "field": "payload.qty", "message": "Expected `int` >= 1"}
    ]
    assert _topic_size(stack, tenant.tenant_id) == 0

    events[636]["payload"]["qty"] = 2
    assert tenant.client.post_events(ndjson(events)) == 1000
    assert _topic_size(stack, tenant.tenant_id) == 1000
