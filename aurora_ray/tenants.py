"""Tenant provisioning and the client-credentials grant."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal

from aurora_ray.adapters.kafka import TopicAdmin
from aurora_ray.adapters.rate_limit import LIMIT_FIELDS
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.auth import (
    ALL_SCOPES,
    OPERATOR_SCOPE,
    AuthError,
    TokenIssuer,
    hash_secret,
    new_client_credentials,
    verify_secret,
)
from aurora_ray.ratelimit import TenantLimits, validate_overrides
from aurora_ray.settings import Settings

__all__ = [
    "NewTenant",
    "Region",
    "Tier",
    "create_operator_client",
    "create_tenant",
    "grant_token",
    "set_tenant_limits",
    "tenant_limits",
]

Region = Literal["eu-central-1", "us-east-1"]
Tier = Literal["standard", "premium"]


@dataclass(frozen=True)
class NewTenant:
    tenant_id: str
    client_id: str
    client_secret: str


def create_tenant(
    settings: Settings,
    store: RedisStore,
    admin: TopicAdmin,
    *,
    name: str,
    region: Region = "eu-central-1",
    tier: Tier = "standard",
) -> NewTenant:
    """Create the tenant record, its topic and its first API client (secret stored hashed)."""
    if not name.strip():
        raise ValueError("the tenant name must not be empty")
    tenant_id = str(uuid.uuid4())
    admin.ensure_topic(
        settings.topic_for(tenant_id),
        settings.partitions_per_topic,
        replication=settings.topic_replication_factor,
    )
    client_id, client_secret = new_client_credentials()
    store.put_client(
        client_id, tenant_id=tenant_id, secret_hash=hash_secret(client_secret), scopes=ALL_SCOPES
    )
    store.put_tenant(
        tenant_id,
        {"name": name, "region": region, "tier": tier, "created_at": time.time()},
    )
    return NewTenant(tenant_id, client_id, client_secret)


def create_operator_client(store: RedisStore) -> tuple[str, str]:
    """An API client bound to no tenant, whose tokens carry only the operator scope: the whole
    status picture (``GET /v1/status/operator``), nothing of any tenant's data. Returns
    ``(client_id, client_secret)``; the secret is shown once and stored hashed."""
    client_id, client_secret = new_client_credentials(prefix="aop")
    store.put_client(
        client_id, tenant_id="", secret_hash=hash_secret(client_secret), scopes=(OPERATOR_SCOPE,)
    )
    return client_id, client_secret


def grant_token(
    store: RedisStore,
    issuer: TokenIssuer,
    *,
    client_id: str,
    client_secret: str,
    scope: str | None,
) -> tuple[str, frozenset[str]]:
    """OAuth2 client-credentials grant: a token with the requested subset of the client's scopes."""
    client = store.get_client(client_id)
    if client is None or not verify_secret(client_secret, client["secret_hash"]):
        raise AuthError("invalid client credentials")
    allowed = frozenset(client["scopes"].split())
    requested = frozenset(scope.split()) if scope else allowed
    if not requested <= allowed:
        raise AuthError(
            f"scope not allowed for this client: {' '.join(sorted(requested - allowed))}",
            status=400,
        )
    tenant_id = client["tenant_id"] or None  # an operator client has none
    token = issuer.issue(tenant_id=tenant_id, client_id=client_id, scopes=requested)
    return token, requested


def fit_demand_calendar(
    settings: Settings, store: RedisStore, tenant_id: str, *, days: int = 91
) -> tuple[tuple[float, ...], int]:
    """Fit the tenant's demand calendar on its last ``days`` of orders in the warehouse
    (``fact_order``), store it with its settings (the shards reload it), and return it with
    the number of order lines it was fitted on."""
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from aurora_ray.domain.calendar import fit_week_profile
    from aurora_ray.warehouse import Warehouse

    start = (datetime.now(UTC) - timedelta(days=days)).date()
    table = Warehouse.from_settings(settings).read(
        "fact_order", tenant_id, start=start, columns=["order_ts", "qty"]
    )
    if table.num_rows == 0:
        raise LookupError(f"no orders of tenant {tenant_id} in the warehouse since {start}")
    ts = table.column("order_ts").cast("int64").to_numpy() / 1e6  # timestamp[us] -> s
    qty = table.column("qty").to_numpy().astype(np.float64)
    profile = fit_week_profile(ts, qty)
    store.put_demand_calendar(tenant_id, profile)
    return profile, table.num_rows


def tenant_limits(settings: Settings, store: RedisStore, tenant_id: str) -> TenantLimits:
    """The tenant's rate limits: the defaults of ``settings`` with its overrides."""
    if store.tenant(tenant_id) is None:
        raise LookupError(f"no tenant {tenant_id!r} (`aurora tenants create` makes one)")
    return TenantLimits.resolve(settings, store.rate_limit_overrides(tenant_id))


def set_tenant_limits(
    settings: Settings,
    store: RedisStore,
    tenant_id: str,
    *,
    requests_per_s: float | None = None,
    events_per_s: float | None = None,
    events_peak_per_s: float | None = None,
    reset: bool = False,
) -> TenantLimits:
    """Override the tenant's rates (``reset``: drop its overrides first, back to the
    defaults), at once on every API replica; returns the limits now in force. ``LookupError``
    for an unknown tenant, ``ValueError`` naming a bad value."""
    if store.tenant(tenant_id) is None:
        raise LookupError(f"no tenant {tenant_id!r} (`aurora tenants create` makes one)")
    changes = validate_overrides(
        {
            "requests_per_s": requests_per_s,
            "events_per_s": events_per_s,
            "events_peak_per_s": events_peak_per_s,
        }
    )
    if not changes and not reset:
        raise ValueError(
            "nothing to set: give --requests-per-s, --events-per-s or --events-peak-per-s "
            "(or --reset for the defaults)"
        )
    overrides = {} if reset else store.rate_limit_overrides(tenant_id)
    overrides.update(changes)
    limits = TenantLimits.resolve(settings, overrides)
    peak = overrides.get("events_peak_per_s")
    if peak is not None and peak < limits.events_per_s:
        raise ValueError(
            f"events_peak_per_s ({peak:g}) must not be below events_per_s ({limits.events_per_s:g})"
        )
    dropped: dict[str, float | None] = dict.fromkeys(LIMIT_FIELDS) if reset else {}
    store.put_rate_limit_overrides(tenant_id, {**dropped, **changes})
    return limits
