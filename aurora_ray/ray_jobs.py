"""Submitting Aurora's Ray jobs (backfill, retrain) through Ray's job submission API.

One place for what every job needs: the client (with the embedded stack's Ray token), the
settings the job process rebuilds from its environment, the cluster address it must join, a
bounded retry while a fresh head's job agent starts, and following a job's log to its end.

The Ray head that `aurora up` starts requires token authentication. Its token goes to the job
client as an explicit ``Authorization`` header: Ray reads ``RAY_AUTH_MODE`` and the token path
once per process, when it is imported (importing the client does that), so setting those
variables afterwards, in a process that had imported Ray, sent no token.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from aurora_ray.settings import Settings
from aurora_ray.stack_file import ray_token_path, read_stack

__all__ = [
    "TERMINAL",
    "follow_job",
    "job_client",
    "job_env",
    "ray_auth_headers",
    "submit_module",
]

TERMINAL: Final = ("SUCCEEDED", "FAILED", "STOPPED")
_SUBMIT_ATTEMPTS: Final = 10  # ~20 s: a fresh head's job agent; under HTTP clients' timeouts


def gcs_address(settings: Settings) -> str | None:
    """The cluster's GCS address, handed to the job: Ray gives a job driver ``RAY_ADDRESS=auto``
    resolved through ``<temp dir>/ray_current_cluster``, the cluster started *last* on the
    machine, which is another one when several run side by side (tests, a developer's
    `aurora up`)."""
    try:
        import ray

        if ray.is_initialized():
            return str(ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: S110 - fall back to what `aurora up` recorded
        pass
    info = read_stack(settings)
    return info.ray_address if info else None


def job_env(settings: Settings) -> dict[str, str]:
    """The settings a job process needs (it builds its own Settings from the environment)."""
    warehouse = settings.warehouse_uri
    if "://" not in warehouse:
        warehouse = str(Path(warehouse).resolve())
    env = {
        "AURORA_REDIS_URL": settings.redis_url,
        "AURORA_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "AURORA_WAREHOUSE_URI": warehouse,
        "AURORA_DATA_DIR": str(settings.data_dir.resolve()),
        "AURORA_PARTITIONS_PER_TOPIC": str(settings.partitions_per_topic),
        "AURORA_SHARDS_PER_TENANT": str(settings.shards_per_tenant),
        "AURORA_HORIZON_HOURS": repr(settings.horizon_hours),
        "AURORA_DEFAULT_THRESHOLD": repr(settings.default_threshold),
        "AURORA_MODEL_VERSION": settings.model_version,
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    address = gcs_address(settings)
    if address:
        env["AURORA_RAY_ADDRESS"] = address
    return env


_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})


def _same_endpoint(a: str, b: str) -> bool:
    ua, ub = (
        urlsplit(a if "://" in a else f"http://{a}"),
        urlsplit(b if "://" in b else f"http://{b}"),
    )
    if ua.port != ub.port:
        return False
    return ua.hostname == ub.hostname or {ua.hostname, ub.hostname} <= _LOOPBACK


def ray_auth_headers(settings: Settings, dashboard_url: str) -> dict[str, str]:
    """``Authorization: Bearer <token>`` when ``dashboard_url`` is the dashboard of the Ray head
    that `aurora up` started (recorded in ``<data_dir>/stack.json``, token under
    ``<data_dir>/secrets``); nothing otherwise, so this stack's token never goes to another
    cluster, and Ray's own settings (``RAY_AUTH_TOKEN``…) apply there."""
    info = read_stack(settings)
    token = ray_token_path(settings)
    if info is None or not _same_endpoint(info.dashboard_url, dashboard_url) or not token.is_file():
        return {}
    return {"Authorization": f"Bearer {token.read_text().strip()}"}


def job_client(settings: Settings, dashboard_url: str | None = None) -> Any:
    """A JobSubmissionClient, with the embedded stack's Ray token when it is that stack's."""
    from ray.job_submission import JobSubmissionClient

    url = dashboard_url or settings.ray_dashboard_url
    headers = ray_auth_headers(settings, url)
    return JobSubmissionClient(url, headers=headers or None)


def submit_module(
    settings: Settings,
    module: str,
    args: Sequence[str],
    *,
    job_id: str,
    metadata: Mapping[str, str],
    dashboard_url: str | None = None,
) -> str:
    """Submit ``python -m <module> <args>`` as the Ray job ``job_id``; returns the job id."""
    entrypoint = " ".join(shlex.quote(part) for part in (sys.executable, "-m", module, *args))
    client = job_client(settings, dashboard_url)
    for attempt in range(_SUBMIT_ATTEMPTS):
        try:
            return str(
                client.submit_job(
                    entrypoint=entrypoint,
                    submission_id=job_id,
                    runtime_env={"env_vars": job_env(settings)},
                    metadata=dict(metadata),
                )
            )
        except RuntimeError as exc:  # a fresh head's job agent is not up yet: bounded retry
            if "No available agent" not in str(exc) or attempt == _SUBMIT_ATTEMPTS - 1:
                raise
            time.sleep(2.0)
    raise AssertionError("unreachable")  # pragma: no cover


def follow_job(
    client: Any,
    job_id: str,
    *,
    timeout_s: float = 3600.0,
    interval_s: float = 1.0,
    on_log: Callable[[str], None] = lambda _line: None,
) -> str:
    """Poll the job until it ends (or ``timeout_s``), handing new log lines to ``on_log``;
    returns the last status name (``SUCCEEDED``, ``FAILED``, ``STOPPED`` or a running one)."""
    deadline = time.monotonic() + timeout_s
    shown = 0
    status = "PENDING"
    while True:
        status = str(client.get_job_status(job_id)).rsplit(".", 1)[-1]
        logs = str(client.get_job_logs(job_id))
        for line in logs[shown:].splitlines():
            on_log(line)
        shown = len(logs)
        if status in TERMINAL or time.monotonic() >= deadline:
            return status
        time.sleep(interval_s)
