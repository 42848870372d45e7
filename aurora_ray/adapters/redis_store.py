"""Redis (Valkey) adapter: the read model, tenant settings, clients, checkpoints and health.

Key layout (``{t}`` is a tenant id):

=================================  ==========================================================
``aurora:tenants``                 hash tenant_id -> tenant JSON
``aurora:client:{client_id}``      hash: tenant_id, secret_hash, scopes
``aurora:t:{t}:settings``          hash, the ``tenant_settings`` table: ``default`` and
                                   ``sku:<sku>`` or ``sku:<sku>@<warehouse>`` thresholds,
                                   ``calendar`` (JSON, 168 hour-of-week demand shares),
                                   ``service_level``, ``lead_time_hours``,
                                   ``review_period_hours`` and ``service:<sku>`` or
                                   ``service:<sku>@<warehouse>`` service levels
``aurora:t:{t}:settings_version`` counter bumped by every settings change
``aurora:t:{t}:alerts``            zset, member = alert JSON, score = created_at (ms)
``aurora:t:{t}:alerts:sku:{sku}``  zset, the same members for one SKU
``aurora:t:{t}:dedup:{shard}``     hash sku@warehouse -> event time (s) of the last alert
``aurora:t:{t}:deadletter``        list of JSON entries, newest first: a topic record that could
                                   not be decoded or folded, with its reason
``aurora:t:{t}:pred:{sku}``        hash warehouse -> latest prediction JSON
``aurora:t:{t}:skus``              zset (all scores 0, so ordered by name) of SKUs with
                                   predictions
``aurora:t:{t}:order_by``          zset, member = ``sku@warehouse``, score = its recommendation's
                                   order_by (epoch ms; ``inf``: nothing to plan): the due index
``aurora:t:{t}:ckpt:{shard}``      hash: state (bytes), offsets (JSON), at, events
``aurora:t:{t}:seen:{partition}``  string: the partition's applied event ids (16-byte entries,
                                   ``aurora_ray.domain.idempotency``), written with checkpoints
``aurora:t:{t}:idem:{key hash}``   hash: an ``Idempotency-Key``'s request fingerprint and answer
``aurora:t:{t}:shard:{shard}``     hash: shard health (heartbeat, started_at, lag, last checkpoint)
``aurora:t:{t}:counters``          hash of event counters
``aurora:t:{t}:limits``            hash: the tenant's rate-limit overrides (``requests_per_s``,
                                   ``events_per_s``, ``events_peak_per_s``)
``aurora:t:{t}:ratelimit``         hash: its token buckets' levels and times (expires when
                                   full; :mod:`aurora_ray.adapters.rate_limit`)
=================================  ==========================================================

Alert members start with their ``alert_id`` so that Redis' lexicographic order of equal scores is
the order of alert ids, which the pagination cursor relies on.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import redis
import redis.asyncio
from redis.commands.core import Script

from aurora_ray.adapters.keys import tenant_key
from aurora_ray.adapters.rate_limit import LIMIT_FIELDS, limits_key
from aurora_ray.adapters.resp import RespClient
from aurora_ray.adapters.resp import supports as resp_supports
from aurora_ray.domain.alerts import AlertRecord

__all__ = [
    "AlertPage",
    "Checkpoint",
    "RedisStore",
    "Replenishment",
    "dead_letter_entry",
    "tenant_key",
]

_ALERT_FETCH_CHUNK = 500
_ALERT_SCAN_LIMIT = 20_000  # bound on members scanned for one filtered page
_DUE_FETCH_CHUNK = 2_000  # due-index members a ZRANGE (and their records a pipeline)

# A micro-batch's predictions in one command instead of one HSET each (the client-side cost of
# a command dominated the shard loop): KEYS = the skus zset, then one pred hash per row;
# ARGV = sku, warehouse, JSON per row. Run inside the batch's MULTI, so still atomic.
_WRITE_PREDICTIONS = """
local skus = {}
for i = 2, #KEYS do
  local a = 3 * (i - 2)
  redis.call('HSET', KEYS[i], ARGV[a + 2], ARGV[a + 3])
  skus[#skus + 1] = 0
  skus[#skus + 1] = ARGV[a + 1]
  if #skus >= 4000 then
    redis.call('ZADD', KEYS[1], unpack(skus))
    skus = {}
  end
end
if #skus > 0 then
  redis.call('ZADD', KEYS[1], unpack(skus))
end
return #KEYS - 1
"""
# A micro-batch's alerts in one command instead of two ZADDs each: KEYS = the tenant's alerts
# zset, the shard's dedup hash, then the SKUs' alerts zsets; ARGV = per alert: the index of its
# SKU's key, score, member, dedup field, dedup value. Inside the batch's MULTI, so still atomic.
_WRITE_ALERTS = """
local all, dedup = {}, {}
for a = 1, #ARGV, 5 do
  redis.call('ZADD', KEYS[tonumber(ARGV[a])], ARGV[a + 1], ARGV[a + 2])
  all[#all + 1] = ARGV[a + 1]
  all[#all + 1] = ARGV[a + 2]
  dedup[#dedup + 1] = ARGV[a + 3]
  dedup[#dedup + 1] = ARGV[a + 4]
  if #all >= 4000 then
    redis.call('ZADD', KEYS[1], unpack(all))
    redis.call('HSET', KEYS[2], unpack(dedup))
    all, dedup = {}, {}
  end
end
if #all > 0 then
  redis.call('ZADD', KEYS[1], unpack(all))
  redis.call('HSET', KEYS[2], unpack(dedup))
end
return #ARGV / 5
"""
# Prediction JSON: msgspec is ~10x faster than json.dumps; readers parse it with json.loads and
# get the same values (only the spelling of small floats differs: 6e-6 for 6e-06).
_encode_json = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder().decode  # ~8x faster than json.loads on the read path


@dataclass(frozen=True)
class Checkpoint:
    state: bytes
    offsets: dict[int, int]  # partition -> next offset to read
    at: float
    events: int


@dataclass(frozen=True)
class Replenishment:
    """A tenant's replenishment settings (None: the deployment's default)."""

    service_level: float | None = None
    lead_time_hours: float | None = None
    review_period_hours: float | None = None
    skus: dict[str, float] = field(default_factory=dict)  # per-SKU service levels


#: tenant_settings fields of :class:`Replenishment` (the per-SKU levels: ``service:<key>``).
REPLENISHMENT_FIELDS = ("service_level", "lead_time_hours", "review_period_hours")


@dataclass(frozen=True)
class AlertPage:
    alerts: list[dict[str, Any]]
    next_cursor: str | None


def dead_letter_entry(reason: str, record: bytes, **where: Any) -> bytes:
    """A dead-letter entry: why, where from (partition, offset…) and the record as text."""
    entry = {"reason": reason, **where, "record": record.decode("utf-8", "replace")}
    return _encode_json(entry)


def _push_dead_letters(pipe: Any, tenant_id: str, records: list[bytes], keep: int = 10_000) -> None:
    """The tenant's dead-letter list, newest first, trimmed to its newest ``keep``."""
    key = tenant_key(tenant_id, "deadletter")
    pipe.lpush(key, *records)
    pipe.ltrim(key, 0, keep - 1)


def _zadd_chunks(pipe: Any, key: str, scores: Mapping[str, float], chunk: int = 5000) -> None:
    """``ZADD`` of many members, a few thousand a command."""
    items = list(scores.items())
    for start in range(0, len(items), chunk):
        pipe.zadd(key, dict(items[start : start + chunk]))


def alert_member(alert: Mapping[str, Any]) -> str:
    """Serialise an alert with ``alert_id`` first (see the module docstring)."""
    ordered = {"alert_id": alert["alert_id"], **{k: v for k, v in alert.items() if k != "alert_id"}}
    return _encode_json(ordered).decode()


class _AlertScan:
    """One page of alerts, newest first, read in chunks of the tenant's (or SKU's) sorted set
    and filtered here; the same steps for the blocking and the asyncio client."""

    def __init__(
        self,
        tenant_id: str,
        sku: str | None,
        warehouse: str | None,
        since_ms: float | None,
        min_probability: float | None,
        limit: int,
        cursor: str | None,
    ) -> None:
        self.key = (
            tenant_key(tenant_id, "alerts", "sku", sku) if sku else tenant_key(tenant_id, "alerts")
        )
        self.low = "-inf" if since_ms is None else repr(float(since_ms))
        self.high = "+inf"
        self.after: tuple[float, str] | None = None
        if cursor:
            score_text, _, after_id = cursor.partition(":")
            self.after = (float(score_text), after_id)
            self.high = repr(self.after[0])
        self.warehouse, self.min_probability, self.limit = warehouse, min_probability, limit
        # Unfiltered, a page needs its own alerts and one more (is there a next page?), plus the
        # few a cursor skips at its own score: fetch no more than that from Redis.
        filtered = warehouse is not None or min_probability is not None
        self.fetch = _ALERT_FETCH_CHUNK if filtered else min(_ALERT_FETCH_CHUNK, limit + 8)
        self.out: list[dict[str, Any]] = []
        self.offset = self.scanned = 0
        self.last_seen: tuple[float, str] | None = None
        self.exhausted = False

    def wants_more(self) -> bool:
        return (
            not self.exhausted and len(self.out) <= self.limit and self.scanned < _ALERT_SCAN_LIMIT
        )

    def request(self) -> tuple[str, str, str, int, int]:
        """``ZREVRANGEBYSCORE`` arguments: key, max, min, start, num."""
        return self.key, self.high, self.low, self.offset, self.fetch

    def feed(self, chunk: Any) -> None:
        members = cast(list[tuple[bytes, float]], chunk)
        if not members:
            self.exhausted = True
            return
        self.offset += len(members)
        self.scanned += len(members)
        after, out = self.after, self.out
        for member, score in members:
            alert = _decode_json(member)
            self.last_seen = (score, alert["alert_id"])
            if after and score == after[0] and alert["alert_id"] >= after[1]:
                continue
            if self.warehouse and alert["warehouse"] != self.warehouse:
                continue
            if self.min_probability is not None and alert["probability"] < self.min_probability:
                continue
            alert["_score"] = score
            out.append(alert)
            if len(out) > self.limit:
                break

    def page(self) -> AlertPage:
        out, limit = self.out, self.limit
        next_cursor = None
        if len(out) > limit:
            last = out[limit - 1]
            next_cursor = f"{last['_score']!r}:{last['alert_id']}"
            out = out[:limit]
        elif (
            not self.exhausted and self.last_seen is not None and self.scanned >= _ALERT_SCAN_LIMIT
        ):
            # The scan bound was reached before the page filled: let the client go on from
            # the last alert looked at (the page may be short, even empty).
            next_cursor = f"{self.last_seen[0]!r}:{self.last_seen[1]}"
        for alert in out:
            alert.pop("_score", None)
        return AlertPage(out, next_cursor)


class _DueScan:
    """One page of the due index (``aurora:t:{t}:order_by``), read by rank in chunks; the
    records themselves are fetched for the members the index keeps (see ``due_rows``)."""

    def __init__(
        self,
        tenant_id: str,
        warehouse: str | None,
        max_ms: float,
        limit: int,
        after: tuple[float, str] | None,
    ) -> None:
        self.warehouse, self.max_ms, self.limit, self.after = warehouse, max_ms, limit, after
        self.rank = 0
        # Past the cursor's member by its rank when it is where the cursor saw it; else from the
        # first member at the cursor's score, skipping those up to the cursor's (equal scores
        # sort by member).
        self.skip: tuple[float, str] | None = None
        self.scan_limit = max(_ALERT_SCAN_LIMIT, 2 * limit)
        # Unfiltered, a page needs its rows and one more (is there a next page?).
        self.chunk = _DUE_FETCH_CHUNK if warehouse else min(_DUE_FETCH_CHUNK, limit + 1)
        self.out: list[tuple[float, str, dict[str, Any]]] = []
        self.scanned = 0
        self.last_seen: tuple[float, str] | None = None
        self.exhausted = False

    def start(self, score: float | None, rank: int | None, below: int) -> None:
        assert self.after is not None  # noqa: S101 - only with a cursor
        if score is not None and rank is not None and float(score) == self.after[0]:
            self.rank = int(rank) + 1
        else:
            self.rank, self.skip = int(below), self.after

    def wants_more(self) -> bool:
        return not self.exhausted and len(self.out) <= self.limit and self.scanned < self.scan_limit

    def feed(self, members: list[tuple[bytes, float]]) -> list[tuple[float, str]]:
        """A chunk of the index; returns the members whose records are to be read."""
        if not members:
            self.exhausted = True
            return []
        self.rank += len(members)
        self.scanned += len(members)
        candidates: list[tuple[float, str]] = []
        for raw, score in members:
            if score > self.max_ms:
                self.exhausted = True
                break
            member = raw.decode()
            self.last_seen = (score, member)
            if self.skip is not None and (score, member) <= self.skip:
                continue
            if self.warehouse and member.rsplit("@", 1)[1] != self.warehouse:
                continue
            candidates.append((score, member))
        self.chunk = _DUE_FETCH_CHUNK  # a page that needs more than its first chunk is filtered
        return candidates

    def take(self, score: float, member: str, record: dict[str, Any]) -> None:
        self.out.append((score, member, record))

    def page(self) -> tuple[list[dict[str, Any]], tuple[float, str] | None]:
        out, limit = self.out, self.limit
        if len(out) > limit:
            last = out[limit - 1]
            return [row[2] for row in out[:limit]], (last[0], last[1])
        more = not self.exhausted and self.scanned >= self.scan_limit
        return [row[2] for row in out], self.last_seen if more else None


class RedisStore:
    """All Redis access of Aurora. Cheap to construct; connects on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: redis.Redis | None = None
        self._aclient: redis.asyncio.Redis | None = None
        self._resp: RespClient | None = None
        self._write_predictions: Script | None = None
        self._write_alerts: Script | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.url, socket_timeout=10)
        return self._client

    @property
    def aclient(self) -> redis.asyncio.Redis:
        """An asyncio client, for use on one event loop (the API replica's)."""
        if self._aclient is None:
            self._aclient = redis.asyncio.Redis.from_url(self.url, socket_timeout=10)
        return self._aclient

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "_client": None, "_aclient": None, "_resp": None}

    async def _zrevrangebyscore(
        self, key: str, high: str, low: str, start: int, num: int
    ) -> list[tuple[bytes, float]]:
        """``ZREVRANGEBYSCORE … WITHSCORES LIMIT`` on the event loop, through the lean client
        (:mod:`aurora_ray.adapters.resp`) where the URL allows it."""
        if self._resp is None and resp_supports(self.url):
            self._resp = RespClient(self.url, timeout=10)
        if self._resp is None:
            pairs = await self.aclient.zrevrangebyscore(key, high, low, start, num, withscores=True)
            return cast(list[tuple[bytes, float]], pairs)
        flat = await self._resp.call(
            "ZREVRANGEBYSCORE", key, high, low, "WITHSCORES", "LIMIT", start, num
        )
        return list(zip(flat[::2], map(float, flat[1::2]), strict=True))

    async def acall(self, *args: Any) -> Any:
        """One command on the event loop: the lean client where the URL allows it, else
        redis-py's asyncio client."""
        if self._resp is None and resp_supports(self.url):
            self._resp = RespClient(self.url, timeout=10)
        if self._resp is None:
            return await self.aclient.execute_command(*args)  # type: ignore[no-untyped-call]
        return await self._resp.call(*args)

    def ping(self, timeout: float | None = None) -> bool:
        """``PING``; with ``timeout``, on a connection of its own bounded by it (a health probe
        must not wait out the store's 10 s socket timeout)."""
        if timeout is None:
            return bool(self.client.ping())
        probe = redis.Redis.from_url(
            self.url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        try:
            return bool(probe.ping())
        finally:
            probe.close()

    # -- tenants and clients -------------------------------------------------------------------
    def put_tenant(self, tenant_id: str, record: Mapping[str, Any]) -> None:
        self.client.hset("aurora:tenants", tenant_id, json.dumps(dict(record)))

    def tenants(self) -> dict[str, dict[str, Any]]:
        raw = cast(dict[bytes, bytes], self.client.hgetall("aurora:tenants"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def tenant(self, tenant_id: str) -> dict[str, Any] | None:
        raw = cast(bytes | None, self.client.hget("aurora:tenants", tenant_id))
        return json.loads(raw) if raw else None

    def put_client(
        self, client_id: str, *, tenant_id: str, secret_hash: str, scopes: Iterable[str]
    ) -> None:
        self.client.hset(
            f"aurora:client:{client_id}",
            mapping={
                "tenant_id": tenant_id,
                "secret_hash": secret_hash,
                "scopes": " ".join(scopes),
            },
        )

    def get_client(self, client_id: str) -> dict[str, str] | None:
        raw = cast(dict[bytes, bytes], self.client.hgetall(f"aurora:client:{client_id}"))
        return {k.decode(): v.decode() for k, v in raw.items()} if raw else None

    # -- tenant_settings -----------------------------------------------------------------------
    def thresholds(self, tenant_id: str) -> tuple[float | None, dict[str, float]]:
        raw = cast(dict[bytes, bytes], self.client.hgetall(tenant_key(tenant_id, "settings")))
        default: float | None = None
        per_sku: dict[str, float] = {}
        for raw_name, value in raw.items():
            name = raw_name.decode()
            if name == "default":
                default = float(value)
            elif name.startswith("sku:"):
                per_sku[name[4:]] = float(value)
        return default, per_sku

    def put_thresholds(
        self,
        tenant_id: str,
        *,
        default: float | None,
        per_sku: Mapping[str, float | None],
    ) -> None:
        """Set the default and per-SKU thresholds; a ``None`` per-SKU value removes the override."""
        key = tenant_key(tenant_id, "settings")
        pipe = self.client.pipeline(transaction=True)
        if default is not None:
            pipe.hset(key, "default", repr(default))
        for sku, value in per_sku.items():
            if value is None:
                pipe.hdel(key, f"sku:{sku}")
            else:
                pipe.hset(key, f"sku:{sku}", repr(value))
        pipe.incr(tenant_key(tenant_id, "settings_version"))
        pipe.execute()

    def replenishment(self, tenant_id: str) -> Replenishment:
        raw = cast(dict[bytes, bytes], self.client.hgetall(tenant_key(tenant_id, "settings")))
        values: dict[str, float] = {}
        per_sku: dict[str, float] = {}
        for raw_name, value in raw.items():
            name = raw_name.decode()
            if name in REPLENISHMENT_FIELDS:
                values[name] = float(value)
            elif name.startswith("service:"):
                per_sku[name[8:]] = float(value)
        return Replenishment(**values, skus=per_sku)

    def put_replenishment(
        self,
        tenant_id: str,
        *,
        values: Mapping[str, float | None],
        per_sku: Mapping[str, float | None],
    ) -> None:
        """Set the tenant's :data:`REPLENISHMENT_FIELDS` given in ``values`` (None: left as it
        is) and per-SKU service levels (None removes one), in one transaction with the settings
        version, so shards reload them from their next micro-batch."""
        unknown = set(values) - set(REPLENISHMENT_FIELDS)
        if unknown:
            raise ValueError(f"unknown replenishment fields: {sorted(unknown)}")
        key = tenant_key(tenant_id, "settings")
        pipe = self.client.pipeline(transaction=True)
        for name, value in values.items():
            if value is not None:
                pipe.hset(key, name, repr(float(value)))
        for sku, level in per_sku.items():
            if level is None:
                pipe.hdel(key, f"service:{sku}")
            else:
                pipe.hset(key, f"service:{sku}", repr(float(level)))
        pipe.incr(tenant_key(tenant_id, "settings_version"))
        pipe.execute()

    def demand_calendar(self, tenant_id: str) -> tuple[float, ...] | None:
        """The tenant's demand calendar (168 hour-of-week shares), or None for a flat week."""
        raw = cast(bytes | None, self.client.hget(tenant_key(tenant_id, "settings"), "calendar"))
        return tuple(float(v) for v in json.loads(raw)) if raw else None

    def put_demand_calendar(self, tenant_id: str, profile: Iterable[float] | None) -> None:
        """Store (or, with None, remove) the demand calendar; shards reload it on change."""
        key = tenant_key(tenant_id, "settings")
        pipe = self.client.pipeline(transaction=True)
        if profile is None:
            pipe.hdel(key, "calendar")
        else:
            pipe.hset(key, "calendar", json.dumps([float(v) for v in profile]))
        pipe.incr(tenant_key(tenant_id, "settings_version"))
        pipe.execute()

    def settings_version(self, tenant_id: str) -> int:
        """Bumped by every change of tenant_settings, so shards reload only on change."""
        raw = cast(bytes | None, self.client.get(tenant_key(tenant_id, "settings_version")))
        return int(raw) if raw else 0

    # -- stream outputs ------------------------------------------------------------------------
    def write_outputs(
        self,
        tenant_id: str,
        *,
        shard: int,
        predictions: Mapping[str, Mapping[str, Any]],
        alerts: list[AlertRecord],
        counters: Mapping[str, int] | None = None,
        dead_letters: list[bytes] | None = None,
        order_by_ms: Mapping[str, float] | None = None,
    ) -> None:
        """Write a micro-batch's predictions, alerts (with their dedup marks), counters and
        dead letters (:func:`dead_letter_entry`) atomically: a batch replayed after a failed
        write dead-letters its records once. ``order_by_ms`` (``sku@warehouse`` -> epoch ms,
        inf: nothing to plan) moves rows in the due index, the order of
        ``GET /v1/stock/recommendations``."""
        pipe = self.client.pipeline(transaction=True)
        if predictions:
            prefix = tenant_key(tenant_id, "pred", "")
            keys: list[str] = [tenant_key(tenant_id, "skus")]
            args: list[str | bytes] = []
            for key, prediction in predictions.items():
                sku, warehouse = key.rsplit("@", 1)
                keys.append(prefix + sku)
                args += (sku, warehouse, _encode_json(prediction))
            if self._write_predictions is None:
                self._write_predictions = self.client.register_script(_WRITE_PREDICTIONS)
            self._write_predictions(keys=keys, args=args, client=pipe)
        if alerts:
            alert_keys = [
                tenant_key(tenant_id, "alerts"),
                tenant_key(tenant_id, "dedup", str(shard)),
            ]
            index: dict[str, int] = {}
            alert_args: list[int | str | bytes] = []
            for alert in alerts:
                position = index.get(alert.sku)
                if position is None:
                    alert_keys.append(tenant_key(tenant_id, "alerts", "sku", alert.sku))
                    position = index[alert.sku] = len(alert_keys)
                alert_args += (
                    position,
                    round(alert.created_s * 1000),
                    _encode_json(alert.to_api()),  # to_api puts alert_id first
                    alert.key,
                    repr(alert.as_of_s),
                )
            if self._write_alerts is None:
                self._write_alerts = self.client.register_script(_WRITE_ALERTS)
            self._write_alerts(keys=alert_keys, args=alert_args, client=pipe)
        if order_by_ms:
            _zadd_chunks(pipe, tenant_key(tenant_id, "order_by"), order_by_ms)
        for name, value in (counters or {}).items():
            if value:
                pipe.hincrby(tenant_key(tenant_id, "counters"), name, value)
        if dead_letters:
            _push_dead_letters(pipe, tenant_id, dead_letters)
        pipe.execute()

    def write_order_by(self, tenant_id: str, order_by_ms: Mapping[str, float]) -> None:
        """Move rows in the due index (as ``write_outputs`` does, outside a micro-batch)."""
        pipe = self.client.pipeline(transaction=False)
        _zadd_chunks(pipe, tenant_key(tenant_id, "order_by"), order_by_ms)
        pipe.execute()

    def dedup_marks(self, tenant_id: str, shard: int) -> dict[str, float]:
        raw = cast(
            dict[bytes, bytes], self.client.hgetall(tenant_key(tenant_id, "dedup", str(shard)))
        )
        return {k.decode(): float(v) for k, v in raw.items()}

    def dead_letter(self, tenant_id: str, records: list[bytes], keep: int = 10_000) -> None:
        """Keep refused records for inspection (newest ``keep``); each entry is JSON with its
        ``reason`` (see :func:`dead_letter_entry`)."""
        pipe = self.client.pipeline(transaction=False)
        _push_dead_letters(pipe, tenant_id, records, keep)
        pipe.execute()

    def incr_counter(self, tenant_id: str, name: str, value: int = 1) -> None:
        self.client.hincrby(tenant_key(tenant_id, "counters"), name, value)

    def counters(self, tenant_id: str) -> dict[str, int]:
        raw = cast(dict[bytes, bytes], self.client.hgetall(tenant_key(tenant_id, "counters")))
        return {k.decode(): int(v) for k, v in raw.items()}

    # -- rate limits (ADR-010) -------------------------------------------------------------
    def rate_limit_overrides(self, tenant_id: str) -> dict[str, float]:
        """The tenant's overrides of the default rates (the limiter's script reads them too)."""
        raw = cast(dict[bytes, bytes], self.client.hgetall(limits_key(tenant_id)))
        out = {k.decode(): float(v) for k, v in raw.items()}
        return {name: out[name] for name in LIMIT_FIELDS if name in out}

    def put_rate_limit_overrides(self, tenant_id: str, values: Mapping[str, float | None]) -> None:
        """Set overrides (a number) or drop them (None), in one transaction; every replica's
        next request sees them."""
        unknown = set(values) - set(LIMIT_FIELDS)
        if unknown:
            raise ValueError(f"unknown rate-limit fields: {sorted(unknown)}")
        key = limits_key(tenant_id)
        pipe = self.client.pipeline(transaction=True)
        kept = {name: repr(float(v)) for name, v in values.items() if v is not None}
        dropped = [name for name, v in values.items() if v is None]
        if kept:
            pipe.hset(key, mapping=kept)  # type: ignore[arg-type]
        if dropped:
            pipe.hdel(key, *dropped)
        pipe.execute()

    # -- reads ---------------------------------------------------------------------------------
    def alerts(
        self,
        tenant_id: str,
        *,
        sku: str | None = None,
        warehouse: str | None = None,
        since_ms: float | None = None,
        min_probability: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> AlertPage:
        """Newest first. ``cursor`` is ``"<score>:<alert_id>"`` of the last alert already seen."""
        scan = _AlertScan(tenant_id, sku, warehouse, since_ms, min_probability, limit, cursor)
        while scan.wants_more():
            scan.feed(self.client.zrevrangebyscore(*scan.request(), withscores=True))
        return scan.page()

    async def alerts_async(
        self,
        tenant_id: str,
        *,
        sku: str | None = None,
        warehouse: str | None = None,
        since_ms: float | None = None,
        min_probability: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> AlertPage:
        """:meth:`alerts` on an asyncio client, for the API's event loop: a read waits for
        Redis without holding a thread (a thread hop costs a Serve replica more than the read)."""
        scan = _AlertScan(tenant_id, sku, warehouse, since_ms, min_probability, limit, cursor)
        while scan.wants_more():
            scan.feed(await self._zrevrangebyscore(*scan.request()))
        return scan.page()

    def predictions(
        self,
        tenant_id: str,
        *,
        sku: str | None,
        warehouse: str | None,
        limit: int = 1000,
        after: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Latest predictions, ordered by SKU name; ``limit`` SKUs a page, ``after`` the last SKU
        of the previous page. Returns the page and the cursor of the next one (or None)."""
        if sku:
            skus, next_after = [sku], None
        else:
            low = f"({after}" if after else "-"
            raw = cast(
                list[bytes],
                self.client.zrangebylex(
                    tenant_key(tenant_id, "skus"), low, "+", start=0, num=limit + 1
                ),
            )
            skus = [s.decode() for s in raw[:limit]]
            next_after = skus[-1] if len(raw) > limit else None
        pipe = self.client.pipeline(transaction=False)
        for s in skus:
            if warehouse:
                pipe.hget(tenant_key(tenant_id, "pred", s), warehouse)
            else:
                pipe.hvals(tenant_key(tenant_id, "pred", s))
        out: list[dict[str, Any]] = []
        for result in pipe.execute():
            values = result if isinstance(result, list) else [result]
            out.extend(_decode_json(v) for v in values if v)
        out.sort(key=lambda p: (p["sku"], p["warehouse"]))
        return out, next_after

    def due_rows(
        self,
        tenant_id: str,
        *,
        sku: str | None,
        warehouse: str | None,
        max_ms: float,
        limit: int,
        after: tuple[float, str] | None,
        accept: Callable[[dict[str, Any]], bool],
    ) -> tuple[list[dict[str, Any]], tuple[float, str] | None]:
        """Prediction records in the due index's order (order_by, then ``sku@warehouse``) up to
        ``max_ms``, after ``after`` (the ``(score, member)`` of the last row already seen), that
        ``accept`` takes; ``limit`` a page. Returns the page and where the next one starts
        (None: no more). A filtered scan reads at most ~20 000 members a page and then hands
        out where it stopped, like the alerts' pages."""
        if sku:
            return self._due_rows_of_sku(tenant_id, sku, warehouse, max_ms, limit, after, accept)
        scan = _DueScan(tenant_id, warehouse, max_ms, limit, after)
        key = tenant_key(tenant_id, "order_by")
        if after is not None:
            pipe = self.client.pipeline(transaction=False)
            pipe.zscore(key, after[1])
            pipe.zrank(key, after[1])
            pipe.zcount(key, "-inf", f"({after[0]!r}")
            score, rank, below = pipe.execute()
            scan.start(score, rank, below)
        while scan.wants_more():
            members = self.client.zrange(
                key, scan.rank, scan.rank + scan.chunk - 1, withscores=True
            )
            candidates = scan.feed(cast(list[tuple[bytes, float]], members))
            if candidates:
                pipe = self.client.pipeline(transaction=False)
                for _, member in candidates:
                    item_sku, item_warehouse = member.rsplit("@", 1)
                    pipe.hget(tenant_key(tenant_id, "pred", item_sku), item_warehouse)
                for (score, member), raw in zip(candidates, pipe.execute(), strict=True):
                    record = _decode_json(raw) if raw else None
                    if record is not None and accept(record):
                        scan.take(score, member, record)
        return scan.page()

    def _due_rows_of_sku(
        self,
        tenant_id: str,
        sku: str,
        warehouse: str | None,
        max_ms: float,
        limit: int,
        after: tuple[float, str] | None,
        accept: Callable[[dict[str, Any]], bool],
    ) -> tuple[list[dict[str, Any]], tuple[float, str] | None]:
        """:meth:`due_rows` of one SKU: its warehouses' records, ordered here."""
        pred = tenant_key(tenant_id, "pred", sku)
        if warehouse:
            raw = cast(bytes | None, self.client.hget(pred, warehouse))
            values = [raw] if raw else []
        else:
            values = cast(list[bytes], self.client.hvals(pred))
        rows: list[tuple[float, str, dict[str, Any]]] = []
        for value in values:
            record = _decode_json(value)
            rec = record.get("rec")
            if rec is None or not accept(record):
                continue
            order_by = rec[2]
            score = math.inf if order_by is None else float(order_by)
            member = f"{sku}@{record['warehouse']}"
            if score <= max_ms and (after is None or (score, member) > after):
                rows.append((score, member, record))
        rows.sort(key=lambda row: (row[0], row[1]))
        more = len(rows) > limit
        rows = rows[:limit]
        return [row[2] for row in rows], (rows[-1][0], rows[-1][1]) if more else None

    # -- checkpoints and health ----------------------------------------------------------------
    def save_checkpoint(
        self,
        tenant_id: str,
        shard: int,
        checkpoint: Checkpoint,
        *,
        seen_appends: Mapping[int, bytes] | None = None,
        seen_rewrites: Mapping[int, bytes] | None = None,
    ) -> None:
        """The state, its offsets and the applied event ids in one transaction (the ids are
        appended to each partition's log, or the log replaced when it is rewritten)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(
            tenant_key(tenant_id, "ckpt", str(shard)),
            mapping={
                "state": checkpoint.state,
                "offsets": json.dumps({str(p): o for p, o in checkpoint.offsets.items()}),
                "at": repr(checkpoint.at),
                "events": str(checkpoint.events),
            },
        )
        for partition, data in (seen_appends or {}).items():
            pipe.append(tenant_key(tenant_id, "seen", str(partition)), data)
        for partition, data in (seen_rewrites or {}).items():
            pipe.set(tenant_key(tenant_id, "seen", str(partition)), data)
        pipe.execute()

    def seen_ids(self, tenant_id: str, partitions: Iterable[int]) -> dict[int, bytes]:
        """The stored event-id logs of these partitions (empty bytes where none)."""
        parts = list(partitions)
        pipe = self.client.pipeline(transaction=False)
        for partition in parts:
            pipe.get(tenant_key(tenant_id, "seen", str(partition)))
        return {p: raw or b"" for p, raw in zip(parts, pipe.execute(), strict=True)}

    def load_checkpoint(self, tenant_id: str, shard: int) -> Checkpoint | None:
        raw = cast(
            dict[bytes, bytes], self.client.hgetall(tenant_key(tenant_id, "ckpt", str(shard)))
        )
        if not raw:
            return None
        offsets = {int(p): int(o) for p, o in json.loads(raw[b"offsets"]).items()}
        return Checkpoint(raw[b"state"], offsets, float(raw[b"at"]), int(raw[b"events"]))

    def put_shard_health(self, tenant_id: str, shard: int, health: Mapping[str, Any]) -> None:
        self.client.hset(
            tenant_key(tenant_id, "shard", str(shard)),
            mapping={k: json.dumps(v) for k, v in {**health, "heartbeat": time.time()}.items()},
        )

    def mark_shard_started(self, tenant_id: str, shard: int) -> None:
        """The shard's actor is being constructed (restoring its checkpoint): ``starting`` until
        its first heartbeat. A shard that has not beaten since an earlier start keeps that
        start, so one that crashes while starting, again and again, turns ``down`` once the
        grace is over instead of ``starting`` for ever."""
        key = tenant_key(tenant_id, "shard", str(shard))
        started, beat = self.client.hmget(key, ["started_at", "heartbeat"])
        if started is not None and (beat is None or float(beat) < float(started)):
            return
        self.client.hset(key, "started_at", json.dumps(time.time()))

    def shard_health(self, tenant_id: str, shards: int) -> list[dict[str, Any]]:
        pipe = self.client.pipeline(transaction=False)
        for shard in range(shards):
            pipe.hgetall(tenant_key(tenant_id, "shard", str(shard)))
        out = []
        for shard, raw in enumerate(pipe.execute()):
            record = {k.decode(): json.loads(v) for k, v in raw.items()}
            out.append({"shard": shard, **record})
        return out
