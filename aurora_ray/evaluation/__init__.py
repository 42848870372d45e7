"""Offline evaluation of Aurora on real retail demand.

Why a separate package: the live system only ever sees an event stream, so judging its
probabilities needs (1) real demand, cleaned into what counts as a sale (:mod:`.data`),
(2) an inventory simulated around that demand so that stock-outs, and their exact times, are
known (:mod:`.simulate`), and (3) metrics that compare predictions and alerts with those
stock-outs (:mod:`.metrics`). Nothing here imports Ray, Kafka or Redis: the evaluation runs on a
laptop in seconds and its inputs are plain files. Import the submodules directly; this package
re-exports nothing, so that importing one part never pulls in the dependencies of another.
"""

from __future__ import annotations

__all__: list[str] = []
