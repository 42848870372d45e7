"""The stream actors' OS priority: throughput work yields the CPU to the API's replicas."""

from __future__ import annotations

import os


def yield_cpu(niceness: int) -> None:
    """Lower the calling thread, and the threads it starts from now on (the shard's loop, the
    Kafka client's), to ``niceness``: an absolute value, never a priority raised back. Ray starts
    its workers at niceness 15 (``RAY_worker_niceness``), Serve's replicas included, so a stream
    actor must go below that to yield to them."""
    if os.getpriority(os.PRIO_PROCESS, 0) < niceness:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
