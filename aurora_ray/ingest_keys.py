"""``Idempotency-Key`` on ``POST /v1/ingest/events``: a repeated request gets the first answer.

A client that timed out does not know whether its events were accepted. With the same
``Idempotency-Key`` (any 1–255 printable ASCII characters, e.g. a UUID per batch) and the same
body, its retry is answered with the first request's answer (``Idempotent-Replayed: true``) and
nothing is produced again. The key belongs to the tenant and lives ``idempotency_key_ttl_s``
(24 h). While the first request is still running, a retry gets ``409`` with ``Retry-After: 1``;
the same key with another body gets ``422``. Only final answers are kept: an accepted request
(``202``) and one refused for its content (``400``, ``403``, ``413``, ``415``: the same body would
be refused again). A ``429`` (rate limited) or a ``5xx`` (the broker did not acknowledge)
releases the key, so the retry runs again.

Without the header, a retry is still applied once per ``event_id`` by the shards (see
:mod:`aurora_ray.domain.idempotency`); the key also spares the broker and the shards the copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from redis.exceptions import RedisError

from aurora_ray.adapters.redis_store import RedisStore, tenant_key
from aurora_ray.ingest import IngestError

__all__ = [
    "HEADER",
    "REPLAYED_HEADER",
    "Answer",
    "Claim",
    "IdempotencyKeys",
    "answer_once",
    "check_key",
    "fingerprint",
]

log = logging.getLogger(__name__)

HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
_KEY_RE = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,254}$")
_PENDING_MS: Final = 60_000  # a claim of a request that died unanswered expires after this

# KEYS[1] the key's hash; ARGV: fingerprint, pending ttl (ms). Returns {"new"} when claimed, or
# {state, fingerprint, status, body, headers} of what is there.
_CLAIM = """
local found = redis.call('HMGET', KEYS[1], 'state', 'fp', 'status', 'body', 'headers')
if not found[1] then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'new'}
end
return {found[1], found[2], found[3] or '', found[4] or '', found[5] or ''}
"""


_COMPLETE = """
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[1], 'body', ARGV[2],
           'headers', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


def check_key(value: str) -> str:
    if not _KEY_RE.match(value):
        raise IngestError(
            400,
            [
                {
                    "line": 0,
                    "field": f"header {HEADER}",
                    "message": "must be 1 to 255 printable ASCII characters",
                }
            ],
        )
    return value


def fingerprint(body: bytes, *, content_type: str | None, content_encoding: str | None) -> str:
    """What makes a retry "the same request": the bytes as sent and how they are encoded."""
    digest = hashlib.sha256()
    for part in ((content_type or "").lower(), (content_encoding or "").lower()):
        digest.update(part.encode() + b"\n")
    digest.update(body)
    return digest.hexdigest()


@dataclass(frozen=True)
class Claim:
    kind: Literal["new", "replay", "pending", "mismatch"]
    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class IdempotencyKeys:
    """The keys of every tenant in Redis, through the store's asyncio path (event loop)."""

    def __init__(self, store: RedisStore, *, ttl_s: int) -> None:
        self.store = store
        self.ttl_ms = ttl_s * 1000

    @staticmethod
    def _redis_key(tenant_id: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return tenant_key(tenant_id, "idem", digest)

    async def claim(self, tenant_id: str, key: str, print_: str) -> Claim:
        reply: Any = await self.store.acall(
            "EVAL", _CLAIM, 1, self._redis_key(tenant_id, key), print_, _PENDING_MS
        )
        state = _text(reply[0])
        if state == "new":
            return Claim("new")
        if _text(reply[1]) != print_:
            return Claim("mismatch")
        if state != "done":
            return Claim("pending")
        headers = json.loads(_text(reply[4]) or "{}")
        return Claim("replay", int(_text(reply[2])), bytes(reply[3]), headers)

    async def complete(
        self, tenant_id: str, key: str, *, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        await self.store.acall(
            "EVAL", _COMPLETE, 1, self._redis_key(tenant_id, key),
            status, body, json.dumps(headers), self.ttl_ms,
        )  # fmt: skip

    async def release(self, tenant_id: str, key: str) -> None:
        await self.store.acall("DEL", self._redis_key(tenant_id, key))


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as the route gives it (JSON body bytes)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


_KEPT_HEADERS = frozenset({"deprecation", "warning"})
# Answers a retry of the same body would get again: kept. A 429 (the tenant's rate limit) or a
# 5xx is not, so the retry runs again.
_FINAL = frozenset({202, 400, 403, 413, 415})


async def answer_once(
    keys: IdempotencyKeys,
    *,
    tenant_id: str,
    key: str,
    request_print: str,
    run: Callable[[], Awaitable[Answer]],
) -> Answer:
    """``run()`` once per key: a retry gets the stored answer (see the module docstring). When
    Redis does not answer, the request runs unkeyed; a failure to store the answer leaves it
    standing. Either way a retry runs again, and the shards still apply each event id once."""
    try:
        check_key(key)
    except IngestError as exc:
        return Answer(exc.status, json.dumps(exc.body).encode())
    try:
        claim = await keys.claim(tenant_id, key, request_print)
    except RedisError:
        # Ingest needs no Redis otherwise: run it unkeyed rather than refuse it; a retry is then
        # produced again, and the shards still apply each event_id once.
        log.warning("the idempotency store does not answer; %s not kept", HEADER, exc_info=True)
        return await run()
    if claim.kind == "replay":
        return Answer(claim.status, claim.body, {**claim.headers, REPLAYED_HEADER: "true"})
    if claim.kind == "pending":
        body = {"error": "conflict", "message": f"a request with this {HEADER} is running"}
        return Answer(409, json.dumps(body).encode(), {"Retry-After": "1"})
    if claim.kind == "mismatch":
        message = f"this {HEADER} was used with another body; use a new key"
        body = {"error": "idempotency_key_reused", "message": message}
        return Answer(422, json.dumps(body).encode())
    answer = await run()
    try:
        if answer.status in _FINAL:
            kept = {k: v for k, v in answer.headers.items() if k.lower() in _KEPT_HEADERS}
            await keys.complete(
                tenant_id, key, status=answer.status, body=answer.body, headers=kept
            )
        else:
            await keys.release(tenant_id, key)
    except RedisError:
        log.warning("could not record the answer of %s %s", HEADER, key, exc_info=True)
    return answer


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
