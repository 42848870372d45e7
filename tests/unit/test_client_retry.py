"""The API client waits as long as the server's Retry-After asks (a 429 of the rate limiter, a
503 of Serve's bounded queue), never less than its own back-off, never more than 30 s."""

from __future__ import annotations

import httpx
import pytest

from aurora_ray.client import retry_delay

pytestmark = pytest.mark.unit


def test_retry_after_sets_the_wait_between_the_backoff_and_30_s() -> None:
    def response(status: int, **headers: str) -> httpx.Response:
        return httpx.Response(status, headers=headers)

    assert retry_delay(response(429, **{"Retry-After": "7"}), attempt=0) == 7.0
    assert retry_delay(response(503, **{"Retry-After": "1"}), attempt=4) == 4.0  # back-off
    assert retry_delay(response(429, **{"Retry-After": "500"}), attempt=0) == 30.0
    assert retry_delay(response(503), attempt=1) == 0.5
    date = "Wed, 21 Oct 2026 07:28:00 GMT"
    assert retry_delay(response(503, **{"Retry-After": date}), attempt=0) == 0.25
