"""The Serve application: one FastAPI ingress deployment, built per replica from settings.

Deploy with ``serve deploy configs/serve.yaml`` (``import_path: serve.app:build_app``) or, for the
embedded stack, through ``aurora up``.
"""

from __future__ import annotations

from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from actors.supervisor import ensure_supervisor
from aurora_ray.naming import NAMESPACE, SUPERVISOR_NAME
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


@serve.deployment(
    name="AuroraAPI",
    ray_actor_options={"num_cpus": 0},
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
)
@serve.ingress()
class AuroraAPI:
    def __init__(self, settings: Settings) -> None:
        self.ctx = ApiContext.from_settings(settings)
        # `serve deploy configs/serve.yaml` alone must bring up the stream side too.
        ensure_supervisor(settings)
        self.metrics = ApiMetrics()

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self.ctx, ray_health=ray_health, metrics=self.metrics)


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Serve's application builder: ``args`` are settings overrides (see configs/serve.yaml)."""
    overrides = dict(args or {})
    settings = overrides.pop("settings", None)
    if not isinstance(settings, Settings):
        settings = load_settings(**overrides)
    return AuroraAPI.bind(settings)  # type: ignore[attr-defined,no-any-return]
