"""Stream: events/s from a pre-filled topic to scored state and alerts in Redis.

Per shard count (1, 2, 4 in the full run): a fresh topic is pre-filled with the records the API
would produce (stock snapshots for every SKU, then orders), then that many ``TenantShard`` actors
consume it. One SKU in a hundred starts out of stock, so the alert path runs too and the alerts
written prove the shards scored: exactly one each (the orders that follow fall inside the dedup
window); the others have stock for the whole run and raise none. The figure is the events
folded over the shards' own span, from the first records in hand to the last micro-batch
written (``bench.shards.run_shards``); a run that folded nothing, or not every record, fails.
Anchor: a bare consumer (assign + consume(10000), the notes' three fetch settings) reading the
same topic from this process.

The dedup cost: every run has the event-id window on (the default), and its ids are all
distinct (the API's own for the snapshots, the generator's for the orders), so every record's id
is hashed, looked up and inserted (``event_ids_remembered`` equals the records folded). The
first shard count then runs again on a fresh copy of the topic with the window off
(``idempotency_window_events=0``), right after, and its row gives the ratio on ÷ off.

The recommendations' cost likewise: every run computes and writes them (the default); the first
shard count runs once more with ``recommendations=False`` (the scoring of before issue 16), and
its row gives the ratio on ÷ off (target: on >= 0.9 x off).
"""

from __future__ import annotations

from bench.common import (
    Row,
    ScenarioResult,
    Size,
    Target,
    consume_raw,
    events_per_s,
    order_lines,
    produce_raw,
    snapshot_lines,
    stream_tenant,
    topic_records,
)
from bench.shards import WINDOW_OFF, run_shards

NAME = "stream"
_TEMPLATE = "00000000-0000-0000-0000-00000000be0c"
_ON_HAND = 50_000  # far above the ~100 units a SKU sells in the full run: no alert


def out_of_stock(size: Size) -> int:
    """The SKUs (the first ones) that start out of stock: each raises exactly one alert."""
    return max(1, size.stream_skus // 100)


def _records(size: Size) -> list[tuple[bytes | None, bytes]]:
    out = out_of_stock(size)
    lines = snapshot_lines(_TEMPLATE, range(out), on_hand=0)
    lines += snapshot_lines(_TEMPLATE, range(out, size.stream_skus), on_hand=_ON_HAND)
    lines += order_lines(
        _TEMPLATE, size.stream_events - size.stream_skus, skus=size.stream_skus, seed=2
    )
    return topic_records(_TEMPLATE, lines)


def _for_tenant(
    records: list[tuple[bytes | None, bytes]], tenant_id: str
) -> list[tuple[bytes | None, bytes]]:
    old, new = _TEMPLATE.encode(), tenant_id.encode()
    return [(key, value.replace(old, new)) for key, value in records]


def _row(size: Size, shards: int, rate: float | None, raw_rate: float | None, note: str) -> Row:
    return Row(
        metric=f"stream events/s, {shards} shard(s), {size.stream_skus} SKUs",
        unit="events/s",
        aurora=rate,
        anchor=raw_rate,
        anchor_name="raw consumer, 1 process",
        target=">= 45000 (aim 100000)",
        ok=None if rate is None else rate >= 45_000,
        note=note,
    )


def ratio(on: float | None, off: float | None) -> float | None:
    """``on / off``, None unless both were measured."""
    if on is None or off is None or off != off or on != on or off <= 0:
        return None
    return on / off


def window_off_row(
    size: Size, shards: int, *, on: float | None, off: float | None, note: str
) -> Row:
    """The same shard count with the event-id window off, and what the window costs (judged
    in the full run only: a quick run's topic folds in a tenth of a second)."""
    share = ratio(on, off)
    judged = not size.quick
    cost = "–" if share is None else f"{share:.2f}"
    return Row(
        metric=(
            f"stream events/s, {shards} shard(s), {size.stream_skus} SKUs, event-id window "
            f"off (idempotency_window_events=0); window on ÷ off = {cost}"
        ),
        unit="events/s",
        aurora=off,
        anchor=on,
        anchor_name="window on (default), the row above",
        target="on >= 0.9 x off" if judged else "",
        ok=None if share is None or not judged else share >= 0.9,
        note=note,
    )


def recommendations_off_row(
    size: Size, shards: int, *, on: float | None, off: float | None, note: str
) -> Row:
    """The same shard count without replenishment recommendations, and what they cost (judged
    in the full run only, as the window's)."""
    share = ratio(on, off)
    judged = not size.quick
    cost = "–" if share is None else f"{share:.2f}"
    return Row(
        metric=(
            f"stream events/s, {shards} shard(s), {size.stream_skus} SKUs, recommendations off "
            f"(recommendations=false); on ÷ off = {cost}"
        ),
        unit="events/s",
        aurora=off,
        anchor=on,
        anchor_name="recommendations on (default), the first row",
        target="on >= 0.9 x off" if judged else "",
        ok=None if share is None or not judged else share >= 0.9,
        note=note,
    )


#: The runs besides the default one: their label and shard settings.
VARIANTS: dict[str, dict[str, object]] = {
    "window-off": dict(WINDOW_OFF),
    "recommendations-off": {"recommendations": False},
}


def judge(
    *, expected: int, events: int, seconds: float | None, alerts: int, expected_alerts: int
) -> tuple[float | None, list[str]]:
    """The rate of one shard run, or None with what went wrong: no rate from a run that folded
    nothing or not all of the topic, and the alerts must be exactly those of the SKUs that
    started out of stock."""
    problems = []
    if events < expected:
        problems.append(f"folded {events} of {expected} records")
    measured = events > 0 and seconds is not None and seconds > 0
    if not measured:
        problems.append("no span of work measured")
    if alerts != expected_alerts:
        problems.append(f"{alerts} alerts written, expected {expected_alerts}")
    rate = events_per_s(events, seconds) if measured and seconds and events >= expected else None
    return rate, problems


def run(target: Target, size: Size) -> ScenarioResult:
    settings = target.settings
    partitions = settings.partitions_per_topic
    target.progress(f"stream: building {size.stream_events} records")
    template = _records(size)
    expected_alerts = out_of_stock(size)
    rows: list[Row] = []
    details: dict[str, object] = {
        "events": len(template),
        "skus": size.stream_skus,
        "out_of_stock_skus": expected_alerts,
    }
    raw_rate: float | None = None
    by_shards: dict[str, object] = {}
    failures: list[str] = []
    # (shards, variant): each shard count as deployed (""); the first also with the window off
    # and with recommendations off.
    first = size.shard_counts[0]
    runs = [(first, ""), *((first, variant) for variant in VARIANTS)]
    runs += [(shards, "") for shards in size.shard_counts[1:]]
    rates: dict[int, float | None] = {}
    for shards, variant in runs:
        window = variant != "window-off"
        tenant_id = stream_tenant(target)
        topic = settings.topic_for(tenant_id)
        delivered = produce_raw(
            settings.kafka_bootstrap, topic, _for_tenant(template, tenant_id)
        ).delivered
        if raw_rate is None:
            target.progress("stream anchor: raw consumer")
            consumed, seconds = consume_raw(settings.kafka_bootstrap, topic, partitions, delivered)
            raw_rate = events_per_s(consumed, seconds) if consumed else None
            details["raw_consumer"] = {"events": consumed, "seconds": seconds, "rate": raw_rate}
        label = f"{shards} shard(s)" + (f", {variant.replace('-', ' ')}" if variant else "")
        target.progress(f"stream: {label} on {delivered} records")
        events, span, info = run_shards(
            target,
            tenant_id,
            shards=shards,
            expected=delivered,
            overrides=VARIANTS.get(variant),
        )
        counters = target.store.counters(tenant_id)
        alerts = counters.get("alerts_generated", 0)
        rate, problems = judge(
            expected=delivered,
            events=events,
            seconds=span,
            alerts=alerts,
            expected_alerts=expected_alerts,
        )
        remembered = int(info["event_ids_remembered"])
        if window and events and remembered != events:
            problems.append(f"{remembered} event ids remembered for {events} records")
        by_shards[f"{shards}-{variant}" if variant else str(shards)] = {
            **info,
            "rate": rate,
            "counters": counters,
        }
        note = f"{alerts} alerts ({expected_alerts} SKUs out of stock)"
        if span is not None:
            note += f"; {events} events in {span:.2f} s"
        if window:
            note += f"; {remembered} event ids in the window"
        if problems:
            note += "; FAILED: " + ", ".join(problems)
            failures.append(f"{label}: " + ", ".join(problems))
        if not variant:
            rates[shards] = rate
            rows.append(_row(size, shards, rate, raw_rate, note))
        elif variant == "window-off":
            rows.append(window_off_row(size, shards, on=rates.get(shards), off=rate, note=note))
        else:
            rows.append(
                recommendations_off_row(size, shards, on=rates.get(shards), off=rate, note=note)
            )
    details["by_shards"] = by_shards
    for variant, name in (
        ("window-off", "window_on_over_off"),
        ("recommendations-off", "recommendations_on_over_off"),
    ):
        off = by_shards.get(f"{first}-{variant}")
        details[name] = ratio(rates.get(first), off.get("rate") if isinstance(off, dict) else None)
    return ScenarioResult(
        NAME,
        "failed" if failures else "ok",
        reason="; ".join(failures),
        rows=rows,
        details=details,
    )
