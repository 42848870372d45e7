"""The model registry: versions, their metadata and the active version of each tenant, in Redis.

Key layout (``{t}`` is a tenant id):

==================================  =========================================================
``aurora:t:{t}:models``             zset version -> trained_at (ms): every registered version
``aurora:t:{t}:model:{version}``    hash: metadata fields, each JSON
``aurora:t:{t}:model_active``       the active version (missing: the analytic baseline)
``aurora:t:{t}:model_history``      list of earlier active versions, newest first (rollback)
``aurora:t:{t}:model_epoch``        counter bumped by every change of the active version
==================================  =========================================================

The analytic scorer is the implicit baseline version (``settings.model_version``,
``analytic-nb-1``): it has no artifact and is active whenever no learned version is. Shards read
``model_epoch`` before each micro-batch (one GET) and load the active version only when it moved.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import redis

from aurora_ray.adapters.redis_store import RedisStore

__all__ = ["ModelRegistry", "ModelVersion", "RegistryError", "model_status"]

_STATUSES = ("candidate", "active", "retired", "rejected")


class RegistryError(ValueError):
    """A registry operation that cannot be done (unknown version, nothing to roll back to)."""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    trained_at: str  # ISO 8601 UTC
    window_start: str
    window_end: str
    feature_names: list[str]
    metrics: dict[str, Any]  # on the held-out slice
    artifact_uri: str
    sha256: str
    status: str = "candidate"
    baseline: dict[str, Any] = field(default_factory=dict)  # the active one on the same slice
    decision: str = ""  # why it was or was not promoted
    horizon_hours: float = 48.0
    rows: dict[str, int] = field(default_factory=dict)  # train / held-out row counts
    reference: dict[str, Any] = field(default_factory=dict)  # training histograms (drift)
    drift: dict[str, Any] = field(default_factory=dict)  # the latest drift report

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _k(tenant_id: str, *parts: str) -> str:
    return ":".join(("aurora", "t", tenant_id, *parts))


def _decode(raw: dict[bytes, bytes]) -> ModelVersion:
    values = {k.decode(): json.loads(v) for k, v in raw.items()}
    known = ModelVersion.__dataclass_fields__
    return ModelVersion(**{k: v for k, v in values.items() if k in known})


class ModelRegistry:
    """Cheap to construct; uses the store's lazily opened Redis client."""

    def __init__(self, store: RedisStore, *, baseline_version: str) -> None:
        self.store = store
        self.baseline_version = baseline_version

    @property
    def _r(self) -> redis.Redis:
        return self.store.client

    # -- versions ------------------------------------------------------------------------------
    def register(self, tenant_id: str, version: ModelVersion) -> None:
        if version.version == self.baseline_version:
            raise RegistryError(f"{version.version} is the analytic baseline's name")
        if version.status not in _STATUSES:
            raise RegistryError(f"status must be one of {_STATUSES}, got {version.status!r}")
        key = _k(tenant_id, "model", version.version)
        if self._r.exists(key):
            raise RegistryError(f"version {version.version} is already registered")
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(key, mapping={k: json.dumps(v) for k, v in version.to_json().items()})
        pipe.zadd(_k(tenant_id, "models"), {version.version: round(time.time() * 1000)})
        pipe.execute()

    def get(self, tenant_id: str, version: str) -> ModelVersion | None:
        raw = cast(dict[bytes, bytes], self._r.hgetall(_k(tenant_id, "model", version)))
        return _decode(raw) if raw else None

    def versions(self, tenant_id: str) -> list[ModelVersion]:
        """Registered versions, newest first."""
        names = cast(list[bytes], self._r.zrevrange(_k(tenant_id, "models"), 0, -1))
        pipe = self._r.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(_k(tenant_id, "model", name.decode()))
        return [_decode(raw) for raw in pipe.execute() if raw]

    def update(self, tenant_id: str, version: str, **fields: Any) -> None:
        """Replace some metadata fields of a version (status, drift, …)."""
        key = _k(tenant_id, "model", version)
        unknown = set(fields) - set(ModelVersion.__dataclass_fields__)
        if unknown:
            raise RegistryError(f"unknown metadata fields: {sorted(unknown)}")
        if not self._r.exists(key):
            raise RegistryError(f"no version {version} for tenant {tenant_id}")
        self._r.hset(key, mapping={k: json.dumps(v) for k, v in fields.items()})

    # -- the active version --------------------------------------------------------------------
    def epoch(self, tenant_id: str) -> int:
        raw = cast(bytes | None, self._r.get(_k(tenant_id, "model_epoch")))
        return int(raw) if raw else 0

    def active_version(self, tenant_id: str) -> str:
        raw = cast(bytes | None, self._r.get(_k(tenant_id, "model_active")))
        return raw.decode() if raw else self.baseline_version

    def active(self, tenant_id: str) -> ModelVersion | None:
        """The active learned version, or None while the analytic baseline is active."""
        name = self.active_version(tenant_id)
        return None if name == self.baseline_version else self.get(tenant_id, name)

    def promote(self, tenant_id: str, version: str) -> str:
        """Make ``version`` active (forced: no comparison); returns the version it replaced."""
        if version != self.baseline_version and self.get(tenant_id, version) is None:
            raise RegistryError(f"no version {version} for tenant {tenant_id}")
        return self._activate(tenant_id, version, push_history=True)

    def rollback(self, tenant_id: str) -> str:
        """Go back to the version active before the current one; returns it."""
        raw = cast(bytes | None, self._r.lindex(_k(tenant_id, "model_history"), 0))
        if raw is None:
            raise RegistryError(f"tenant {tenant_id} has no earlier active version to roll back to")
        previous = raw.decode()
        self._activate(tenant_id, previous, push_history=False)
        return previous

    def _activate(self, tenant_id: str, version: str, *, push_history: bool) -> str:
        active_key = _k(tenant_id, "model_active")
        history_key = _k(tenant_id, "model_history")
        replaced: list[str] = []

        def change(pipe: redis.client.Pipeline) -> None:
            raw = cast(bytes | None, pipe.get(active_key))
            current = raw.decode() if raw else self.baseline_version
            replaced.append(current)
            pipe.multi()
            if version == self.baseline_version:
                pipe.delete(active_key)
            else:
                pipe.set(active_key, version)
                pipe.hset(_k(tenant_id, "model", version), "status", json.dumps("active"))
            if current != self.baseline_version and current != version:
                pipe.hset(_k(tenant_id, "model", current), "status", json.dumps("retired"))
            if push_history:
                if current != version:
                    pipe.lpush(history_key, current)
                    pipe.ltrim(history_key, 0, 99)
            else:
                pipe.lpop(history_key)
            pipe.incr(_k(tenant_id, "model_epoch"))

        self._r.transaction(change, active_key, history_key)
        return replaced[-1]

    # -- listing -------------------------------------------------------------------------------
    def listing(self, tenant_id: str) -> list[dict[str, Any]]:
        """Every version (newest first) and the analytic baseline last: ``version``, ``active``,
        ``status``, ``metrics``; the baseline's metrics are those measured on the newest
        held-out slice it was compared on."""
        active = self.active_version(tenant_id)
        rows: list[dict[str, Any]] = []
        baseline_metrics: dict[str, Any] = {}
        for v in self.versions(tenant_id):
            rows.append(
                {
                    "version": v.version,
                    "active": v.version == active,
                    "status": "active" if v.version == active else v.status,
                    "trained_at": v.trained_at,
                    "window": [v.window_start, v.window_end],
                    "metrics": v.metrics,
                    "artifact_uri": v.artifact_uri,
                    "sha256": v.sha256,
                    "decision": v.decision,
                }
            )
            if not baseline_metrics and v.baseline.get("version") == self.baseline_version:
                baseline_metrics = dict(v.baseline.get("metrics", {}))
        rows.append(
            {
                "version": self.baseline_version,
                "active": active == self.baseline_version,
                "status": "active" if active == self.baseline_version else "baseline",
                "trained_at": None,
                "window": None,
                "metrics": baseline_metrics,
                "artifact_uri": None,
                "sha256": None,
                "decision": "the analytic scorer (no training)",
            }
        )
        return rows


def model_status(store: RedisStore, settings: Any, tenant_id: str) -> dict[str, Any]:
    """The tenant's active version and its latest drift report (for the status views)."""
    registry = ModelRegistry(store, baseline_version=settings.model_version)
    meta = registry.active(tenant_id)
    drift = meta.drift if meta else {}
    return {
        "active": meta.version if meta else registry.baseline_version,
        "drift": {k: drift.get(k) for k in ("status", "max_psi", "ece", "as_of")}
        if drift
        else None,
    }
