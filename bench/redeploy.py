"""The ingest application deployed again with other settings for one measurement, then back.

A setting the API reads when its replicas start (the rate limiter on or off) cannot change under
a running replica, so the bench compares by deploying the ``aurora-ingest`` application again
(``aurora_ray.stack.deploy_ingest``: Serve starts a replica of the new version and drains the
old one) with the target's settings and the variant's, and after the measurement with the
target's settings alone, which are those the bench started the stack with. The route, the
ingress and everything else stay as they were.

Serve stops the replaced replica (it takes no new request) when it starts the new one, and
behind the HAProxy ingress drains it for ~30 s, long after the new one answers; the bench does
not wait for the drain: it posts until ``_IN_A_ROW`` answers in a row came from the wanted
version (:attr:`Variant.answered_by` tells them apart). Not more: a limiter that fails open
(Redis slower than ``rate_limit_timeout_s`` on a loaded machine) answers like one that is off.
Serve rolls out one version at a time: the switch back begins once the first replaced replica
has drained, ~30 s after the first switch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bench.common import Target
from bench.shards import connect_ray

__all__ = ["Variant", "ingest_app_with", "wait_answered_by"]

_IN_A_ROW = 3


@dataclass(frozen=True)
class Variant:
    """Settings of the ingest application for one measurement, and how to tell an answer of
    that version from one of the application as deployed."""

    label: str
    settings: Mapping[str, Any]
    answered_by: Callable[[httpx.Response], bool]


def wait_answered_by(
    target: Target,
    token: str,
    body: bytes,
    by: Callable[[httpx.Response], bool],
    *,
    timeout_s: float = 90.0,
) -> float:
    """Post ``body`` (gzip NDJSON) until ``_IN_A_ROW`` answers in a row are 202s that ``by``
    accepts (every 0.1 s, for at most ``timeout_s``); returns the seconds waited. Raises
    TimeoutError naming the last answer."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-ndjson",
        "Content-Encoding": "gzip",
    }
    began = time.perf_counter()
    last, streak = "no answer", 0
    with httpx.Client(base_url=target.api_url, timeout=10) as http:
        while time.perf_counter() - began < timeout_s:
            try:
                response = http.post("/v1/ingest/events", content=body, headers=headers)
                last = f"HTTP {response.status_code}"
                streak = streak + 1 if response.status_code == 202 and by(response) else 0
            except httpx.HTTPError as exc:
                last, streak = f"{type(exc).__name__}: {exc}", 0
            if streak >= _IN_A_ROW:
                return time.perf_counter() - began
            time.sleep(0.1)
    raise TimeoutError(
        f"the ingest application did not answer as wanted {_IN_A_ROW} times in a row in "
        f"{timeout_s:.0f} s (last: {last})"
    )


@contextlib.contextmanager
def ingest_app_with(
    target: Target, variant: Variant, *, token: str, body: bytes
) -> Iterator[dict[str, float]]:
    """The ingest application with the variant's settings for the block, then deployed back
    with ``target.settings``; each time, once the ingress answers from the version wanted.
    Yields a dict that holds the seconds each switch took (filled as they happen)."""
    from aurora_ray.stack import deploy_ingest

    if not target.owns_stack:
        raise RuntimeError("the bench redeploys only a stack it started itself")
    connect_ray(target)
    switched: dict[str, float] = {}
    deploy_ingest(target.settings.model_copy(update=dict(variant.settings)), wait=False)
    try:
        switched["to_variant_s"] = wait_answered_by(target, token, body, variant.answered_by)
        yield switched
    finally:
        deploy_ingest(target.settings, wait=False)
        switched["back_s"] = wait_answered_by(
            target, token, body, lambda response: not variant.answered_by(response)
        )
