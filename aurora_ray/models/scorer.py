"""Scorers a shard swaps between micro-batches: the analytic one or a registered XGBoost model.

A scorer has a ``version`` (written on every prediction and alert) and a ``model``: ``None`` for
the analytic scorer (the fold's own probabilities), else a
:data:`~aurora_ray.domain.state.ProbabilityModel` over :func:`event_features`, which the fold
uses for thresholds and dedup. Artifacts are checked against the registry's sha256 on load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from aurora_ray.domain.features import FEATURE_NAMES, event_features
from aurora_ray.domain.state import BatchOutput, ProbabilityModel
from aurora_ray.models.training import predict, sha256_hex

if TYPE_CHECKING:
    from aurora_ray.models.registry import ModelVersion

__all__ = ["AnalyticScorer", "ArtifactError", "Scorer", "XGBoostScorer", "load_scorer"]

F64 = NDArray[np.float64]


class ArtifactError(ValueError):
    """An artifact that must not be served (checksum or feature mismatch)."""


class Scorer(Protocol):
    @property
    def version(self) -> str: ...

    @property
    def model(self) -> ProbabilityModel | None: ...


@dataclass(frozen=True)
class AnalyticScorer:
    """Identity: the fold's own (analytic) probabilities."""

    version: str

    @property
    def model(self) -> ProbabilityModel | None:
        return None

    def probabilities(self, output: BatchOutput) -> F64:
        return output.event_probability


class XGBoostScorer:
    def __init__(self, version: str, booster: Any, feature_names: Sequence[str]) -> None:
        if tuple(feature_names) != FEATURE_NAMES:
            raise ArtifactError(
                f"version {version} was trained on features {list(feature_names)}, the shards "
                f"compute {list(FEATURE_NAMES)}"
            )
        self.version = version
        self.booster = booster
        self.feature_names = list(feature_names)

    @classmethod
    def from_artifact(
        cls, version: str, data: bytes, *, sha256: str, feature_names: Sequence[str]
    ) -> XGBoostScorer:
        """Load a UBJ/JSON booster, refusing it unless its sha256 is the registered one."""
        import xgboost as xgb

        actual = sha256_hex(data)
        if actual != sha256:
            raise ArtifactError(
                f"artifact of version {version} has sha256 {actual}, the registry says {sha256}"
            )
        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        return cls(version, booster, feature_names)

    @property
    def model(self) -> ProbabilityModel | None:
        return self.probabilities

    def probabilities(self, output: BatchOutput) -> F64:
        """One probability per event; NaN where the stock is unknown."""
        features = event_features(output)
        known = ~np.isnan(output.event_probability)
        out = np.full(len(features), np.nan)
        if known.any():
            out[known] = predict(self.booster, features[known], self.feature_names)
        return out


def load_scorer(
    meta: ModelVersion | None, *, baseline_version: str, read: Any
) -> AnalyticScorer | XGBoostScorer:
    """The scorer of a registry entry (``None``: the analytic baseline); ``read(uri) -> bytes``."""
    if meta is None:
        return AnalyticScorer(baseline_version)
    return XGBoostScorer.from_artifact(
        meta.version, read(meta.artifact_uri), sha256=meta.sha256, feature_names=meta.feature_names
    )
