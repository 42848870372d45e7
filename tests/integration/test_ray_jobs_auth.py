"""Ray jobs against a token-authenticated Ray head started as `aurora up` starts it, with no
``RAY_AUTH_*`` variable in the environment (issue 15: `aurora backfill --wait` against `aurora up`
failed with "Missing authentication token … RAY_AUTH_MODE is currently 'disabled'").

The head has its own ports and Ray temp dir, so it runs beside the session's Ray (and beside a
developer's `aurora up`) without touching either."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aurora_ray import stack as stack_mod
from aurora_ray.embedded import free_port, wait_port
from aurora_ray.ray_jobs import follow_job, job_client, ray_auth_headers, submit_module
from aurora_ray.settings import Settings
from aurora_ray.stack_file import StackInfo, write_stack

pytestmark = pytest.mark.integration

_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@pytest.fixture(scope="module")
def authed_head() -> Iterator[tuple[Settings, str]]:
    # Short: Ray's Unix socket paths live under its temp dir.
    data_dir = Path(tempfile.mkdtemp(prefix="aurora-auth-", dir="/tmp"))
    settings = Settings(data_dir=data_dir, redis_url="redis://127.0.0.1:1/0", kafka_bootstrap="x")
    gcs_port, dashboard_port = free_port(), free_port()
    stack_mod._start_ray(
        settings, gcs_port=gcs_port, dashboard_port=dashboard_port, temp_dir=data_dir / "ray"
    )
    url = f"http://127.0.0.1:{dashboard_port}"
    try:
        wait_port(dashboard_port, timeout=90, what="the Ray dashboard (job API)")
        write_stack(
            settings,
            StackInfo(
                redis_url=settings.redis_url,
                kafka_bootstrap=settings.kafka_bootstrap,
                ray_address=f"127.0.0.1:{gcs_port}",
                api_url="http://127.0.0.1:1",
                dashboard_url=url,
                embedded=[],
                started_ray=True,
            ),
        )
        yield settings, url
    finally:
        stack_mod._stop_ray(settings)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_a_job_is_submitted_and_followed_with_nothing_exported(
    authed_head: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, url = authed_head
    for name in _AUTH_VARS:
        monkeypatch.delenv(name, raising=False)
    import ray  # noqa: F401 - as in the CLI: Ray is imported before the client is built

    job_id = submit_module(
        settings,
        "platform",  # any module that runs and exits 0: the point is the submission
        [],
        job_id=f"aurora-auth-{uuid.uuid4().hex[:8]}",
        metadata={"aurora": "auth-test"},
        dashboard_url=url,
    )
    lines: list[str] = []
    status = follow_job(job_client(settings, url), job_id, timeout_s=180, on_log=lines.append)
    assert status == "SUCCEEDED", lines[-20:]
    for name in _AUTH_VARS:  # nothing process-wide was changed to get there
        assert name not in os.environ


def test_the_head_does_require_the_token(authed_head: tuple[Settings, str]) -> None:
    from ray.job_submission import JobSubmissionClient

    settings, url = authed_head
    with pytest.raises(Exception, match="(?i)authentication"):
        JobSubmissionClient(url)
    assert ray_auth_headers(settings, url)["Authorization"].startswith("Bearer ")
    # The same port on another host is another cluster: this stack's token is not sent there.
    other = url.replace("127.0.0.1", "192.0.2.1")
    assert ray_auth_headers(settings, other) == {}
    assert ray_auth_headers(settings, url.replace("127.0.0.1", "localhost")) != {}
