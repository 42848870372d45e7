"""The per-tenant token buckets in Redis (ADR-010): one Lua script, one ``EVALSHA`` a request.

The script reads the tenant's overrides (``aurora:t:{t}:limits``, written by ``aurora tenants
set-limits``) and its bucket levels (``aurora:t:{t}:ratelimit``), refills every bucket by the time
passed on Redis' own clock (``TIME``, so the replicas' clocks do not matter), and takes the
request's tokens from all of them or from none. It returns each bucket's rate, capacity and level
(after taking, or as found when it refused); :mod:`aurora_ray.ratelimit` turns that into the
answer and its headers. A bucket hash that would be full again expires, so idle tenants leave
nothing behind.

The API runs it on the replica's event loop through the lean client
(:class:`~aurora_ray.adapters.resp.RespClient`, ~24 µs of CPU a command against redis-py
asyncio's 110-130 µs), on a connection of its own with a short timeout: a slow alerts page
pipelined on the read connection never delays a limiter answer.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any, Final

import redis.asyncio
import redis.exceptions

from aurora_ray.adapters.keys import tenant_key
from aurora_ray.adapters.resp import RespClient
from aurora_ray.adapters.resp import supports as resp_supports

__all__ = ["LIMIT_FIELDS", "RateLimitScript", "buckets_key", "limits_key"]

# The override fields of aurora:t:{t}:limits, in the script's order.
LIMIT_FIELDS: Final = ("requests_per_s", "events_per_s", "events_peak_per_s")

# KEYS[1]: the tenant's bucket levels, KEYS[2]: its overrides. ARGV: request cost, event cost,
# then the defaults: requests/s, requests burst (s), events/s, events peak/s, peak duration (s).
# Buckets, in order: requests, events_peak, events (sustained). The capacities follow the rules
# of aurora_ray.ratelimit.TenantLimits.buckets; a unit test there and an integration test here
# keep the two the same. Times are stored with 6 decimals ('%.6f'): Lua's default number format
# keeps 14 digits, 0.1 ms of a Unix time, which would move a 15 K/s bucket by ~1.5 tokens.
_TAKE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local o = redis.call('HMGET', KEYS[2], 'requests_per_s', 'events_per_s', 'events_peak_per_s')
local rps = tonumber(o[1]) or tonumber(ARGV[3])
local eps = tonumber(o[2]) or tonumber(ARGV[5])
local peak = tonumber(o[3])
if not peak then
  peak = tonumber(ARGV[6])
  if o[2] then peak = eps * peak / tonumber(ARGV[5]) end
end
if peak < eps then peak = eps end
local peak_cap = math.max(1, peak)
local rate = {rps, peak, eps}
local cap = {
  math.max(1, rps * tonumber(ARGV[4])),
  peak_cap,
  math.max(peak_cap, (peak - eps) * tonumber(ARGV[7])),
}
local cost = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[2])}
local s = redis.call('HMGET', KEYS[1], 'r', 'r_at', 'p', 'p_at', 'e', 'e_at')
local level, code = {}, 1
for i = 1, 3 do
  local l = tonumber(s[2 * i - 1])
  if l then
    local dt = now - tonumber(s[2 * i])
    if dt < 0 then dt = 0 end
    l = math.min(cap[i], l + dt * rate[i])
  else
    l = cap[i]
  end
  level[i] = l
  if cost[i] > cap[i] then
    code = -1
  elseif code == 1 and cost[i] > l then
    code = 0
  end
end
if code == 1 then
  local full = 0
  for i = 1, 3 do
    level[i] = level[i] - cost[i]
    full = math.max(full, (cap[i] - level[i]) / rate[i])
  end
  local at = string.format('%.6f', now)
  redis.call('HSET', KEYS[1],
    'r', string.format('%.17g', level[1]), 'r_at', at,
    'p', string.format('%.17g', level[2]), 'p_at', at,
    'e', string.format('%.17g', level[3]), 'e_at', at)
  redis.call('PEXPIRE', KEYS[1], math.ceil(full * 1000) + 1000)
end
local out = {code}
for i = 1, 3 do
  out[#out + 1] = string.format('%.17g', rate[i])
  out[#out + 1] = string.format('%.17g', cap[i])
  out[#out + 1] = string.format('%.17g', level[i])
end
return out
"""
_SHA: Final = hashlib.sha1(_TAKE.encode(), usedforsecurity=False).hexdigest()


def limits_key(tenant_id: str) -> str:
    return tenant_key(tenant_id, "limits")


def buckets_key(tenant_id: str) -> str:
    return tenant_key(tenant_id, "ratelimit")


class RateLimitScript:
    """Runs the script for the API, on its event loop. Cheap to construct; connects on first
    use. Raises what the client raises (a timeout, a lost connection, an error reply): the
    caller decides what a limiter without Redis does."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._resp: RespClient | None = None
        self._aclient: redis.asyncio.Redis | None = None

    async def take(
        self, tenant_id: str, *, requests: int, events: int, defaults: Sequence[float]
    ) -> list[Any]:
        """``[code, rate, capacity, level] x 3 buckets`` (code 1 taken, 0 refused, -1 never
        possible); the numbers as bytes."""
        args = (2, buckets_key(tenant_id), limits_key(tenant_id), requests, events, *defaults)
        try:
            reply = await self._call("EVALSHA", _SHA, *args)
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            reply = await self._call("EVAL", _TAKE, *args)  # also caches it for EVALSHA
        return list(reply)

    async def _call(self, *args: Any) -> Any:
        if self._resp is None and resp_supports(self.url):
            self._resp = RespClient(self.url, timeout=self.timeout)
        if self._resp is not None:
            return await self._resp.call(*args)
        if self._aclient is None:  # TLS or a unix socket: redis-py, with the same timeout
            self._aclient = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
        command = self._aclient.execute_command(*args)  # type: ignore[no-untyped-call]
        return await asyncio.wait_for(command, self.timeout)

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
