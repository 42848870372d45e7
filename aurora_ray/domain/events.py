"""Event envelopes and typed payloads: validating NDJSON in, and the record that goes to Kafka.

A request is all or nothing: :func:`parse_ndjson` validates every line and reports each bad one by
line number and field, so the API can refuse the whole request before anything is produced.
Accepted events are normalised into :class:`StreamEvent` records (the canonical form on the topic):
``sku_id`` becomes ``sku``, a missing ``event_id`` gets a fresh UUID and a missing ``occurred_at``
takes the time the request was received.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import msgspec
import numpy as np
from msgspec import Meta

from aurora_ray.domain.currencies import ISO_4217

__all__ = [
    "BUNDLE_MAX_EVENTS",
    "BUNDLE_START",
    "DEFAULT_MAX_SKEW_MS",
    "EARLIEST_TS_MS",
    "KNOWN_EVENT_TYPES",
    "MAX_EXPECTED_AHEAD_MS",
    "MAX_LEAD_TIME_HOURS",
    "MAX_JSON_DEPTH",
    "MAX_PRICE",
    "MIN_PRICE",
    "MAX_QUANTITY",
    "MAX_RECORD_SKEW_MS",
    "CheckedLine",
    "EventType",
    "LineError",
    "ParsedBatch",
    "ShardBatch",
    "ShardRecord",
    "StreamEvent",
    "check_ndjson",
    "decode_stream_events",
    "encode_bundle",
    "encode_ndjson",
    "encode_stream_event",
    "parse_ndjson",
    "record_problem",
    "replenishment_fields",
    "stream_key",
]


class EventType:
    """Event type names (strings on the wire) and their compact codes in columnar batches."""

    ORDER_CREATED: Final = "order.created"
    ORDER_CANCELLED: Final = "order.cancelled"
    STOCK_RECEIVED: Final = "stock.received"
    STOCK_ADJUSTED: Final = "stock.adjusted"
    STOCK_SNAPSHOT: Final = "stock.snapshot"
    SKU_UPSERTED: Final = "sku.upserted"
    STOCK_ORDERED: Final = "stock.ordered"  # a purchase order to a supplier, not yet landed


KNOWN_EVENT_TYPES: Final = (
    EventType.ORDER_CREATED,
    EventType.ORDER_CANCELLED,
    EventType.STOCK_RECEIVED,
    EventType.STOCK_ADJUSTED,
    EventType.STOCK_SNAPSHOT,
    EventType.SKU_UPSERTED,
    EventType.STOCK_ORDERED,
)

# Bounds on what an event may carry: the same for the live API, the backfill and the shard, so
# that no accepted event can overflow the state's int64 columns, the warehouse's NUMERIC(10,2) and
# int32 columns, or send the event-time timers decades ahead.
#: Largest quantity, stock level or stock delta an event may carry.
MAX_QUANTITY: Final = 1_000_000_000
#: Smallest and largest price: fact_order.price is NUMERIC(10,2), so a smaller price would read
#: 0.00 there.
MIN_PRICE: Final = 0.01
MAX_PRICE: Final = 99_999_999.99
#: Earliest event time accepted (2000-01-01T00:00:00Z): older history is refused.
EARLIEST_TS_MS: Final = 946_684_800_000
#: How far past the server's clock an event time may lie unless the caller says otherwise
#: (``AURORA_MAX_EVENT_SKEW_S``, one hour by default).
DEFAULT_MAX_SKEW_MS: Final = 3_600_000
#: How far past its ``received_ms`` a record's event time may lie where records are read (the
#: shards, the warehouse sink): a fixed bound, the largest the API's setting allows, so a record
#: the API accepted is never refused downstream whatever the setting was when it was accepted;
#: it only keeps poison (an event dated 9999) out.
MAX_RECORD_SKEW_MS: Final = 7 * 86_400_000
#: How far after its event a purchase order may be expected (``stock.ordered``'s expected_at).
MAX_EXPECTED_AHEAD_MS: Final = 366 * 86_400_000
#: Deepest nesting of arrays and objects in a line (the envelope counts as the first level).
MAX_JSON_DEPTH: Final = 32
MAX_LEAD_TIME_HOURS: Final = 366 * 24  # a supplier's lead time, as for expected_at

Sku = Annotated[str, Meta(min_length=1, max_length=128)]
Warehouse = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[^@\s]+$")]
PositiveInt = Annotated[int, Meta(gt=0, le=MAX_QUANTITY)]
NonNegativeInt = Annotated[int, Meta(ge=0, le=MAX_QUANTITY)]
Delta = Annotated[int, Meta(ge=-MAX_QUANTITY, le=MAX_QUANTITY)]
OrderId = Annotated[str, Meta(min_length=1, max_length=128)] | int


class _SkuPayload(msgspec.Struct, kw_only=True):
    sku: Sku | None = None
    sku_id: Sku | None = None  # deprecated alias of `sku` since 1.0
    warehouse: Warehouse


class OrderCreated(_SkuPayload, kw_only=True):
    order_id: OrderId
    qty: PositiveInt
    price: Annotated[float, Meta(ge=MIN_PRICE, le=MAX_PRICE)]
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]


class OrderCancelled(_SkuPayload, kw_only=True):
    order_id: OrderId
    qty: PositiveInt


class StockReceived(_SkuPayload, kw_only=True):
    qty: PositiveInt


class StockAdjusted(_SkuPayload, kw_only=True):
    delta: Delta
    reason: str | None = None


class StockSnapshot(_SkuPayload, kw_only=True):
    on_hand: NonNegativeInt


class StockOrdered(_SkuPayload, kw_only=True):
    """A purchase order placed with a supplier: ``qty`` units expected to land at
    ``expected_at``. Its ``stock.received`` closes it; stock does not move until then."""

    qty: PositiveInt
    expected_at: datetime
    po_id: OrderId | None = None


class SkuUpserted(_SkuPayload, kw_only=True):
    category: str | None = None
    brand: str | None = None
    initial_stock: NonNegativeInt | None = None  # None: catalogue data only, stock untouched
    # Replenishment data: the supplier's lead time, minimum order quantity and case pack.
    lead_time_hours: Annotated[float, Meta(gt=0, le=MAX_LEAD_TIME_HOURS)] | None = None
    moq: PositiveInt | None = None
    case_pack: PositiveInt | None = None


_PAYLOAD_TYPES: Final[dict[str, type[_SkuPayload]]] = {
    EventType.ORDER_CREATED: OrderCreated,
    EventType.ORDER_CANCELLED: OrderCancelled,
    EventType.STOCK_RECEIVED: StockReceived,
    EventType.STOCK_ADJUSTED: StockAdjusted,
    EventType.STOCK_SNAPSHOT: StockSnapshot,
    EventType.SKU_UPSERTED: SkuUpserted,
    EventType.STOCK_ORDERED: StockOrdered,
}


class _EnvelopeIn(msgspec.Struct):
    tenant_id: str
    event_type: Annotated[str, Meta(min_length=1, max_length=64)]
    payload: msgspec.Raw
    event_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    occurred_at: datetime | None = None


class StreamEvent(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The canonical event on a tenant topic. Times are epoch milliseconds (UTC).

    Known types carry ``sku``/``warehouse`` and the numbers the state needs; the whole validated
    payload is kept in ``payload`` so that nothing a client sent is lost.
    """

    event_id: str
    tenant_id: str
    event_type: str
    ts_ms: int
    received_ms: int
    sku: str | None = None
    warehouse: str | None = None
    qty: int = 0
    # on_hand (snapshot), delta (adjusted), initial_stock (upserted; -1: none),
    # expected_at in epoch ms (ordered)
    value: int = 0
    payload: dict[str, Any] = {}
    # sku.upserted's replenishment data (0: not given): lead time in ms, MOQ, case pack.
    lead_ms: int = 0
    moq: int = 0
    case_pack: int = 0

    @property
    def key(self) -> str | None:
        return stream_key(self.sku, self.warehouse)


class ShardRecord(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """A topic record with the payload kept as raw JSON text: :class:`StreamEvent`'s fields.

    The shard reads records this way (the payload is checked to be a JSON object, never parsed:
    the shard does not read it); decoding one is ~3.5x cheaper than a :class:`StreamEvent`, and
    refuses the same records. The API writes the common line this way too (see
    :func:`encode_ndjson`): the client's payload goes to the topic verbatim, byte for byte."""

    event_id: str
    tenant_id: str
    event_type: str
    ts_ms: int
    received_ms: int
    sku: str | None = None
    warehouse: str | None = None
    qty: int = 0
    value: int = 0
    payload: msgspec.Raw = msgspec.Raw(b"{}")
    lead_ms: int = 0
    moq: int = 0
    case_pack: int = 0

    @property
    def key(self) -> str | None:
        return stream_key(self.sku, self.warehouse)


def stream_key(sku: str | None, warehouse: str | None) -> str | None:
    """The Kafka key and state key of a SKU in a warehouse: ``sku@warehouse``."""
    if sku is None or warehouse is None:
        return None
    return f"{sku}@{warehouse}"


@dataclass(frozen=True)
class LineError:
    line: int
    field: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "field": self.field, "message": self.message}


@dataclass
class ParsedBatch:
    events: list[StreamEvent] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    error_lines: int = 0  # lines with errors, including those past the reported cap
    foreign_tenant_lines: list[int] = field(default_factory=list)
    deprecated_fields: set[str] = field(default_factory=set)
    unknown_types: int = 0
    # encode_ndjson only: (Kafka key, topic record) of each accepted line, in line order
    records: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    # check_ndjson only: each accepted line, in line order
    checked: list[CheckedLine] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return len(self.events) + len(self.records) + len(self.checked)


@dataclass
class CheckedLine:
    """An accepted line as :func:`check_ndjson` gives it: its number, its topic record (the
    payload as raw JSON), and the order's fields when it is an ``order.created``."""

    line: int
    record: ShardRecord
    order: tuple[str, float, str] | None = None  # (order_id, price, currency)


MAX_TS_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_PATH_RE = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_encoder = msgspec.json.Encoder()
_stream_decoder = msgspec.json.Decoder(StreamEvent)
_shard_decoder = msgspec.json.Decoder(ShardRecord)
_bundle_decoder = msgspec.json.Decoder(list[ShardRecord])
_envelope_decoder = msgspec.json.Decoder(_EnvelopeIn)
_payload_decoders: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    name: msgspec.json.Decoder(cls) for name, cls in _PAYLOAD_TYPES.items()
}


def _split_error(exc: msgspec.ValidationError, prefix: str) -> tuple[str, str]:
    """Turn msgspec's "Expected `int`, got `str` - at `$.qty`" into (field, message)."""
    text = str(exc)
    match = _PATH_RE.search(text)
    if not match:
        return prefix or "line", text
    path = match.group("path").lstrip(".")
    message = text[: match.start()]
    name = ".".join(part for part in (prefix, path) if part)
    return name or "line", message


def _missing_field(message: str) -> str | None:
    found = re.match(r"Object missing required field `(?P<name>[^`]+)`", message)
    return found.group("name") if found else None


def _epoch_ms(at: datetime) -> int:
    """Epoch milliseconds of an aware datetime, exactly (floored), ~3x faster than dividing a
    timedelta: the float timestamp is only used for its whole seconds, which it holds exactly
    to well within 0.5 s for every year a datetime can carry."""
    seconds = round(at.timestamp() - at.microsecond / 1e6)
    return seconds * 1000 + at.microsecond // 1000


def _iso(ms: int) -> str:
    ms = min(max(ms, 0), MAX_TS_MS)
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _occurred_ms(
    at: datetime | None, received_ms: int, latest_ms: int, line_no: int, errors: list[LineError]
) -> int:
    if at is None:
        return received_ms
    if at.tzinfo is None:
        errors.append(
            LineError(line_no, "occurred_at", "must carry a time zone, e.g. 2025-05-31T22:00:00Z")
        )
        return received_ms
    ts_ms = _epoch_ms(at)
    if ts_ms < EARLIEST_TS_MS:
        errors.append(LineError(line_no, "occurred_at", f"must be {_iso(EARLIEST_TS_MS)} or later"))
    elif ts_ms > latest_ms:
        errors.append(
            LineError(
                line_no,
                "occurred_at",
                f"lies in the future: at most {_iso(latest_ms)} is accepted (the server's clock"
                " plus the allowed skew)",
            )
        )
    return ts_ms


def _payload_numbers(
    typed: _SkuPayload, ts_ms: int, line_no: int, errors: list[LineError]
) -> tuple[int, int]:
    """The checks beyond the payload's types, and the record's ``qty`` and ``value``."""
    if isinstance(typed, OrderCreated):
        if typed.currency not in ISO_4217:
            errors.append(
                LineError(line_no, "payload.currency", f"unknown ISO 4217 code {typed.currency!r}")
            )
        return typed.qty, 0
    if isinstance(typed, OrderCancelled | StockReceived):
        return typed.qty, 0
    if isinstance(typed, StockSnapshot):
        return 0, typed.on_hand
    if isinstance(typed, StockAdjusted):
        if typed.delta == 0:
            errors.append(LineError(line_no, "payload.delta", "must not be 0"))
        return 0, typed.delta
    if isinstance(typed, StockOrdered):
        if typed.expected_at.tzinfo is None:
            errors.append(
                LineError(
                    line_no,
                    "payload.expected_at",
                    "must carry a time zone, e.g. 2025-06-02T08:00:00Z",
                )
            )
            return typed.qty, 0
        expected_ms = _epoch_ms(typed.expected_at)
        if expected_ms < EARLIEST_TS_MS:
            message = f"must be {_iso(EARLIEST_TS_MS)} or later"
            errors.append(LineError(line_no, "payload.expected_at", message))
        elif ts_ms >= EARLIEST_TS_MS and expected_ms > ts_ms + MAX_EXPECTED_AHEAD_MS:
            message = "must lie within 366 days after occurred_at"
            errors.append(LineError(line_no, "payload.expected_at", message))
        return typed.qty, expected_ms
    if isinstance(typed, SkuUpserted):
        return 0, typed.initial_stock if typed.initial_stock is not None else -1
    return 0, 0


def replenishment_fields(typed: SkuUpserted) -> tuple[int, int, int]:
    """A record's ``lead_ms``, ``moq`` and ``case_pack`` (0: not given)."""
    lead = typed.lead_time_hours
    return (
        0 if lead is None else max(1, round(lead * 3_600_000)),
        typed.moq or 0,
        typed.case_pack or 0,
    )


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets inside strings ignored).

    Vectorised: strings are blanked with a regex, then the brackets are counted with numpy."""
    text = _STRING_RE.sub(b'""', raw)
    data = np.frombuffer(text, dtype=np.uint8)
    steps = np.zeros(len(data), dtype=np.int32)
    steps[(data == 0x5B) | (data == 0x7B)] = 1  # [ {
    steps[(data == 0x5D) | (data == 0x7D)] = -1  # ] }
    return int(np.cumsum(steps).max(initial=0))


def _too_deep(raw: bytes) -> bool:
    """Whether ``raw`` nests deeper than :data:`MAX_JSON_DEPTH`; a line with fewer brackets than
    that cannot, and is never scanned (two ``count`` calls in C)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    return json_depth(raw) > MAX_JSON_DEPTH


# A string to its closing quote, or to the end of the text when it has none (the line is invalid
# JSON then anyway): a pattern that needed the closing quote restarted its scan at every quote of
# an unterminated string, quadratic in the line (a 512 KB line cost ~40 min of CPU).
_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)


def _fast_record(
    raw: bytes, *, tenant_id: str, received_ms: int, latest_ms: int
) -> tuple[ShardRecord, _SkuPayload] | None:
    """The common line in one pass: a known type, the token's tenant, ``sku`` (not its old
    alias) and nothing wrong. The payload is decoded straight into its typed struct and goes to
    the topic as the client sent it. Anything else returns None and takes :func:`_parse_line`,
    which accepts the same lines (and builds the same record) and names every problem."""
    try:
        env = _envelope_decoder.decode(raw)
        if env.tenant_id != tenant_id:
            return None
        decoder = _payload_decoders.get(env.event_type)
        if decoder is None:
            return None
        typed = decoder.decode(env.payload)
        # The typed decode skips the fields it does not know without reading them: invalid
        # UTF-8 or a number past a double's range (1e400) there would go to the topic, where
        # any reader that parses the payload fails on it. Parsed once as every reader does
        # (+0.24 us a line), it is refused by _parse_line like any other bad payload.
        msgspec.json.decode(env.payload)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if typed.sku is None or typed.sku_id is not None:
        return None
    errors: list[LineError] = []
    ts_ms = _occurred_ms(env.occurred_at, received_ms, latest_ms, 0, errors)
    qty, value = _payload_numbers(typed, ts_ms, 0, errors)
    if errors:
        return None
    record = ShardRecord(
        event_id=env.event_id or str(uuid.uuid4()),
        tenant_id=tenant_id,
        event_type=env.event_type,
        ts_ms=ts_ms,
        received_ms=received_ms,
        sku=typed.sku,
        warehouse=typed.warehouse,
        qty=qty,
        value=value,
        payload=env.payload,
    )
    if isinstance(typed, SkuUpserted):
        record.lead_ms, record.moq, record.case_pack = replenishment_fields(typed)
    return record, typed


def _parse_line(
    raw: bytes,
    *,
    line_no: int,
    tenant_id: str,
    received_ms: int,
    latest_ms: int,
    batch: ParsedBatch,
) -> StreamEvent | list[LineError]:
    try:
        env = _envelope_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        name, message = _split_error(exc, "")
        missing = _missing_field(message)
        return [LineError(line_no, missing or name, message)]
    except (msgspec.DecodeError, RecursionError) as exc:
        return [LineError(line_no, "line", f"invalid JSON: {exc}")]

    errors: list[LineError] = []
    if env.tenant_id == tenant_id:  # already canonical (parse_ndjson normalised it): no parse
        tenant = tenant_id
    else:
        try:
            tenant = str(uuid.UUID(env.tenant_id))
        except ValueError:
            errors.append(LineError(line_no, "tenant_id", "must be a GUID"))
            tenant = env.tenant_id
    ts_ms = _occurred_ms(env.occurred_at, received_ms, latest_ms, line_no, errors)
    event = StreamEvent(
        event_id=env.event_id or str(uuid.uuid4()),
        tenant_id=tenant,
        event_type=env.event_type,
        ts_ms=ts_ms,
        received_ms=received_ms,
    )
    try:
        payload = msgspec.json.decode(env.payload)
    except (msgspec.DecodeError, RecursionError) as exc:
        return [*errors, LineError(line_no, "payload", f"invalid JSON: {exc}")]
    if not isinstance(payload, dict):
        return [*errors, LineError(line_no, "payload", "must be a JSON object")]
    payload_type = _PAYLOAD_TYPES.get(env.event_type)
    if payload_type is None:
        event.payload = payload
        if isinstance(payload.get("sku"), str) and isinstance(payload.get("warehouse"), str):
            event.sku, event.warehouse = payload["sku"], payload["warehouse"]
        if errors:
            return errors
        batch.unknown_types += 1
        return event
    try:
        typed = msgspec.convert(payload, type=payload_type)
    except msgspec.ValidationError as exc:
        name, message = _split_error(exc, "payload")
        missing = _missing_field(message)
        if missing:
            name = f"payload.{missing}"
        return [*errors, LineError(line_no, name, message)]
    sku = typed.sku
    if sku is None:
        if typed.sku_id is None:
            return [
                *errors,
                LineError(line_no, "payload.sku", "Object missing required field `sku`"),
            ]
        sku = typed.sku_id
    event.qty, event.value = _payload_numbers(typed, ts_ms, line_no, errors)
    if errors:
        return errors
    if isinstance(typed, SkuUpserted):
        event.lead_ms, event.moq, event.case_pack = replenishment_fields(typed)
    if typed.sku is None:
        batch.deprecated_fields.add("sku_id")
    event.sku, event.warehouse = sku, typed.warehouse
    # Keep everything the client sent (extra fields too), with `sku` in its 1.0 name.
    payload.pop("sku_id", None)
    payload["sku"] = sku
    event.payload = payload
    return event


MAX_LINE_BYTES: Final = 512 * 1024  # well under the broker's 1 MB message limit


def parse_ndjson(
    body: bytes,
    *,
    tenant_id: str,
    received_ms: int,
    max_errors: int = 100,
    max_line_bytes: int = MAX_LINE_BYTES,
    latest_ms: int | None = None,
) -> ParsedBatch:
    """Validate an NDJSON body line by line (1-based line numbers; blank lines are skipped).

    Every line is checked even after errors, so the client gets all problems at once (the first
    ``max_errors`` of them in ``errors``); ``foreign_tenant_lines`` lists lines whose tenant_id is
    not ``tenant_id``. Accepted lines are in ``events``, payloads parsed.

    ``latest_ms`` is the latest ``occurred_at`` accepted (default: ``received_ms`` plus
    :data:`DEFAULT_MAX_SKEW_MS`); the earliest is :data:`EARLIEST_TS_MS`. A line nested deeper
    than :data:`MAX_JSON_DEPTH` is refused.
    """
    return _scan(body, tenant_id, received_ms, max_errors, max_line_bytes, latest_ms, mode="events")


def encode_ndjson(
    body: bytes,
    *,
    tenant_id: str,
    received_ms: int,
    max_errors: int = 100,
    max_line_bytes: int = MAX_LINE_BYTES,
    latest_ms: int | None = None,
) -> ParsedBatch:
    """:func:`parse_ndjson` for the API: the same lines are accepted and refused, but accepted
    lines are in ``records``, as (Kafka key, topic record) pairs ready to produce, and
    ``events`` stays empty. The common line takes a one-pass path that keeps its payload as
    sent (~3x cheaper); the others are parsed and re-encoded."""
    return _scan(
        body, tenant_id, received_ms, max_errors, max_line_bytes, latest_ms, mode="records"
    )


def check_ndjson(
    body: bytes,
    *,
    tenant_id: str,
    received_ms: int,
    max_errors: int = 100,
    max_line_bytes: int = MAX_LINE_BYTES,
    latest_ms: int | None = None,
) -> ParsedBatch:
    """:func:`parse_ndjson` for bulk loads (the backfill): the same lines are accepted and
    refused, but accepted lines are in ``checked`` with their line numbers, as topic records
    the caller may still amend before encoding, plus each order's fields; the common line takes
    :func:`encode_ndjson`'s one-pass path."""
    return _scan(
        body, tenant_id, received_ms, max_errors, max_line_bytes, latest_ms, mode="checked"
    )


def _as_record(event: StreamEvent) -> ShardRecord:
    """The same record as ``event``; encoded, the same bytes as :func:`encode_stream_event`."""
    record = ShardRecord(
        event_id=event.event_id,
        tenant_id=event.tenant_id,
        event_type=event.event_type,
        ts_ms=event.ts_ms,
        received_ms=event.received_ms,
        sku=event.sku,
        warehouse=event.warehouse,
        qty=event.qty,
        value=event.value,
        lead_ms=event.lead_ms,
        moq=event.moq,
        case_pack=event.case_pack,
    )
    if event.payload:  # an empty one stays the default, which encoding omits as StreamEvent's
        record.payload = msgspec.Raw(_encoder.encode(event.payload))
    return record


def _scan(
    body: bytes,
    tenant_id: str,
    received_ms: int,
    max_errors: int,
    max_line_bytes: int,
    latest_ms: int | None,
    *,
    mode: Literal["events", "records", "checked"],
) -> ParsedBatch:
    batch = ParsedBatch()
    tenant_id = str(uuid.UUID(tenant_id))
    checked = mode == "checked"
    latest = received_ms + DEFAULT_MAX_SKEW_MS if latest_ms is None else latest_ms
    for line_no, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        message = None
        if len(raw) > max_line_bytes:
            message = f"the line is {len(raw)} bytes; at most {max_line_bytes} are accepted"
        elif _too_deep(raw):
            message = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        if message is not None:
            batch.error_lines += 1
            if len(batch.errors) < max_errors:
                batch.errors.append(LineError(line_no, "line", message))
            continue
        if mode != "events":
            fast = _fast_record(raw, tenant_id=tenant_id, received_ms=received_ms, latest_ms=latest)
            if fast is not None:
                record, typed = fast
                order = None
                if checked and isinstance(typed, OrderCreated):
                    order = (str(typed.order_id), typed.price, typed.currency)
                _keep(batch, line_no, record, order, checked=checked)
                continue
        result = _parse_line(
            raw,
            line_no=line_no,
            tenant_id=tenant_id,
            received_ms=received_ms,
            latest_ms=latest,
            batch=batch,
        )
        if isinstance(result, list):
            batch.error_lines += 1
            room = max_errors - len(batch.errors)
            if room > 0:
                batch.errors.extend(result[:room])
            continue
        if result.tenant_id != tenant_id:
            batch.foreign_tenant_lines.append(line_no)
            continue
        if mode == "events":
            batch.events.append(result)
            continue
        order = None
        if checked and result.event_type == EventType.ORDER_CREATED:
            p = result.payload
            order = (str(p["order_id"]), float(p["price"]), str(p["currency"]))
        _keep(batch, line_no, _as_record(result), order, checked=checked)
    return batch


def _keep(
    batch: ParsedBatch,
    line_no: int,
    record: ShardRecord,
    order: tuple[str, float, str] | None,
    *,
    checked: bool,
) -> None:
    """An accepted line into ``checked`` (with its number and order fields) or, encoded, into
    ``records`` with its Kafka key."""
    if checked:
        batch.checked.append(CheckedLine(line_no, record, order))
        return
    key = record.key
    batch.records.append((key.encode() if key is not None else None, _encoder.encode(record)))


def encode_stream_event(event: StreamEvent) -> bytes:
    return _encoder.encode(event)


def decode_stream_events(
    values: list[bytes], *, max_skew_ms: int = MAX_RECORD_SKEW_MS
) -> tuple[list[StreamEvent], list[int]]:
    """Decode topic records; returns the events and the indexes of records that failed (to
    decode, or :func:`record_problem`'s checks)."""
    events: list[StreamEvent] = []
    bad: list[int] = []
    for i, value in enumerate(values):
        try:
            event = _stream_decoder.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            bad.append(i)
            continue
        if record_problem(event, max_skew_ms=max_skew_ms) is not None:
            bad.append(i)  # another producer's garbage: the API never writes it
            continue
        events.append(event)
    return events, bad


@dataclass
class ShardBatch:
    """Topic records decoded for the shard loop (and the warehouse sink): the records, the
    partition (or any tag) each came with, and the refused ones as ``(tag, raw bytes)`` with the
    reason of each in ``reasons``.

    :func:`decode_stream_events` accepts and refuses the same records, but here payloads are
    not parsed. A bundle, which :func:`decode_stream_events` refuses, is expanded here (see
    :func:`encode_bundle`). ``max_skew_ms``: how far an event time may lie past the time the
    API received the event (see :func:`record_problem`)."""

    records: list[ShardRecord] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    refused: list[tuple[int, bytes]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    max_skew_ms: int = MAX_RECORD_SKEW_MS

    def __len__(self) -> int:
        return len(self.records)

    def add(self, values: Iterable[bytes], partitions: Iterable[int]) -> None:
        """Decode ``values`` (each with its partition) onto the batch: a record is refused as
        :func:`decode_stream_events` refuses it, a bundle element that fails the same checks
        alone (re-encoded), a bundle that is empty or not a JSON array of records as a whole
        (one refused record, whatever it held)."""
        decode, records, tags, skew = (
            _shard_decoder.decode,
            self.records,
            self.partitions,
            self.max_skew_ms,
        )
        for value, partition in zip(values, partitions, strict=True):
            if value[:1] == BUNDLE_START:
                self._add_bundle(value, partition)
                continue
            try:
                record = decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
                self._refuse(partition, value, f"undecodable: {_short(exc)}")
                continue
            problem = record_problem(record, max_skew_ms=skew)
            if problem is None:
                records.append(record)
                tags.append(partition)
            else:
                self._refuse(partition, value, problem)

    def _refuse(self, partition: int, value: bytes, reason: str) -> None:
        self.refused.append((partition, value))
        self.reasons.append(reason)

    def _add_bundle(self, value: bytes, partition: int) -> None:
        reason = "an empty bundle"
        try:
            bundle = _bundle_decoder.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            bundle, reason = [], f"undecodable bundle: {_short(exc)}"
        if not bundle:  # not a bundle, or an empty one: refused whole (counted as one)
            self._refuse(partition, value, reason)
            return
        for record in bundle:
            problem = record_problem(record, max_skew_ms=self.max_skew_ms)
            if problem is None:
                self.records.append(record)
                self.partitions.append(partition)
            else:
                self._refuse(partition, _encoder.encode(record), problem)


def _short(exc: BaseException) -> str:
    return str(exc)[:200]


def record_problem(
    record: ShardRecord | StreamEvent, *, max_skew_ms: int = MAX_RECORD_SKEW_MS
) -> str | None:
    """Why a decoded topic record must not be folded, or None: the API's bounds, checked again
    where records are read, since any producer can write to a topic (defence in depth: one such
    record must never stop a shard). Clock-free, so a replay refuses exactly the same records:
    an event time may lie at most ``max_skew_ms`` past the record's ``received_ms``."""
    received = record.received_ms
    if not 0 <= received <= MAX_TS_MS:
        return f"received_ms {received} out of range"
    ts = record.ts_ms
    if not EARLIEST_TS_MS <= ts <= min(received + max_skew_ms, MAX_TS_MS):
        return f"ts_ms {ts} out of range (earliest {EARLIEST_TS_MS}, received_ms + skew)"
    if not 0 <= record.qty <= MAX_QUANTITY:
        return f"qty {record.qty} out of range (0..{MAX_QUANTITY})"
    value = record.value
    if record.event_type == EventType.STOCK_ORDERED:
        if not EARLIEST_TS_MS <= value <= MAX_TS_MS:
            return f"expected_at {value} out of range"
    elif not -MAX_QUANTITY <= value <= MAX_QUANTITY:
        return f"value {value} out of range (±{MAX_QUANTITY})"
    if not 0 <= record.lead_ms <= MAX_LEAD_TIME_HOURS * 3_600_000:
        return f"lead_ms {record.lead_ms} out of range"
    if not (0 <= record.moq <= MAX_QUANTITY and 0 <= record.case_pack <= MAX_QUANTITY):
        return f"moq {record.moq} or case_pack {record.case_pack} out of range"
    payload = record.payload
    is_object = (
        memoryview(payload)[:1].tobytes() == b"{"
        if isinstance(payload, msgspec.Raw)
        else isinstance(payload, dict)
    )
    if not is_object:
        return "payload is not a JSON object"
    return None


#: A bundle: several records of one partition as one topic record, a JSON array of them in
#: their order (the backfill produces its history this way; the live API never does). The shard
#: folds its elements as if they had come one by one.
BUNDLE_START: Final = b"["
BUNDLE_MAX_EVENTS: Final = 100  # what the backfill puts in one; the shard sizes its reads by it


def encode_bundle(records: Sequence[bytes]) -> bytes:
    """One topic record of already encoded records (each a JSON object), in their order."""
    return b"[" + b",".join(records) + b"]"
