"""Health, at three levels of detail (for ``GET /status``, ``GET /v1/status/tenant``,
``GET /v1/status/operator`` and ``aurora status``).

* **Public** (:func:`public_status`): is the shared infrastructure serving, Ray, Redis and Kafka?
  ``200`` with the version, or ``503`` naming the component that is down with a generic reason.
  A load balancer polls it, so it is cheap (three probes run side by side, bounded by one
  timeout, nothing per tenant), and it names no tenant and no internal detail: one tenant's
  stuck shard never takes the whole service out of a load balancer's pool.
* **Tenant** (:func:`tenant_status`): one tenant's shards (``ok`` / ``starting`` / ``down``, lag,
  last checkpoint), its topic, its warehouse sink's delay and its model.
* **Operator** (:func:`operator_status`): the infrastructure with the errors themselves, and every
  tenant's view.

A shard is ``ok`` while its heartbeat in Redis (written about once a second) is younger than
``shard_stale_after_s``. It is ``starting`` while it has not beaten since its actor was
constructed (``started_at``, written first thing by the actor), or, with no record at all, while
its tenant is younger than ``shard_start_grace_s``; past that grace, and with a stale heartbeat,
it is ``down``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Final, Literal

from aurora_ray import __version__
from aurora_ray.naming import shard_name

__all__ = [
    "INFRASTRUCTURE",
    "Component",
    "ComponentDown",
    "HealthRules",
    "ShardState",
    "operator_status",
    "probe",
    "public_status",
    "shard_state",
    "tenant_status",
]

ShardState = Literal["ok", "starting", "down"]
INFRASTRUCTURE: Final = ("ray", "redis", "kafka")
Check = Callable[[], object]  # returns when the component serves, raises when it does not


class ComponentDown(Exception):
    """A check's verdict with a reason that is safe to show anyone (no host, path or tenant)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


@dataclass(frozen=True)
class Component:
    ok: bool
    reason: str = ""  # generic: for the public status
    error: str = ""  # the failure itself: for operators only

    def public(self) -> dict[str, Any]:
        return {"status": "ok"} if self.ok else {"status": "down", "reason": self.reason}

    def internal(self) -> dict[str, Any]:
        return self.public() | ({"error": self.error} if self.error else {})


@dataclass(frozen=True)
class HealthRules:
    stale_after_s: float = 15.0
    start_grace_s: float = 60.0


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ComponentDown):
        return exc.reason
    name, text = type(exc).__name__.lower(), str(exc).lower()
    if isinstance(exc, TimeoutError) or "timeout" in name or "timed out" in text:
        return "no answer in time"
    if isinstance(exc, ConnectionError) or "connection" in name or "refused" in text:
        return "not reachable"
    return "not available"


def probe(checks: Mapping[str, Check], *, timeout_s: float) -> dict[str, Component]:
    """Run the checks side by side; one that has not returned after ``timeout_s`` is down.

    A check that hangs keeps its thread until its own client timeout ends it; the answer does
    not wait for it."""
    pool = ThreadPoolExecutor(max_workers=max(1, len(checks)), thread_name_prefix="health")
    try:
        futures = {name: pool.submit(check) for name, check in checks.items()}
        deadline = time.monotonic() + timeout_s
        out: dict[str, Component] = {}
        for name, future in futures.items():
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
                out[name] = Component(ok=True)
            except FutureTimeout:
                out[name] = Component(
                    ok=False, reason="no answer in time", error=f"no answer within {timeout_s} s"
                )
            except Exception as exc:  # any failure means down; say why, generically in public
                out[name] = Component(ok=False, reason=_reason(exc), error=str(exc) or repr(exc))
        return out
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def public_status(components: Mapping[str, Component]) -> tuple[int, dict[str, Any]]:
    """``(200 | 503, body)``: the version and each infrastructure component's status only."""
    down = [name for name, c in components.items() if not c.ok]
    body: dict[str, Any] = {
        "status": "degraded" if down else "ok",
        "version": __version__,
        "components": {name: c.public() for name, c in components.items()},
    }
    if down:
        body["down"] = down
    return (503 if down else 200), body


def shard_state(
    record: Mapping[str, Any], *, now: float, tenant_created_at: float | None, rules: HealthRules
) -> ShardState:
    beat, started = record.get("heartbeat"), record.get("started_at")
    beat = beat if isinstance(beat, int | float) else None
    if isinstance(started, int | float) and (beat is None or started > beat):
        # constructed (or restarted by Ray) and not beaten since: restoring its checkpoint
        return "starting" if now - started <= rules.start_grace_s else "down"
    if beat is not None:
        return "ok" if now - beat <= rules.stale_after_s else "down"
    young = tenant_created_at is not None and now - tenant_created_at <= rules.start_grace_s
    return "starting" if young else "down"


_WAREHOUSE_DOWN: Final = "the warehouse cannot be written; the operators are alerted"
_SHARD_FIELDS: Final = (
    "lag",
    "last_checkpoint",
    "events",
    "model_error",
    "dead_letters",
    "duplicates",
    "warehouse_error",
)


def tenant_status(
    tenant_id: str,
    *,
    records: Iterable[Mapping[str, Any]],
    created_at: float | None,
    topic_exists: bool,
    delayed: Mapping[str, Any] | None,
    model: Mapping[str, Any],
    now: float,
    rules: HealthRules,
    failing: Mapping[str, Any] | None = None,
    internal: bool = False,
) -> dict[str, Any]:
    """One tenant's view, from what Redis holds about it (``records``: ``shard_health``;
    ``failing``: the warehouse sink's alarm while its writes fail, which makes it degraded).
    Error texts (paths, hosts) are for operators: ``internal`` keeps them, the tenant's own
    view says only that the warehouse cannot be written."""
    shards = []
    for record in records:
        state = shard_state(record, now=now, tenant_created_at=created_at, rules=rules)
        beat = record.get("heartbeat")
        shards.append(
            {
                "shard": record["shard"],
                "name": shard_name(tenant_id, record["shard"]),
                "status": state,
                "heartbeat_age_s": round(now - beat, 1) if isinstance(beat, int | float) else None,
                **{name: record.get(name) for name in _SHARD_FIELDS},
            }
        )
        if not internal and shards[-1]["warehouse_error"]:
            shards[-1]["warehouse_error"] = _WAREHOUSE_DOWN
    if failing and not internal:
        failing = {**{k: v for k, v in failing.items() if k != "error"}, "error": _WAREHOUSE_DOWN}
    states = {s["status"] for s in shards}
    degraded = "down" in states or not topic_exists or bool(failing)
    return {
        "tenant_id": tenant_id,
        "status": "degraded" if degraded else "starting" if "starting" in states else "ok",
        "version": __version__,
        "topic": {"status": "ok" if topic_exists else "missing"},
        "shards": shards,
        "warehouse": (
            {"status": "failing", **failing}
            if failing
            else {"status": "delayed", **delayed}
            if delayed
            else {"status": "ok"}
        ),
        "model": dict(model),
    }


def operator_status(
    infrastructure: Mapping[str, Component],
    tenants: Mapping[str, Mapping[str, Any]],
    *,
    topics: int | None,
) -> dict[str, Any]:
    """Everything: the infrastructure with its errors, each tenant's view, and what is down
    (a component, ``shards`` when any shard of any tenant is down, ``topics`` when a tenant's
    topic is missing, ``warehouse`` when a tenant's warehouse sink cannot write)."""
    components = {name: c.internal() for name, c in infrastructure.items()}
    if topics is not None and "kafka" in components:
        components["kafka"]["topics"] = topics
    shards = [s for view in tenants.values() for s in view["shards"]]
    down = [name for name, c in infrastructure.items() if not c.ok]
    by_state = {
        state: [s["name"] for s in shards if s["status"] == state] for state in ("down", "starting")
    }
    if by_state["down"]:
        down.append("shards")
    missing = [t for t, view in tenants.items() if view["topic"]["status"] != "ok"]
    if missing:
        down.append("topics")
    failing = [t for t, view in tenants.items() if view["warehouse"]["status"] == "failing"]
    if failing:
        down.append("warehouse")
    body: dict[str, Any] = {
        "status": "degraded" if down else "ok",
        "version": __version__,
        "components": components,
        "shards": {"total": len(shards), **by_state},
        "tenants": dict(tenants),
    }
    if missing:
        body["missing_topics"] = missing
    if failing:
        body["warehouse_failing"] = failing
    if down:
        body["down"] = down
    return body
