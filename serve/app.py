"""The Serve applications: the same FastAPI ingress, built per replica from settings, deployed
twice (ADR-006):

* ``aurora`` at ``/``: reads, auth, settings, exports (deployment ``AuroraAPI``);
* ``aurora-ingest`` at ``/v1/ingest``: event and backfill writes (deployment ``AuroraIngest``).

Serve sends a request to the application with the longest matching route prefix, so writes never
queue behind reads in the same replica (nor hold a read replica's GIL while they validate 1 000
lines), and each side autoscales on its own load.

Deploy with ``serve deploy configs/serve.yaml`` (``serve.app:build_app`` and
``serve.app:build_ingest_app``) or, for the embedded stack, through ``aurora up``.
"""

from __future__ import annotations

from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from starlette.types import ASGIApp, Receive, Scope, Send

from actors.supervisor import ensure_supervisor
from aurora_ray.naming import INGEST_ROUTE_PREFIX, NAMESPACE, SUPERVISOR_NAME
from aurora_ray.settings import Settings, load_settings
from serve.api import create_api
from serve.context import ApiContext
from serve.metrics import ApiMetrics


def ray_health() -> dict[str, Any]:
    try:
        ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE)
    except ValueError:
        return {"status": "down", "error": f"actor {SUPERVISOR_NAME} is not running"}
    return {"status": "ok", "supervisor": SUPERVISOR_NAME}


class FullPathRouting:
    """ASGI middleware for an application mounted under a route prefix: Serve passes the full
    path with the prefix as ``root_path``, and Starlette would match routes against the path
    *below* the prefix. Clearing ``root_path`` lets the ingest application use the API's own
    routes (``/v1/ingest/events``), so both applications are one FastAPI app and one schema."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "root_path": ""}
        await self.app(scope, receive, send)


# Overload is refused fast, not queued without bound: past this many requests waiting for a
# replica (at each caller: Serve's proxy, or each replica behind the HAProxy ingress) Serve
# answers 503 with Retry-After: 1, which clients retry (docs/architecture.md, "Rate limits").
# About 0.2-0.3 s of a replica's measured throughput: ~1,000 reads/s, ~115 ingest requests/s
# of 1,000 events. configs/serve.yaml says the same (tests/unit/test_configs.py).
API_MAX_QUEUED_REQUESTS = 200
INGEST_MAX_QUEUED_REQUESTS = 32
BACKPRESSURE = {"status_code": 503, "retry_after_s": 1}


@serve.deployment(
    name="AuroraAPI",
    ray_actor_options={"num_cpus": 0},
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
    max_queued_requests=API_MAX_QUEUED_REQUESTS,
    backpressure_config=BACKPRESSURE,
)
@serve.ingress()
class AuroraAPI:
    def __init__(self, settings: Settings, *, mounted_at: str = "/") -> None:
        self.ctx = ApiContext.from_settings(settings)
        self.mounted_at = mounted_at
        # `serve deploy configs/serve.yaml` alone must bring up the stream side too.
        ensure_supervisor(settings)
        self.metrics = ApiMetrics()

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = create_api(self.ctx, ray_health=ray_health, metrics=self.metrics)
        if self.mounted_at != "/":
            app.add_middleware(FullPathRouting)
        return app


def _settings(args: dict[str, Any] | None) -> Settings:
    overrides = dict(args or {})
    settings = overrides.pop("settings", None)
    if not isinstance(settings, Settings):
        settings = load_settings(**overrides)
    return settings


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Serve's application builder for ``aurora`` (route prefix ``/``): ``args`` are settings
    overrides (see configs/serve.yaml)."""
    return AuroraAPI.bind(_settings(args))  # type: ignore[attr-defined,no-any-return]


def build_ingest_app(args: dict[str, Any] | None = None) -> Application:
    """Serve's application builder for ``aurora-ingest`` (route prefix ``/v1/ingest``)."""
    deployment = AuroraAPI.options(  # type: ignore[attr-defined]
        name="AuroraIngest",
        autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 4},
        max_queued_requests=INGEST_MAX_QUEUED_REQUESTS,
    )
    return deployment.bind(_settings(args), mounted_at=INGEST_ROUTE_PREFIX)  # type: ignore[no-any-return]
