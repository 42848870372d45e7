"""The ingest use case: decode an HTTP body, validate every line, and build the topic records.

HTTP status codes are part of the domain of this module because they are what the client sees:
each refusal is an :class:`IngestError` with the status and a JSON body that names the problem.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aurora_ray.adapters.kafka import BatchProducer, DeliveryError
from aurora_ray.domain.events import DEFAULT_MAX_SKEW_MS, ParsedBatch, encode_ndjson
from aurora_ray.settings import Settings

__all__ = [
    "ACK_TIMEOUT_S",
    "NDJSON_TYPES",
    "IngestError",
    "PreparedIngest",
    "decode_body",
    "deliver",
    "prepare_ingest",
    "read_request",
]

log = logging.getLogger(__name__)
# Above the producer's own bound (BatchProducer.ack_timeout_s, 35 s, itself above librdkafka's
# message.timeout.ms): a 503 comes after the delivery was given up, not while it goes on.
ACK_TIMEOUT_S: Final = 40.0

NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)


class IngestError(Exception):
    def __init__(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        rejected_lines: int = 0,
    ) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.rejected_lines = rejected_lines  # 0 when the body was refused before parsing


@dataclass
class PreparedIngest:
    records: list[tuple[bytes | None, bytes]]
    parsed: ParsedBatch
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return len(self.records)


def decode_body(
    body: bytes, *, content_type: str | None, content_encoding: str | None, max_bytes: int
) -> bytes:
    """Check the media type and size, and gunzip; the limit applies after decompression too."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in NDJSON_TYPES:
        raise IngestError(
            415,
            {
                "error": "unsupported_media_type",
                "message": f"Content-Type must be application/x-ndjson, got {media or 'none'!r}",
            },
        )
    if len(body) > max_bytes:
        raise IngestError(413, _too_large(max_bytes))
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        return _gunzip(body, max_bytes)
    if encoding not in ("identity", ""):
        raise IngestError(
            415,
            {
                "error": "unsupported_encoding",
                "message": f"Content-Encoding {encoding!r}: use gzip",
            },
        )
    return body


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    """Inflate every gzip member (concatenated members are one valid stream), never more than
    ``max_bytes`` in all."""
    parts: list[bytes] = []
    size = 0
    rest = body
    while rest:
        inflater = zlib.decompressobj(wbits=31)
        try:
            data = inflater.decompress(rest, max_bytes + 1 - size)
        except zlib.error as exc:
            raise IngestError(
                400, [{"line": 0, "field": "body", "message": f"invalid gzip: {exc}"}]
            ) from exc
        size += len(data)
        if size > max_bytes or inflater.unconsumed_tail:
            raise IngestError(413, _too_large(max_bytes))
        if not inflater.eof:
            raise IngestError(
                400, [{"line": 0, "field": "body", "message": "invalid gzip: truncated stream"}]
            )
        parts.append(data)
        rest = inflater.unused_data
    return b"".join(parts)


def _too_large(max_bytes: int) -> dict[str, str]:
    return {
        "error": "payload_too_large",
        "message": f"the body exceeds {max_bytes} bytes (after decompression); split the batch",
    }


def prepare_ingest(
    body: bytes,
    *,
    tenant_id: str,
    received_ms: int,
    max_errors: int = 100,
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
) -> PreparedIngest:
    """Validate all lines; refuse the whole request on any bad or foreign line. An event time
    may lie at most ``max_skew_ms`` past ``received_ms`` (the server's clock)."""
    parsed = encode_ndjson(
        body,
        tenant_id=tenant_id,
        received_ms=received_ms,
        max_errors=max_errors,
        latest_ms=received_ms + max_skew_ms,
    )
    if parsed.foreign_tenant_lines:
        lines = parsed.foreign_tenant_lines
        raise IngestError(
            403,
            {
                "error": "forbidden_tenant",
                "message": f"{len(lines)} line(s) carry a tenant_id other than the token's",
                "lines": lines[:max_errors],
            },
            rejected_lines=len(lines) + parsed.error_lines + parsed.accepted,
        )
    if parsed.errors:
        raise IngestError(
            400,
            [e.as_dict() for e in parsed.errors],
            rejected_lines=parsed.error_lines + parsed.accepted,
        )
    if not parsed.records:
        raise IngestError(400, [{"line": 0, "field": "body", "message": "no events in the body"}])
    headers = {}
    if parsed.deprecated_fields:
        headers["Deprecation"] = "true"
        names = ", ".join(sorted(parsed.deprecated_fields))
        headers["Warning"] = f'299 aurora "deprecated field(s) {names}: use sku"'
    return PreparedIngest(parsed.records, parsed, headers)


def read_request(
    body: bytes,
    *,
    content_length: str | None,
    content_type: str | None,
    content_encoding: str | None,
    tenant_id: str,
    received_ms: int,
    settings: Settings,
) -> PreparedIngest:
    """An HTTP request's body to topic records, with the settings' limits: refused early when
    its declared length is over the size limit, then :func:`decode_body` and
    :func:`prepare_ingest`."""
    declared = content_length or "0"
    if declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise IngestError(413, {"error": "payload_too_large", "message": "body too large"})
    decoded = decode_body(
        body,
        content_type=content_type,
        content_encoding=content_encoding,
        max_bytes=settings.max_body_bytes,
    )
    return prepare_ingest(
        decoded,
        tenant_id=tenant_id,
        received_ms=received_ms,
        max_errors=settings.max_error_lines,
        max_skew_ms=round(settings.max_event_skew_s * 1000),
    )


def _unavailable(message: str, *, rejected_lines: int = 0) -> IngestError:
    body = {"error": "unavailable", "message": message}
    return IngestError(503, body, {"Retry-After": "5"}, rejected_lines=rejected_lines)


async def deliver(
    producer: BatchProducer,
    topic: str,
    prepared: PreparedIngest,
    *,
    topic_exists: Callable[[str], bool],
    timeout_s: float = ACK_TIMEOUT_S,
) -> None:
    """Produce the records and wait until the broker acknowledged every one. A ``503``
    (:class:`IngestError`) when the broker cannot be asked or the topic is missing (nothing was
    produced: ``rejected_lines`` 0), or when the delivery was not acknowledged in time (its
    events are the ``rejected_lines``: nothing may be assumed kept)."""
    try:
        exists = topic_exists(topic)
    except Exception as exc:  # the broker cannot even be asked
        log.warning("topic metadata of %s unavailable", topic, exc_info=True)
        raise _unavailable("the broker does not answer") from exc
    if not exists:
        raise _unavailable("the tenant's topic is not ready yet")
    future = producer.produce_batch(topic, prepared.records)
    try:
        await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
    except (DeliveryError, TimeoutError) as exc:
        log.warning("the broker did not acknowledge a batch of %s", topic, exc_info=True)
        raise _unavailable(
            "the broker did not acknowledge the events; nothing may be assumed kept",
            rejected_lines=prepared.accepted,
        ) from exc
