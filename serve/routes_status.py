"""Health: GET /v1/status (public, also at /status), /v1/status/tenant (a tenant's token) and
/v1/status/operator (an operator's token). The views are built in aurora_ray.health."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from aurora_ray.api_models import DetailOut, OperatorStatusOut, StatusOut, TenantStatusOut
from aurora_ray.auth import Principal
from aurora_ray.status import RayHealth, read_operator, read_public, read_tenant
from serve.context import ApiContext
from serve.deps import auth_errors, context, operator_principal, tenant_principal
from serve.limits import RATE_LIMITED

_NO_CACHE = {"Cache-Control": "no-store"}
_NO_STORE_503 = {"error": "unavailable", "message": "the status store is not reachable"}
_OTHER_KIND: dict[int | str, dict[str, Any]] = {
    403: {"model": DetailOut, "description": "a token of the other kind (tenant or operator)"},
}


class _Recent:
    """The public status of the last second, computed by one request at a time: a load
    balancer polling every replica, or anyone on the internet, costs one probe a second."""

    def __init__(self, ttl_s: float = 1.0) -> None:
        self.ttl_s = ttl_s
        self.lock = threading.Lock()
        self.at = -1e9
        self.value: tuple[int, dict[str, Any]] = (503, {})

    def get(self, compute: Callable[[], tuple[int, dict[str, Any]]]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if time.monotonic() - self.at >= self.ttl_s:
                self.value = compute()
                self.at = time.monotonic()
            return self.value


def router(ray_health: RayHealth) -> APIRouter:
    api = APIRouter(tags=["ops"])
    recent = _Recent()

    @api.get(
        "/status",
        response_model=StatusOut,
        responses={503: {"model": StatusOut, "description": "Ray, Redis or Kafka is down"}},
    )
    def status(ctx: ApiContext = Depends(context)) -> Any:  # noqa: B008
        """Public health check for load balancers: `200` with the version while Ray, Redis and
        Kafka serve, `503` naming the component that does not. It names no tenant; a tenant's
        shards are in `GET /v1/status/tenant`."""
        code, body = recent.get(lambda: read_public(ctx.settings, ctx.store, ctx.admin, ray_health))
        return JSONResponse(body, status_code=code, headers=_NO_CACHE)

    @api.get(
        "/status/tenant",
        response_model=TenantStatusOut,
        responses=auth_errors(
            {**_OTHER_KIND, **RATE_LIMITED, 503: {"description": "Redis is not reachable"}}
        ),
    )
    def tenant_status(
        who: Principal = Depends(tenant_principal),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        """The token's tenant: its shards (`ok`, `starting`, `down`; lag, last checkpoint), its
        topic, its warehouse sink and its model. Any valid token of the tenant, any scope."""
        try:
            topic_exists = ctx.topic_exists(ctx.settings.topic_for(who.tenant_id))
        except KafkaException:  # the broker is down: the public status says so
            topic_exists = True
        try:
            body = read_tenant(ctx.settings, ctx.store, who.tenant_id, topic_exists=topic_exists)
        except RedisError:
            return JSONResponse(_NO_STORE_503, status_code=503, headers=_NO_CACHE)
        return JSONResponse(body, headers=_NO_CACHE)

    @api.get(
        "/status/operator",
        response_model=OperatorStatusOut,
        responses=auth_errors(
            {**_OTHER_KIND, 503: {"description": "Redis failed while it was read"}}
        ),
    )
    def operator_status(
        who: Principal = Depends(operator_principal),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        """Operators (`aurora operators create`): the infrastructure with its errors and every
        tenant's view; `status` is `degraded` when a component or any shard is down (still a
        `200`: Redis down is reported in the body)."""
        try:
            body = read_operator(ctx.settings, ctx.store, ctx.admin, ray_health)
        except RedisError:  # it answered the probe, then failed
            return JSONResponse(_NO_STORE_503, status_code=503, headers=_NO_CACHE)
        return JSONResponse(body, headers=_NO_CACHE)

    return api
