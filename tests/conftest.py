"""Shared fixtures. Integration tests share one Ray instance, one Valkey and one broker per
session (starting Ray costs ~10 s here); each test gets its own tenant, so topics and keys never
collide."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aurora_ray.settings import Settings


@dataclass
class Stack:
    settings: Settings
    base_url: str
    data_dir: Path
    dashboard_url: str  # Ray's dashboard: the job submission API (backfill, retrain)
    # The session's Valkey: a fault test restarts it (same port and data), and leaves the one
    # running here for the teardown to stop.
    valkey: Any = None


@dataclass
class TenantClient:
    tenant_id: str
    client_id: str
    client_secret: str
    client: Any  # aurora_ray.client.AuroraClient


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import ray
    from ray import serve

    from aurora_ray import stack as stack_mod
    from aurora_ray.embedded import free_port, start_tansu, start_valkey
    from aurora_ray.naming import NAMESPACE, SUPERVISOR_NAME

    data_dir = tmp_path_factory.mktemp("aurora")
    valkey = start_valkey(data_dir)
    tansu = start_tansu(data_dir)
    settings = stack_mod.resolve_settings(
        Settings(
            data_dir=data_dir,
            warehouse_uri=str(data_dir / "warehouse"),
            redis_url=valkey.url,
            kafka_bootstrap=tansu.url,
            checkpoint_interval_s=1.0,
            checkpoint_events=5_000,
            batch_max_events=2_000,
            # One shard a tenant (the default is 2, ADR-007): the recovery acceptance test kills
            # a tenant's only shard and checks its checkpoint against the tenant's counters.
            shards_per_tenant=1,
            # A limiter call fails open (no RateLimit headers) past this; a loaded CI machine
            # once took over the default 100 ms on a first call. The fail-open tests set theirs.
            rate_limit_timeout_s=2.0,
        )
    )
    dashboard_port = free_port()
    # Its own session directory: Ray's job drivers find "their" cluster through
    # <temp_dir>/ray_current_cluster, which another Ray on this machine (`aurora up`) may own.
    # Short, because Ray's Unix socket paths live under it.
    temp_dir = tempfile.mkdtemp(prefix="aurora-ray-", dir="/tmp")
    ray.init(
        _temp_dir=temp_dir,
        address="local",  # always a fresh local instance, never someone's running cluster
        num_cpus=4,
        include_dashboard=True,  # the job submission API lives in the dashboard
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port,
        namespace=NAMESPACE,
        log_to_driver=False,
        runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}},
    )
    port = free_port()
    session: Stack | None = None
    try:
        stack_mod.deploy(settings.model_copy(update={"http_port": port}), http_port=port)
        session = Stack(
            settings=settings,
            base_url=f"http://127.0.0.1:{port}",
            data_dir=data_dir,
            dashboard_url=f"http://127.0.0.1:{dashboard_port}",
            valkey=valkey,
        )
        yield session
    finally:
        try:
            supervisor = ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE)
            ray.get(supervisor.stop.remote(), timeout=60)
        except Exception:  # noqa: S110 - best effort on teardown
            pass
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        tansu.stop()
        (session.valkey if session is not None else valkey).stop()


def new_tenant(stack: Stack, name: str) -> TenantClient:
    """A tenant on the session stack, with an API client holding its credentials."""
    from aurora_ray.adapters.kafka import TopicAdmin
    from aurora_ray.adapters.redis_store import RedisStore
    from aurora_ray.client import AuroraClient
    from aurora_ray.tenants import create_tenant

    created = create_tenant(
        stack.settings,
        RedisStore(stack.settings.redis_url),
        TopicAdmin(stack.settings.kafka_bootstrap),
        name=name,
    )
    client = AuroraClient(
        stack.base_url, client_id=created.client_id, client_secret=created.client_secret
    )
    return TenantClient(created.tenant_id, created.client_id, created.client_secret, client)


@pytest.fixture
def make_tenant(stack: Stack) -> Iterator[Callable[..., TenantClient]]:
    made: list[TenantClient] = []

    def make(name: str = "test") -> TenantClient:
        tenant = new_tenant(stack, name)
        made.append(tenant)
        return tenant

    yield make
    for tenant in made:
        tenant.client.close()
