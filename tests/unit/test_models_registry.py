"""Registry rules against a real Valkey server (started for this module, 127.0.0.1 only)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.models.registry import ModelRegistry, ModelVersion, RegistryError

pytestmark = pytest.mark.unit
BASELINE = "analytic-nb-1"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisStore]:
    from aurora_ray.embedded import start_valkey

    server = start_valkey(Path(tmp_path_factory.mktemp("valkey")))
    try:
        yield RedisStore(server.url)
    finally:
        server.stop()


def _version(name: str, brier: float = 0.1) -> ModelVersion:
    return ModelVersion(
        version=name,
        trained_at="2025-06-02T08:00:00Z",
        window_start="2025-05-01T00:00:00Z",
        window_end="2025-06-01T00:00:00Z",
        feature_names=["a", "b"],
        metrics={"brier": brier},
        artifact_uri=f"/models/{name}/model.ubj",
        sha256="0" * 64,
        baseline={"version": BASELINE, "metrics": {"brier": 0.2}},
    )


def test_the_baseline_is_active_until_a_version_is_promoted(store: RedisStore) -> None:
    registry = ModelRegistry(store, baseline_version=BASELINE)
    tenant = str(uuid.uuid4())
    assert registry.active_version(tenant) == BASELINE and registry.active(tenant) is None
    registry.register(tenant, _version("v1"))
    assert registry.active_version(tenant) == BASELINE  # registered is not active
    listing = registry.listing(tenant)
    assert [(r["version"], r["active"]) for r in listing] == [("v1", False), (BASELINE, True)]
    assert listing[1]["metrics"] == {"brier": 0.2}  # measured on v1's held-out slice
    json.dumps(listing)  # list --json prints it


def test_promote_and_rollback_walk_the_history(store: RedisStore) -> None:
    registry = ModelRegistry(store, baseline_version=BASELINE)
    tenant = str(uuid.uuid4())
    for name in ("v1", "v2"):
        registry.register(tenant, _version(name))
    epoch = registry.epoch(tenant)
    assert registry.promote(tenant, "v1") == BASELINE
    assert registry.promote(tenant, "v2") == "v1"
    assert registry.epoch(tenant) == epoch + 2
    active = registry.active(tenant)
    assert active is not None and active.version == "v2" and active.status == "active"
    retired = registry.get(tenant, "v1")
    assert retired is not None and retired.status == "retired"
    assert registry.rollback(tenant) == "v1"
    assert registry.active_version(tenant) == "v1"
    assert registry.rollback(tenant) == BASELINE
    assert registry.active(tenant) is None
    with pytest.raises(RegistryError, match="no earlier active version"):
        registry.rollback(tenant)
    assert registry.epoch(tenant) == epoch + 4


def test_unknown_and_duplicate_versions_are_refused(store: RedisStore) -> None:
    registry = ModelRegistry(store, baseline_version=BASELINE)
    tenant = str(uuid.uuid4())
    with pytest.raises(RegistryError, match="no version nope"):
        registry.promote(tenant, "nope")
    registry.register(tenant, _version("v1"))
    with pytest.raises(RegistryError, match="already registered"):
        registry.register(tenant, _version("v1"))
    with pytest.raises(RegistryError, match="baseline"):
        registry.register(tenant, _version(BASELINE))
    registry.update(tenant, "v1", drift={"max_psi": 0.3})
    got = registry.get(tenant, "v1")
    assert got is not None and got.drift == {"max_psi": 0.3}
