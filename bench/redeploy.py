"""The ingest application deployed again with other settings for one measurement, then back.

A setting the API reads when its replicas start (the rate limiter on or off) cannot change under
a running replica, so the bench compares by deploying the ``aurora-ingest`` application again
(``aurora_ray.stack.deploy_ingest``: Serve replaces its replicas) with the target's settings
and the overrides, and after the measurement with the target's settings alone, which are those
the bench started the stack with. The route, the ingress and everything else stay as they were.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from bench.common import Target
from bench.shards import connect_ray

__all__ = ["ingest_app_with", "wait_accepting"]


def wait_accepting(target: Target, token: str, body: bytes, timeout_s: float = 60.0) -> float:
    """Post ``body`` (gzip NDJSON) until the API answers 202, every 0.2 s for at most
    ``timeout_s`` (the ingress may route to the old replicas for a moment); returns the seconds
    waited. Raises TimeoutError when no request was accepted."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-ndjson",
        "Content-Encoding": "gzip",
    }
    began = time.perf_counter()
    last = "no answer"
    with httpx.Client(base_url=target.api_url, timeout=10) as http:
        while time.perf_counter() - began < timeout_s:
            try:
                response = http.post("/v1/ingest/events", content=body, headers=headers)
                if response.status_code == 202:
                    return time.perf_counter() - began
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
    raise TimeoutError(f"the ingest application accepted nothing in {timeout_s:.0f} s ({last})")


@contextlib.contextmanager
def ingest_app_with(
    target: Target, overrides: Mapping[str, Any], *, token: str, body: bytes
) -> Iterator[None]:
    """The ingest application with ``overrides`` for the block (accepting requests when it
    starts), then deployed back with ``target.settings`` (accepting again when it returns)."""
    from aurora_ray.stack import deploy_ingest

    if not target.owns_stack:
        raise RuntimeError("the bench redeploys only a stack it started itself")
    connect_ray(target)
    deploy_ingest(target.settings.model_copy(update=dict(overrides)))
    try:
        wait_accepting(target, token, body)
        yield
    finally:
        deploy_ingest(target.settings)
        wait_accepting(target, token, body)
