"""Small helpers shared by the integration tests (not fixtures: plain functions)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx

from aurora_ray.testing import topic_records

_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


def parse_ts(ts: str) -> float:
    """Epoch seconds of an API timestamp (ISO 8601 with Z)."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def next_link(response: httpx.Response) -> str | None:
    match = _NEXT_RE.search(response.headers.get("link", ""))
    return match.group(1) if match else None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def all_alert_pages(
    base_url: str, token: str, *, max_pages: int = 1000, **params: Any
) -> list[list[dict[str, Any]]]:
    """Every page of GET /v1/stock/alerts, following Link rel="next" until there is none."""
    pages: list[list[dict[str, Any]]] = []
    url: str | None = f"{base_url}/v1/stock/alerts"
    query: dict[str, Any] | None = params
    with httpx.Client(timeout=60) as http:
        while url is not None:
            response = http.get(url, params=query, headers=bearer(token))
            assert response.status_code == 200, response.text
            pages.append(response.json())
            url, query = next_link(response), None  # the next link carries the whole query
            assert len(pages) <= max_pages, "pagination does not end"
    return pages


def topic_size(stack: Any, tenant_id: str) -> int:
    settings = stack.settings
    return len(
        topic_records(
            settings.kafka_bootstrap, settings.topic_for(tenant_id), settings.partitions_per_topic
        )
    )
