"""CSV export of a tenant's alerts and live predictions, streamed in chunks of bytes.

The file is what a spreadsheet opens cleanly and a program parses with any RFC 4180 reader:

* UTF-8 with a byte order mark (Excel otherwise guesses the encoding; release 1.0.0 fixed that
  bug in the dashboard), CRLF line ends, a header row, fields quoted when they hold a comma, a
  quote or a line break (quotes doubled);
* a fixed column order, the fields of the API models: :data:`ALERT_COLUMNS` (``AlertOut``) and
  :data:`PREDICTION_COLUMNS` (``PredictionOut``);
* every time in UTC, ISO 8601 with a ``Z`` (the read model stores them so; anything else is
  converted);
* text a tenant supplied (SKU, warehouse, ...) that starts with ``=``, ``+``, ``-``, ``@``, a tab
  or a carriage return gets a leading ``'``, so a spreadsheet shows it instead of running it as a
  formula (OWASP "CSV injection").

Alerts come out oldest first (by ``created_at``): reading a sorted set by rank upwards is stable
while the shards append new alerts. Redis is read in chunks of thousands of members (one ZRANGE
or one pipeline a chunk), never one command a row.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

import msgspec

from aurora_ray.adapters.redis_store import RedisStore, tenant_key

__all__ = [
    "ALERT_COLUMNS",
    "BOM",
    "PREDICTION_COLUMNS",
    "CsvExport",
    "ExportFilter",
    "ExportParamError",
    "alert_rows_csv",
    "export_alerts",
    "export_predictions",
    "neutralise",
    "parse_filter",
    "parse_time",
    "utc_text",
]

BOM: Final = b"\xef\xbb\xbf"
ALERT_COLUMNS: Final = (
    "alert_id",
    "sku",
    "warehouse",
    "predicted_oos_at",
    "probability",
    "as_of",
    "created_at",
    "model_version",
    "order_by",
    "recommended_qty",
    "predicted_oos_at_p10",
    "predicted_oos_at_p90",
)
PREDICTION_COLUMNS: Final = (
    "sku",
    "warehouse",
    "on_hand",
    "demand_rate_per_hour",
    "probability",
    "predicted_oos_at",
    "model_version",
    "as_of",
)
_FORMULA_START: Final = frozenset("=+-@\t\r")
ALERT_CHUNK: Final = 10_000  # sorted-set members a ZRANGE
PREDICTION_CHUNK: Final = 2_000  # SKUs a pipeline (each SKU: one HVALS of its warehouses)

Progress = Callable[[int, int | None], None]
"""Called after each chunk with (rows written so far, rows expected or None)."""


class ExportParamError(ValueError):
    """A bad filter value; ``param`` names the parameter (``since``, ``min_probability``...)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass(frozen=True)
class ExportFilter:
    """The list endpoint's filters plus ``until``. Alerts: ``since <= created_at < until``;
    predictions: the same bounds on ``as_of`` (the event time the prediction reflects)."""

    since: datetime | None = None
    until: datetime | None = None
    sku: str | None = None
    warehouse: str | None = None
    min_probability: float | None = None


def parse_time(text: str, param: str) -> datetime:
    """ISO 8601 with a time zone (``2025-06-02T09:00:00Z``), as an aware datetime."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ExportParamError(
            param, f"expected ISO 8601 with a time zone, e.g. 2025-06-02T09:00:00Z; got {text!r}"
        ) from exc
    if moment.tzinfo is None:
        raise ExportParamError(param, f"must carry a time zone, e.g. ...Z; got {text!r}")
    return moment


def parse_filter(
    *,
    since: str | None = None,
    until: str | None = None,
    sku: str | None = None,
    warehouse: str | None = None,
    min_probability: str | float | None = None,
) -> ExportFilter:
    """Filters from text (query string, command line); raises :class:`ExportParamError`."""
    start = parse_time(since, "since") if since else None
    end = parse_time(until, "until") if until else None
    if start is not None and end is not None and end <= start:
        raise ExportParamError("until", "must be later than since")
    floor: float | None = None
    if min_probability is not None and min_probability != "":
        try:
            floor = float(min_probability)
        except ValueError as exc:
            raise ExportParamError(
                "min_probability", f"expected a number in [0, 1]; got {min_probability!r}"
            ) from exc
        if not 0.0 <= floor <= 1.0:
            raise ExportParamError("min_probability", f"must be in [0, 1]; got {floor!r}")
    for name, value in (("sku", sku), ("warehouse", warehouse)):
        if value is not None and not value.strip():
            raise ExportParamError(name, "must not be empty")
    return ExportFilter(
        since=start, until=end, sku=sku or None, warehouse=warehouse or None, min_probability=floor
    )


def neutralise(text: str) -> str:
    """``'`` before text a spreadsheet would run as a formula."""
    return "'" + text if text and text[0] in _FORMULA_START else text


def utc_text(value: str | None) -> str | None:
    """A stored time as UTC ISO 8601 with ``Z``; the stored form (already so) passes as is."""
    if value is None or value == "" or value.endswith("Z"):
        return value or None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _Alert(msgspec.Struct):
    alert_id: str
    sku: str
    warehouse: str
    probability: float
    as_of: str
    created_at: str
    model_version: str
    predicted_oos_at: str | None = None
    # The order the alert calls for (empty cells for alerts written before recommendations).
    order_by: str | None = None
    recommended_qty: int | None = None
    predicted_oos_at_p10: str | None = None
    predicted_oos_at_p90: str | None = None


class _Prediction(msgspec.Struct):
    sku: str
    warehouse: str
    on_hand: int
    demand_rate_per_hour: float
    probability: float
    as_of: str
    model_version: str
    predicted_oos_at: str | None = None


_decode_alert = msgspec.json.Decoder(_Alert).decode
_decode_prediction = msgspec.json.Decoder(_Prediction).decode


def _time_key(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _number(value: float) -> float | str:
    return value if math.isfinite(value) else ""


class _CsvChunks:
    """Rows in, UTF-8 bytes out: one csv writer over a buffer that is emptied each chunk."""

    def __init__(self, header: Sequence[str]) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")
        self._writer.writerow(header)

    def take(self, rows: Sequence[Sequence[Any]] = ()) -> bytes:
        return self.take_text(rows).encode("utf-8")

    def take_text(self, rows: Sequence[Sequence[Any]] = ()) -> str:
        self._writer.writerows(rows)
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text


def _alert_row(a: _Alert) -> tuple[Any, ...]:
    return (
        neutralise(a.alert_id),
        neutralise(a.sku),
        neutralise(a.warehouse),
        utc_text(a.predicted_oos_at),
        _number(a.probability),
        utc_text(a.as_of),
        utc_text(a.created_at),
        neutralise(a.model_version),
        utc_text(a.order_by),
        a.recommended_qty,
        utc_text(a.predicted_oos_at_p10),
        utc_text(a.predicted_oos_at_p90),
    )


def _prediction_row(p: _Prediction) -> tuple[Any, ...]:
    return (
        neutralise(p.sku),
        neutralise(p.warehouse),
        p.on_hand,
        _number(p.demand_rate_per_hour),
        _number(p.probability),
        utc_text(p.predicted_oos_at),
        neutralise(p.model_version),
        utc_text(p.as_of),
    )


def _alert_line(a: _Alert) -> str | None:
    """The row as a CSV line without the csv module (3x faster), or None when a time needs
    converting; the caller checks that no field needs quoting."""
    oos = a.predicted_oos_at or ""
    due, p10, p90 = a.order_by or "", a.predicted_oos_at_p10 or "", a.predicted_oos_at_p90 or ""
    if not (
        a.as_of.endswith("Z")
        and a.created_at.endswith("Z")
        and (not oos or oos[-1] == "Z")
        and (not due or due[-1] == "Z")
        and (not p10 or p10[-1] == "Z")
        and (not p90 or p90[-1] == "Z")
    ):
        return None
    aid, sku, wh, mv = a.alert_id, a.sku, a.warehouse, a.model_version
    if aid[:1] in _FORMULA_START:
        aid = "'" + aid
    if sku[:1] in _FORMULA_START:
        sku = "'" + sku
    if wh[:1] in _FORMULA_START:
        wh = "'" + wh
    if mv[:1] in _FORMULA_START:
        mv = "'" + mv
    p = a.probability
    prob = repr(p) if math.isfinite(p) else ""
    qty = "" if a.recommended_qty is None else a.recommended_qty
    return (
        f"{aid},{sku},{wh},{oos},{prob},{a.as_of},{a.created_at},{mv},{due},{qty},{p10},{p90}\r\n"
    )


def _alert_chunk(alerts: list[_Alert], out: _CsvChunks) -> bytes:
    """CSV bytes of a chunk: joined lines when no field needs quoting (commas, quotes and line
    breaks counted over the whole chunk); else the csv module for the rows that need it."""
    lines = [_alert_line(a) for a in alerts]
    if None not in lines:
        text = "".join(cast(list[str], lines))
        if _plain(text, len(lines)):
            return text.encode("utf-8")
    parts: list[str] = []
    for a, line in zip(alerts, lines, strict=True):
        parts.append(
            line if line is not None and _plain(line, 1) else out.take_text([_alert_row(a)])
        )
    return "".join(parts).encode("utf-8")


def _plain(text: str, lines: int) -> bool:
    """True when ``lines`` joined lines hold no comma, quote or line break inside a field."""
    return (
        text.count(",") == (len(ALERT_COLUMNS) - 1) * lines
        and text.count("\n") == lines
        and text.count("\r") == lines
        and '"' not in text
    )


def _keep_alert(a: _Alert, f: ExportFilter) -> bool:
    if f.warehouse is not None and a.warehouse != f.warehouse:
        return False
    return f.min_probability is None or a.probability >= f.min_probability


def alert_rows_csv(alerts: Sequence[bytes | str], f: ExportFilter | None = None) -> bytes:
    """CSV (BOM, header, rows) of alert JSON documents as the read model stores them; filters
    by warehouse and probability only (time and SKU are chosen by key and rank in Redis)."""
    out = _CsvChunks(ALERT_COLUMNS)
    flt = f or ExportFilter()
    kept = [a for a in map(_decode_alert, alerts) if _keep_alert(a, flt)]
    return BOM + out.take() + (_alert_chunk(kept, out) if kept else b"")


class CsvExport:
    """An iterable of CSV byte chunks (the first starts with the BOM and the header).

    ``rows`` counts the data rows written so far; ``expected`` is known up front for alerts (the
    members in the time range, before the warehouse and probability filters)."""

    def __init__(
        self,
        chunks: Callable[[CsvExport], Iterator[bytes]],
        *,
        kind: str,
        expected: int | None,
        progress: Progress | None = None,
    ) -> None:
        self.kind = kind
        self.expected = expected
        self.rows = 0
        self.bytes = 0
        self._chunks = chunks
        self._progress = progress

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks(self):
            self.bytes += len(chunk)
            if self._progress is not None:
                self._progress(self.rows, self.expected)
            yield chunk

    def write_to(self, handle: Any) -> int:
        """Write every chunk to a binary file object; returns the data rows written."""
        for chunk in self:
            handle.write(chunk)
        return self.rows


def _score_bound(moment: datetime | None, *, exclusive: bool, default: str) -> str:
    if moment is None:
        return default
    text = repr(moment.timestamp() * 1000.0)
    return f"({text}" if exclusive else text


def export_alerts(
    store: RedisStore,
    tenant_id: str,
    f: ExportFilter | None = None,
    *,
    chunk: int = ALERT_CHUNK,
    progress: Progress | None = None,
) -> CsvExport:
    """The tenant's alerts as CSV, oldest first. Finds the rank range of ``[since, until)`` now
    (so a Redis failure surfaces before any byte is sent), then reads it ``chunk`` members a
    ZRANGE while iterating."""
    flt = f or ExportFilter()
    key = (
        tenant_key(tenant_id, "alerts", "sku", flt.sku)
        if flt.sku
        else tenant_key(tenant_id, "alerts")
    )
    client = store.client
    pipe = client.pipeline(transaction=False)
    pipe.zcount(key, "-inf", _score_bound(flt.since, exclusive=True, default="-inf"))
    pipe.zcount(key, "-inf", _score_bound(flt.until, exclusive=True, default="+inf"))
    below, upto = (int(v) for v in pipe.execute())
    if flt.since is None:
        below = 0
    first, end = below, max(below, upto)  # ranks [first, end)

    def chunks(state: CsvExport) -> Iterator[bytes]:
        out = _CsvChunks(ALERT_COLUMNS)
        yield BOM + out.take()
        rank = first
        while rank < end:
            stop = min(end, rank + chunk) - 1
            members = cast(list[bytes], client.zrange(key, rank, stop))
            if not members:
                break  # trimmed under us: what is left is gone
            rank += len(members)
            kept = [a for a in map(_decode_alert, members) if _keep_alert(a, flt)]
            state.rows += len(kept)
            if kept:
                yield _alert_chunk(kept, out)

    return CsvExport(chunks, kind="alerts", expected=end - first, progress=progress)


def export_predictions(
    store: RedisStore,
    tenant_id: str,
    f: ExportFilter | None = None,
    *,
    chunk: int = PREDICTION_CHUNK,
    progress: Progress | None = None,
) -> CsvExport:
    """Each SKU's live prediction per warehouse as CSV, ordered by SKU then warehouse; one
    pipeline of HVALS (or HGET with ``warehouse``) per ``chunk`` SKUs."""
    flt = f or ExportFilter()
    client = store.client
    skus_key = tenant_key(tenant_id, "skus")
    total = 1 if flt.sku else int(client.zcard(skus_key))
    low = flt.since.timestamp() if flt.since else None
    high = flt.until.timestamp() if flt.until else None

    def keep(p: _Prediction) -> bool:
        if flt.min_probability is not None and not p.probability >= flt.min_probability:
            return False
        if low is None and high is None:
            return True
        at = _time_key(p.as_of)
        return (low is None or at >= low) and (high is None or at < high)

    def chunks(state: CsvExport) -> Iterator[bytes]:
        out = _CsvChunks(PREDICTION_COLUMNS)
        yield BOM + out.take()
        start = 0
        while start < total:
            if flt.sku:
                skus: list[bytes | str] = [flt.sku]
            else:
                skus = list(cast(list[bytes], client.zrange(skus_key, start, start + chunk - 1)))
                if not skus:
                    break
            start += len(skus)
            pipe = client.pipeline(transaction=False)
            for s in skus:
                name = s.decode() if isinstance(s, bytes) else s
                if flt.warehouse:
                    pipe.hget(tenant_key(tenant_id, "pred", name), flt.warehouse)
                else:
                    pipe.hvals(tenant_key(tenant_id, "pred", name))
            found: list[_Prediction] = []
            for result in pipe.execute():
                for value in result if isinstance(result, list) else [result]:
                    if value:
                        p = _decode_prediction(value)
                        if keep(p):
                            found.append(p)
            found.sort(key=lambda p: (p.sku, p.warehouse))
            state.rows += len(found)
            if found:
                yield out.take([_prediction_row(p) for p in found])

    return CsvExport(chunks, kind="predictions", expected=None, progress=progress)
