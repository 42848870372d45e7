"""Finding and stopping this stack's haproxy, and no other (aurora_ray.ingress)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aurora_ray.ingress import haproxy_dir, haproxy_env, haproxy_pids, stop_haproxy
from aurora_ray.settings import Settings

pytestmark = pytest.mark.unit


def _fake_haproxy(bin_dir: Path, config: Path) -> subprocess.Popen[bytes]:
    """A process whose argv[0] is named haproxy and which names ``config`` (a sleeping Python)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    link = bin_dir / "haproxy"
    if not link.exists():
        link.symlink_to(sys.executable)
    return subprocess.Popen(
        [str(link), "-c", "import time; time.sleep(60)", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_listed(settings: Settings, pid: int) -> None:
    deadline = time.monotonic() + 10
    while pid not in haproxy_pids(settings) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_env_turns_haproxy_on_with_short_socket_paths(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / ("long-" * 20))
    env = haproxy_env(settings)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    node_id = "f" * 56  # Serve puts each socket under <dir>/<node id>/
    for name in ("RAY_SERVE_HAPROXY_SOCKET_PATH", "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"):
        folder, file = os.path.split(env[name])
        assert len(os.path.join(folder, node_id, file)) <= 97  # haproxy's limit
    assert haproxy_dir(settings) != haproxy_dir(Settings(data_dir=tmp_path / "other"))


def test_env_turns_haproxy_off_when_the_setting_is_false(tmp_path: Path) -> None:
    env = haproxy_env(Settings(data_dir=tmp_path, serve_haproxy=False))
    assert env == {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"}


def test_stop_ends_this_stacks_haproxy_and_leaves_another_running(tmp_path: Path) -> None:
    ours = Settings(data_dir=tmp_path / "ours")
    theirs = Settings(data_dir=tmp_path / "theirs")
    mine = _fake_haproxy(tmp_path / "bin", haproxy_dir(ours) / "node" / "haproxy.cfg")
    other = _fake_haproxy(tmp_path / "bin", haproxy_dir(theirs) / "node" / "haproxy.cfg")
    try:
        _wait_listed(ours, mine.pid)
        assert haproxy_pids(ours) == [mine.pid]
        assert stop_haproxy(ours, timeout=5) == [mine.pid]
        assert mine.wait(timeout=10) is not None
        assert other.poll() is None
        assert haproxy_pids(ours) == []
        _wait_listed(theirs, other.pid)
        assert haproxy_pids(theirs) == [other.pid]
    finally:
        for process in (mine, other):
            process.kill()
            process.wait(timeout=10)
