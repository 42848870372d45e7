"""Stock-out predictors compared on the same event stream.

A predictor is fed the simulated envelopes in event-time order (in chunks) and records every
probability it would show a user, as ``(sku, time, probability)`` points. Alerts at any threshold
are derived from those points with the live system's rule (``metrics.alerts_from_series``), so
the comparison cannot drift from what the product does.

* :class:`AuroraAnalytic` runs the shards' own code: ``parse_ndjson`` (the API's validation),
  ``EventBatch.from_events`` and ``apply_batch``, scoring every event.
* :class:`NightlyBatch` is what competitors sell: once a day at 00:00 it forecasts demand from a
  28-day moving average of daily sales and scores P(demand over the horizon >= on hand) with a
  Poisson model; the probability then stays as it is until the next night.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from aurora_ray.demo_stream import to_ndjson
from aurora_ray.domain.events import parse_ndjson
from aurora_ray.domain.features import event_features
from aurora_ray.domain.scoring import score
from aurora_ray.domain.state import (
    BatchOutput,
    EventBatch,
    ScoringParams,
    SkuState,
    apply_batch,
    inbound_terms,
)
from aurora_ray.domain.timers import fold_with_timers

__all__ = [
    "METHODS",
    "AuroraAnalytic",
    "LearnedScorer",
    "NightlyBatch",
    "Predictor",
    "Series",
    "make_predictor",
]

F64 = NDArray[np.float64]
_DAY_S = 86_400.0


@dataclass
class Series:
    """Probability points a predictor showed: parallel arrays (SKU names, epoch s, p)."""

    skus: list[str] = field(default_factory=list)
    times: list[F64] = field(default_factory=list)
    probs: list[F64] = field(default_factory=list)

    def add(self, skus: Sequence[str], times: F64, probs: F64) -> None:
        keep = ~np.isnan(probs)
        if keep.all():
            self.skus.extend(skus)
        else:
            self.skus.extend(s for s, k in zip(skus, keep, strict=True) if k)
        self.times.append(times[keep])
        self.probs.append(probs[keep])

    def arrays(self) -> tuple[NDArray[np.str_], F64, F64]:
        times = np.concatenate(self.times) if self.times else np.empty(0)
        probs = np.concatenate(self.probs) if self.probs else np.empty(0)
        return np.array(self.skus, dtype=np.str_), times, probs


class Predictor(Protocol):
    name: str
    series: Series

    def feed(self, events: Sequence[Mapping[str, Any]]) -> tuple[list[str], F64, F64]:
        """Consume envelopes (event-time order); return the points they produced."""
        ...


def _sku_of(key: str) -> str:
    return key.rsplit("@", 1)[0]


class AuroraAnalytic:
    """The live scorer, exactly as a shard runs it."""

    name = "aurora-analytic"

    def __init__(self, tenant_id: str, params: ScoringParams | None = None) -> None:
        self.tenant_id = tenant_id
        self.params = params or ScoringParams()
        self.state = SkuState()
        self.series = Series()
        self.elapsed_s = 0.0

    def feed(self, events: Sequence[Mapping[str, Any]]) -> tuple[list[str], F64, F64]:
        if not events:
            return [], np.empty(0), np.empty(0)
        began = time.perf_counter()
        parsed = parse_ndjson(
            to_ndjson([dict(e) for e in events]),
            tenant_id=self.tenant_id,
            received_ms=int(time.time() * 1000),
            max_errors=10,
        )
        if parsed.errors:
            raise ValueError(f"the simulated stream failed validation: {parsed.errors[:3]}")
        # One partition: the evaluation stream is in event-time order, so its timers fire where
        # each of a topic's partitions would fire them (see aurora_ray.domain.timers).
        outputs = fold_with_timers(self.state, parsed.events, [0] * len(parsed.events), self.params)
        keys = self.state.keys
        skus: list[str] = []
        times: list[F64] = []
        probs: list[F64] = []
        for output in outputs:
            skus.extend(_sku_of(keys[r]) for r in output.event_rows.tolist())
            times.append(output.event_as_of_s)
            probs.append(self._probability(output))
        time_s = np.concatenate(times) if times else np.empty(0)
        probability = np.concatenate(probs) if probs else np.empty(0)
        self.series.add(skus, time_s, probability)
        self.elapsed_s += time.perf_counter() - began
        return skus, time_s, probability

    def _probability(self, output: BatchOutput) -> F64:
        return output.event_probability


class LearnedScorer(AuroraAnalytic):
    """The same fold, with the probability from a model over :func:`event_features`.

    ``model`` maps a feature matrix to probabilities (e.g. a trained XGBoost booster wrapped by
    :func:`aurora_ray.evaluation.learned.train_xgboost`). Rows whose stock is unknown stay NaN.
    """

    name = "xgboost"

    def __init__(
        self,
        tenant_id: str,
        model: Callable[[F64], F64],
        params: ScoringParams | None = None,
    ) -> None:
        super().__init__(tenant_id, params)
        self.model = model

    def _probability(self, output: BatchOutput) -> F64:
        features = event_features(output)
        known = ~np.isnan(output.event_probability)
        probability = np.full(len(features), np.nan)
        if known.any():
            probability[known] = self.model(features[known])
        return probability


class NightlyBatch:
    """Daily 00:00 forecast from a 28-day moving average of daily sales (Poisson demand)."""

    name = "nightly-batch"

    def __init__(
        self,
        tenant_id: str,
        *,
        horizon_s: float = 48 * 3600.0,
        window_days: int = 28,
        inbound: bool = True,
    ):
        self.tenant_id = tenant_id
        self.horizon_s = horizon_s
        self.window_days = window_days
        self.state = SkuState()  # stock is tracked with the same fold; only scoring differs
        self.params = ScoringParams(horizon_s=horizon_s, inbound=inbound)
        self.sales: dict[str, list[tuple[float, int]]] = {}
        self.series = Series()
        self.day: float | None = None  # the last midnight that was scored
        self.elapsed_s = 0.0

    def _nightly(self, midnight: float) -> tuple[list[str], F64, F64]:
        keys = list(self.state.keys)
        known = self.state.col("stock_known").astype(bool)
        on_hand = self.state.col("on_hand").astype(np.float64)
        since = midnight - self.window_days * _DAY_S
        rate_per_s = np.zeros(len(keys))
        for i, key in enumerate(keys):
            history = self.sales.get(key)
            if history:
                while history and history[0][0] < since:
                    history.pop(0)
                rate_per_s[i] = sum(q for _, q in history) / (self.window_days * _DAY_S)
        # Poisson demand (second moment rate = rate), with the open purchase orders the stream
        # told of, as for Aurora: the batch knows what the shop has on order too.
        at = np.full(len(keys), midnight)
        scores = score(
            on_hand=on_hand,
            rate=rate_per_s,
            second_moment_rate=rate_per_s,
            as_of_s=at,
            horizon_s=self.horizon_s,
            **inbound_terms(
                at,
                self.state.col("inbound_qty").astype(np.int64),
                self.state.col("inbound_eta").astype(np.float64),
                self.params,
            ),
        )
        prob = np.where(known, scores.probability, np.nan)
        skus = [_sku_of(k) for k in keys]
        times = np.full(len(keys), midnight)
        self.series.add(skus, times, prob)
        return skus, times, prob

    def feed(self, events: Sequence[Mapping[str, Any]]) -> tuple[list[str], F64, F64]:
        began = time.perf_counter()
        out_skus: list[str] = []
        out_t: list[F64] = []
        out_p: list[F64] = []
        chunk: list[Mapping[str, Any]] = []

        def flush() -> None:
            if chunk:
                parsed = parse_ndjson(
                    to_ndjson([dict(e) for e in chunk]),
                    tenant_id=self.tenant_id,
                    received_ms=int(time.time() * 1000),
                )
                apply_batch(self.state, EventBatch.from_events(parsed.events), self.params)
                for e in parsed.events:
                    if e.event_type == "order.created" and e.key:
                        self.sales.setdefault(e.key, []).append((e.ts_ms / 1000.0, e.qty))
                chunk.clear()

        for event in events:
            ts = _epoch(str(event["occurred_at"]))
            midnight = ts - ts % _DAY_S
            if self.day is None:
                self.day = midnight
            while midnight > self.day:
                flush()
                self.day += _DAY_S
                s, t, p = self._nightly(self.day)
                out_skus.extend(s)
                out_t.append(t)
                out_p.append(p)
            chunk.append(event)
        flush()
        self.elapsed_s += time.perf_counter() - began
        if not out_t:
            return [], np.empty(0), np.empty(0)
        return out_skus, np.concatenate(out_t), np.concatenate(out_p)


def _epoch(stamp: str) -> float:
    """``2011-09-01T08:26:00.000Z`` -> epoch seconds (fast path for the simulator's stamps)."""
    return float(np.datetime64(stamp.rstrip("Z"), "ms").astype(np.int64)) / 1000.0


METHODS = ("nightly-batch", "aurora-analytic", "xgboost")


def make_predictor(
    name: str,
    tenant_id: str,
    params: ScoringParams | None = None,
    *,
    model: Callable[[F64], F64] | None = None,
) -> Predictor:
    if name == "aurora-analytic":
        return AuroraAnalytic(tenant_id, params)
    if name == "nightly-batch":
        params = params or ScoringParams()
        return NightlyBatch(tenant_id, horizon_s=params.horizon_s, inbound=params.inbound)
    if name == "xgboost":
        if model is None:
            raise ValueError("the xgboost method needs a trained model")
        return LearnedScorer(tenant_id, model, params)
    raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
