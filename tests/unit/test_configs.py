"""The shipped configuration files: configs/serve.yaml is a valid Serve deploy config,
cluster.yaml a valid cluster-launcher config, and configs/aurora.yaml loads into Settings with the
documented defaults (which AURORA_* environment variables override)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVE_YAML = ROOT / "configs" / "serve.yaml"
AURORA_YAML = ROOT / "configs" / "aurora.yaml"
CLUSTER_YAML = ROOT / "cluster.yaml"


def _load(path: Path) -> Any:
    with path.open() as handle:
        return yaml.safe_load(handle)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No AURORA_* variable of the calling shell leaks into the settings under test."""
    for name in list(os.environ):
        if name.startswith("AURORA_"):
            monkeypatch.delenv(name)
    return monkeypatch


# -- configs/serve.yaml ----------------------------------------------------------------------------
def test_serve_yaml_validates_against_rays_deploy_schema() -> None:
    from ray.serve.schema import ServeDeploySchema

    raw = _load(SERVE_YAML)
    schema = ServeDeploySchema.model_validate(raw)
    assert [app.name for app in schema.applications] == ["aurora", "aurora-ingest"]
    api, ingest = schema.applications
    assert (api.import_path, api.route_prefix) == ("serve.app:build_app", "/")
    assert (ingest.import_path, ingest.route_prefix) == (
        "serve.app:build_ingest_app",
        "/v1/ingest",
    )
    assert api.args == ingest.args, "both applications must run with the same settings"
    deployments = [d for app in schema.applications for d in app.deployments]
    assert len(deployments) == 2, "an application lists no deployments"
    for deployment in deployments:
        config = deployment.autoscaling_config
        assert isinstance(config, dict), f"{deployment.name} has no autoscaling_config"
        for key in ("min_replicas", "max_replicas", "target_ongoing_requests"):
            assert key in config, f"{deployment.name}.autoscaling_config lacks {key}"
        assert 1 <= config["min_replicas"] <= config["max_replicas"]
        assert config["target_ongoing_requests"] > 0


def test_serve_yaml_deployments_exist_in_the_app_and_args_are_settings() -> None:
    """The names under `deployments:` must match the code's deployments (Serve would refuse
    otherwise), and `args` must be Settings fields (build_app passes them to load_settings)."""
    from aurora_ray.settings import Settings
    from serve.app import build_app, build_ingest_app

    api, ingest = _load(SERVE_YAML)["applications"]
    for app, builder in ((api, build_app), (ingest, build_ingest_app)):
        names = {d["name"] for d in app["deployments"]}
        built = builder({"settings": Settings()})
        assert names == {built._bound_deployment.name}  # noqa: SLF001
        unknown = set(app.get("args", {})) - set(Settings.model_fields)
        assert not unknown, f"args that are not settings: {sorted(unknown)}"


def test_serve_queues_are_bounded_alike_in_the_app_and_serve_yaml() -> None:
    """Overload is refused fast (503 with Retry-After, which clients retry) instead of queued
    without bound, the same whether deployed by `aurora up` (serve/app.py) or `serve deploy`."""
    from aurora_ray.settings import Settings
    from serve.app import build_app, build_ingest_app

    api, ingest = _load(SERVE_YAML)["applications"]
    for app, builder in ((api, build_app), (ingest, build_ingest_app)):
        (yaml_deployment,) = app["deployments"]
        deployment = builder({"settings": Settings()})._bound_deployment  # noqa: SLF001
        assert 0 < deployment.max_queued_requests == yaml_deployment["max_queued_requests"]
        backpressure = deployment._deployment_config.backpressure_config  # noqa: SLF001
        assert yaml_deployment["backpressure_config"] == {
            "status_code": backpressure.status_code,
            "retry_after_s": backpressure.retry_after_s,
        }
        assert backpressure.status_code == 503 and backpressure.retry_after_s >= 1


# -- cluster.yaml ----------------------------------------------------------------------------------
def test_cluster_yaml_validates_against_the_cluster_launcher_schema() -> None:
    import jsonschema
    import ray

    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    schema = json.loads(schema_path.read_text())
    config = _load(CLUSTER_YAML)
    jsonschema.validate(config, schema)

    node_types = config["available_node_types"]
    assert config["head_node_type"] in node_types
    workers = [name for name in node_types if name != config["head_node_type"]]
    assert workers, "no worker node type"
    for name in workers:
        node = node_types[name]
        assert node["max_workers"] >= node.get("min_workers", 0)
    assert config["max_workers"] >= sum(node_types[n].get("min_workers", 0) for n in workers)


# -- configs/aurora.yaml and Settings --------------------------------------------------------
def test_aurora_yaml_loads_with_the_documented_defaults(clean_env: pytest.MonkeyPatch) -> None:
    from aurora_ray.settings import Settings

    clean_env.setenv("AURORA_CONFIG", str(AURORA_YAML))
    settings = Settings()
    assert settings.env == "development"
    assert settings.horizon_hours == 48
    assert settings.horizon_s == 48 * 3600
    assert settings.default_threshold == 0.7
    assert settings.dedup_window_hours == 24
    assert settings.dedup_window_s == 24 * 3600
    assert settings.partitions_per_topic == 4
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.shards_per_tenant == 2
    assert settings.stream_nice == 19
    assert settings.rate_limit_enabled is True
    assert settings.rate_limit_requests_per_s == 15_000  # the API reference
    assert (settings.rate_limit_events_per_s, settings.rate_limit_events_peak_per_s) == (
        30_000,
        45_000,
    )  # the PRD: 30 K/s sustained, bursts to 45 K/s for under 5 min
    assert settings.rate_limit_events_peak_s == 300
    assert settings.topic_for("t1") == "t1-orders"


def test_every_key_of_aurora_yaml_is_a_setting() -> None:
    """Settings ignore unknown keys (extra="ignore"), so a typo in the file would pass silently."""
    from aurora_ray.settings import Settings

    unknown = set(_load(AURORA_YAML)) - set(Settings.model_fields)
    assert not unknown, f"keys of configs/aurora.yaml that are not settings: {sorted(unknown)}"


def test_yaml_values_are_read_from_the_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from aurora_ray.settings import Settings

    config = tmp_path / "aurora.yaml"
    config.write_text("horizon_hours: 12\ndefault_threshold: 0.5\npartitions_per_topic: 8\n")
    clean_env.setenv("AURORA_CONFIG", str(config))
    settings = Settings()
    assert (settings.horizon_hours, settings.default_threshold, settings.partitions_per_topic) == (
        12,
        0.5,
        8,
    )
    assert settings.dedup_window_hours == 24  # not in the file: the code default


def test_environment_overrides_the_yaml(clean_env: pytest.MonkeyPatch) -> None:
    from aurora_ray.settings import Settings, load_settings

    clean_env.setenv("AURORA_CONFIG", str(AURORA_YAML))
    clean_env.setenv("AURORA_HORIZON_HOURS", "24")
    clean_env.setenv("AURORA_DEFAULT_THRESHOLD", "0.85")
    clean_env.setenv("AURORA_PARTITIONS_PER_TOPIC", "8")
    clean_env.setenv("AURORA_MAX_BODY_BYTES", "1024")
    clean_env.setenv("AURORA_REDIS_URL", "redis://127.0.0.1:1/0")
    settings = Settings()
    assert settings.horizon_hours == 24
    assert settings.default_threshold == 0.85
    assert settings.partitions_per_topic == 8
    assert settings.max_body_bytes == 1024
    assert settings.redis_url == "redis://127.0.0.1:1/0"
    assert settings.dedup_window_hours == 24  # untouched keys still come from the file
    # Keyword arguments beat the environment.
    assert load_settings(horizon_hours=6).horizon_hours == 6


def test_invalid_values_are_refused(clean_env: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from aurora_ray.settings import Settings

    clean_env.setenv("AURORA_CONFIG", str(AURORA_YAML))
    clean_env.setenv("AURORA_DEFAULT_THRESHOLD", "1.5")
    with pytest.raises(ValidationError, match="default_threshold"):
        Settings()


def test_production_without_a_jwt_secret_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    from aurora_ray.settings import Settings

    clean_env.setenv("AURORA_CONFIG", str(AURORA_YAML))
    clean_env.setenv("AURORA_ENV", "production")
    clean_env.setenv("AURORA_REDIS_URL", "redis://127.0.0.1:6379/0")
    clean_env.setenv("AURORA_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    with pytest.raises(ValueError, match="AURORA_JWT_SECRET"):
        Settings()
    clean_env.setenv("AURORA_JWT_SECRET", "change-me")  # a placeholder is no better
    with pytest.raises(ValueError, match="AURORA_JWT_SECRET"):
        Settings()
    clean_env.setenv("AURORA_JWT_SECRET", "x" * 48)
    assert Settings().env == "production"


def test_production_without_redis_or_kafka_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    from aurora_ray.settings import Settings

    clean_env.setenv("AURORA_CONFIG", str(AURORA_YAML))
    clean_env.setenv("AURORA_ENV", "production")
    clean_env.setenv("AURORA_JWT_SECRET", "x" * 48)
    with pytest.raises(ValueError, match="AURORA_REDIS_URL"):
        Settings()


def test_settings_are_frozen(clean_env: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from aurora_ray.settings import Settings

    clean_env.setenv("AURORA_CONFIG", str(AURORA_YAML))
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.horizon_hours = 1  # type: ignore[misc]
