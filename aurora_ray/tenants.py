"""Tenant provisioning and the client-credentials grant."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal

from aurora_ray.adapters.kafka import TopicAdmin
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.auth import (
    ALL_SCOPES,
    AuthError,
    TokenIssuer,
    hash_secret,
    new_client_credentials,
    verify_secret,
)
from aurora_ray.settings import Settings

__all__ = ["NewTenant", "Region", "Tier", "create_tenant", "grant_token"]

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
    token = issuer.issue(tenant_id=client["tenant_id"], client_id=client_id, scopes=requested)
    return token, requested
