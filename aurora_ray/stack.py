"""Starting and stopping the whole stack: `aurora up`, `aurora down`, and deploying onto Ray.

``up`` starts what is not configured (Valkey, the broker), a local Ray head, the Serve application
and the ``Supervisor``, records where everything is in ``<data_dir>/stack.json`` and returns with
all of it running. ``deploy`` is shared with the integration tests, which start their own Ray.

The Serve application and the supervisor are reached by import path (``serve.app``,
``actors.supervisor``), as ``serve deploy`` does, so the core imports no shell module statically.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from aurora_ray.adapters.kafka import TopicAdmin
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.client import AuroraClient
from aurora_ray.embedded import (
    free_port,
    pid_alive,
    port_open,
    read_pid_file,
    start_tansu,
    start_valkey,
    stop_pid_file,
    wait_port,
)
from aurora_ray.ingress import haproxy_env, stop_haproxy
from aurora_ray.naming import (
    INGEST_ROUTE_PREFIX,
    NAMESPACE,
    SERVE_APP_NAME,
    SERVE_INGEST_APP_NAME,
    SUPERVISOR_NAME,
)
from aurora_ray.settings import Settings
from aurora_ray.stack_file import StackInfo, ray_token_path, read_stack, stack_file, write_stack
from aurora_ray.tenants import NewTenant, create_tenant

__all__ = [
    "StackInfo",
    "api_running",
    "deploy",
    "deploy_ingest",
    "down",
    "provision_tenant",
    "ray_token_path",
    "read_stack",
    "resolve_settings",
    "running_stack",
    "up",
]

log = logging.getLogger(__name__)
_RAY_GCS_PORT = 6380  # not 6379, the default of Redis and of other Ray clusters
_DASHBOARD_PORT = 8265


def _jwt_secret(settings: Settings) -> str:
    """The configured secret, or (development only) one generated once under data_dir."""
    configured = settings.jwt_secret.get_secret_value()
    if configured:
        return configured
    path = settings.data_dir / "secrets" / "jwt.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def resolve_settings(settings: Settings) -> Settings:
    """Fill the embedded stack's URLs (from stack.json) and secret into settings left empty."""
    update: dict[str, Any] = {}
    info = read_stack(settings)
    if not settings.redis_url and info:
        update["redis_url"] = info.redis_url
    if not settings.kafka_bootstrap and info:
        update["kafka_bootstrap"] = info.kafka_bootstrap
    if not settings.jwt_secret.get_secret_value() and settings.env == "development":
        update["jwt_secret"] = SecretStr(_jwt_secret(settings))
    if "://" not in settings.warehouse_uri and not Path(settings.warehouse_uri).is_absolute():
        update["warehouse_uri"] = str(Path(settings.warehouse_uri).resolve())  # for Ray workers
    if not settings.data_dir.is_absolute():  # Serve replicas and jobs run in other folders
        update["data_dir"] = settings.data_dir.resolve()
    return settings.model_copy(update=update) if update else settings


def _ray_cli() -> str:
    return str(Path(sys.executable).parent / "ray")


def _ray_env(settings: Settings) -> dict[str, str]:
    """Token authentication with a token of this stack's own, so that this stack's Ray and any
    other Ray on the machine never mix up each other's credentials."""
    path = ray_token_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


def _use_ray_env(settings: Settings) -> None:
    os.environ.update(_ray_env(settings))


def _start_ray(
    settings: Settings,
    *,
    gcs_port: int = _RAY_GCS_PORT,
    dashboard_port: int = _DASHBOARD_PORT,
    temp_dir: Path | None = None,
) -> None:
    """`ray start --head` in a process group of its own, recorded so `down` stops exactly it.
    (Ports and Ray's temp dir are parameters for the test that starts a head as `up` does.)"""
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        **_ray_env(settings),
        **haproxy_env(settings),  # Serve reads these once, in the processes Ray starts
    }
    command = [
        _ray_cli(),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        "--include-dashboard=true",
        # Not Ray's default agent and client ports (52365, 10001): another Ray on the same
        # machine (a test session's) may use them.
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        "--disable-usage-stats",
        "--num-cpus=4",
        *([f"--temp-dir={temp_dir}"] if temp_dir else []),
    ]
    log_dir = settings.data_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "ray.log", "ab") as log:
        process = subprocess.Popen(  # noqa: S603
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    run_dir = settings.data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "ray.pid").write_text(f"{process.pid}\n{gcs_port}\n127.0.0.1:{gcs_port}\n")
    wait_port(gcs_port, timeout=60, what="ray start --head", process=process)


def _stop_ray(settings: Settings, timeout: float = 3.0) -> bool:
    """SIGTERM the whole process group of `ray start --block` (GCS, raylet, dashboard, workers),
    then SIGKILL what is left; other Ray clusters on the machine are not touched."""
    record = read_pid_file(settings.data_dir / "run" / "ray.pid")
    if record is None:
        return False
    group = record[0]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(group):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):  # reap `ray start` when we are its parent
        os.waitpid(group, 0)
    (settings.data_dir / "run" / "ray.pid").unlink(missing_ok=True)
    return True


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def deploy_ingest(settings: Settings, *, wait: bool = True) -> None:
    """Deploy (or deploy again, with other settings) the ingest application on a connected Ray
    whose Serve is started. ``wait``: return once the application runs, its old replicas
    stopped (behind the HAProxy ingress ~30 s: Serve drains a replica that long); otherwise
    as soon as the new version is submitted."""
    from ray import serve

    apps = importlib.import_module("serve.app")
    application = apps.build_ingest_app({"settings": settings})
    if wait:
        serve.run(application, name=SERVE_INGEST_APP_NAME, route_prefix=INGEST_ROUTE_PREFIX)
    else:  # serve.run's own body without its wait for the application to be RUNNING
        serve._run(
            application,
            name=SERVE_INGEST_APP_NAME,
            route_prefix=INGEST_ROUTE_PREFIX,
            _blocking=False,
        )


def deploy(settings: Settings, *, http_port: int, timeout: float = 120.0) -> None:
    """Deploy the Serve app (HTTP on 127.0.0.1:http_port) and the Supervisor on a connected Ray."""
    import ray
    from ray import serve

    serve.start(http_options={"host": settings.http_host, "port": http_port})
    apps = importlib.import_module("serve.app")
    serve.run(apps.build_app({"settings": settings}), name=SERVE_APP_NAME, route_prefix="/")
    deploy_ingest(settings)
    supervisor = importlib.import_module("actors.supervisor").ensure_supervisor(settings)
    ray.get(supervisor.reconcile.remote(), timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{http_port}/status", timeout=5).status_code in (
                200,
                503,
            ):
                return
        time.sleep(0.2)
    raise TimeoutError(f"the API did not answer on 127.0.0.1:{http_port}")


def up(settings: Settings, *, http_port: int | None = None) -> StackInfo:
    """Start everything that is not running yet and return where it is."""
    _use_ray_env(settings)  # before Ray is imported: it reads the auth settings once
    import ray

    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    embedded: list[str] = []
    redis_url, bootstrap = settings.redis_url, settings.kafka_bootstrap
    if not redis_url:
        redis_url = _running_or_start(
            data_dir / "run" / "valkey.pid", lambda: start_valkey(data_dir).url
        )
        embedded.append("valkey")
    if not bootstrap:
        bootstrap = _running_or_start(
            data_dir / "run" / "tansu.pid", lambda: start_tansu(data_dir).url
        )
        embedded.append("tansu")
    port = http_port or settings.http_port
    settings = resolve_settings(
        settings.model_copy(
            update={"redis_url": redis_url, "kafka_bootstrap": bootstrap, "http_port": port}
        )
    )
    started_ray = False
    if not port_open(_RAY_GCS_PORT):
        _start_ray(settings)
        started_ray = True
    ray.init(address=f"127.0.0.1:{_RAY_GCS_PORT}", namespace=NAMESPACE, log_to_driver=False)
    try:
        deploy(settings, http_port=port)
    finally:
        ray.shutdown()
    info = StackInfo(
        redis_url=redis_url,
        kafka_bootstrap=bootstrap,
        ray_address=f"127.0.0.1:{_RAY_GCS_PORT}",
        api_url=f"http://127.0.0.1:{port}",
        dashboard_url=f"http://127.0.0.1:{_DASHBOARD_PORT}",
        embedded=embedded,
        started_ray=started_ray,
    )
    write_stack(settings, info)
    return info


def _running_or_start(pid_file: Path, start: Any) -> str:
    record = read_pid_file(pid_file)
    if record is not None and pid_alive(record[0]) and port_open(record[1]):
        return record[2]
    url: str = start()
    return url


def down(settings: Settings) -> list[str]:
    """Stop what ``up`` started: shards (final checkpoint), Serve, Ray, the embedded servers.

    When ``up`` started the Ray head, stopping it ends Serve with it: Serve's own graceful
    shutdown is skipped, since it can wait a long time for replicas that are about to go anyway.
    """
    stopped: list[str] = []
    our_ray = read_pid_file(settings.data_dir / "run" / "ray.pid") is not None
    if port_open(_RAY_GCS_PORT):
        with contextlib.suppress(Exception):
            _use_ray_env(settings)
            import ray
            from ray import serve

            ray.init(address=f"127.0.0.1:{_RAY_GCS_PORT}", namespace=NAMESPACE, log_to_driver=False)
            with contextlib.suppress(ValueError):
                supervisor = ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE)
                ray.get(supervisor.stop.remote(), timeout=60)
                ray.kill(supervisor, no_restart=True)
            if not our_ray:
                serve.shutdown()  # type: ignore[no-untyped-call]
            ray.shutdown()
            stopped.append("serve")
    if _stop_ray(settings):
        stopped.append("ray")
    if stop_haproxy(settings):  # spawned by a Ray worker, outside the group _stop_ray ends
        stopped.append("haproxy")
    for name in ("tansu", "valkey"):
        if stop_pid_file(settings.data_dir / "run" / f"{name}.pid"):
            stopped.append(name)
    stack_file(settings).unlink(missing_ok=True)
    return stopped


def api_running(info: StackInfo | None) -> bool:
    """Whether the API recorded in ``info`` answers (a degraded 503 counts as running)."""
    if info is None:
        return False
    try:
        return httpx.get(f"{info.api_url}/status", timeout=3).status_code in (200, 503)
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running_stack(
    settings: Settings,
    *,
    http_port: int | None = None,
    keep: bool = False,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Iterator[StackInfo]:
    """The running stack, or one started for the block and stopped after it (unless ``keep``)."""
    info = read_stack(settings)
    started = False
    try:
        if not api_running(info):
            started = True  # from here on, whatever up() got running is ours to stop
            progress("starting the embedded stack (Ray takes ~10 s)")
            info = up(settings, http_port=http_port)
        assert info is not None  # noqa: S101 - up() returns it or raises
        yield info
    finally:
        if started and not keep:
            progress("stopping the stack")
            stopped = down(settings)
            progress(f"stopped: {', '.join(stopped) or 'nothing'}")


def provision_tenant(
    settings: Settings, info: StackInfo, *, name: str
) -> tuple[NewTenant, AuroraClient]:
    """A new tenant on the stack and an API client holding its credentials."""
    resolved = resolve_settings(settings)
    tenant = create_tenant(
        resolved,
        RedisStore(resolved.redis_url),
        TopicAdmin(resolved.kafka_bootstrap),
        name=name,
    )
    client = AuroraClient(
        info.api_url, client_id=tenant.client_id, client_secret=tenant.client_secret
    )
    return tenant, client
