"""What every route needs, built once per replica from settings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

from aurora_ray.adapters.kafka import BatchProducer, TopicAdmin
from aurora_ray.adapters.rate_limit import RateLimitScript
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.auth import TokenIssuer
from aurora_ray.ratelimit import RateLimiter
from aurora_ray.settings import Settings

_TOPIC_CACHE_S = 10.0


@dataclass
class ApiContext:
    settings: Settings
    store: RedisStore
    producer: BatchProducer
    admin: TopicAdmin
    issuer: TokenIssuer
    _topics: dict[str, int] = field(default_factory=dict)
    _topics_at: float = 0.0

    @cached_property
    def limiter(self) -> RateLimiter:
        """The tenants' rate limits (ADR-010), on a Redis connection of their own."""
        script = RateLimitScript(
            self.settings.redis_url, timeout=self.settings.rate_limit_timeout_s
        )
        return RateLimiter(self.settings, script)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiContext:
        return cls(
            settings=settings,
            store=RedisStore(settings.redis_url),
            producer=BatchProducer(settings.kafka_bootstrap),
            admin=TopicAdmin(settings.kafka_bootstrap),
            issuer=TokenIssuer(
                settings.jwt_secret.get_secret_value(),
                issuer=settings.jwt_issuer,
                ttl_s=settings.token_ttl_s,
            ),
        )

    def topic_exists(self, topic: str) -> bool:
        """Cached topic metadata; refreshed on a miss so a new tenant works at once."""
        fresh = time.monotonic() - self._topics_at < _TOPIC_CACHE_S
        if topic in self._topics and fresh:
            return True
        self._topics = self.admin.topics(timeout=5.0)
        self._topics_at = time.monotonic()
        return topic in self._topics
