"""The backfill's HTTP use cases (``POST /v1/ingest/backfill``, ``GET …/{id}``) without HTTP: where
an upload is kept, which URIs are accepted, the status record as the API shows it, and the Ray
dashboard to submit to. :mod:`aurora_ray.backfill_job` submits the job and keeps its progress."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import IO, Any, Final

from aurora_ray.settings import Settings

__all__ = [
    "REMOTE_SCHEMES",
    "dashboard_url",
    "remote_source",
    "save_upload",
    "status_view",
    "upload_name",
    "valid_backfill_id",
]

REMOTE_SCHEMES: Final = ("s3://", "gs://", "gcs://", "hdfs://", "abfs://", "abfss://", "az://")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def valid_backfill_id(backfill_id: str) -> bool:
    return bool(_ID.match(backfill_id))


def remote_source(uri: str) -> str:
    """The URI of a backfill's history on a remote filesystem; a local path is refused (a
    client uploads a local file instead)."""
    if not uri.startswith(REMOTE_SCHEMES):
        raise ValueError(f"uri must be one of {', '.join(REMOTE_SCHEMES)}; upload local files")
    return uri


def upload_name(filename: str | None) -> str:
    """A local file name for an upload: the client's, reduced to safe characters and its last
    100 (the extension tells the backfill the format), never ``..`` or hidden."""
    name = _UNSAFE.sub("_", Path(filename or "").name)[-100:].lstrip(".")
    return name or "events.ndjson"


def save_upload(
    stream: IO[bytes], filename: str | None, settings: Settings, backfill_id: str
) -> Path:
    """Keep an uploaded history under ``<data_dir>/backfill/<id>/`` for the job to read."""
    folder = settings.data_dir.resolve() / "backfill" / backfill_id
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / upload_name(filename)
    with open(target, "wb") as out:
        shutil.copyfileobj(stream, out, 1024 * 1024)
    return target


def status_view(record: dict[str, Any]) -> dict[str, Any]:
    """A backfill's progress record as the API shows it: ``folded`` a boolean (None until the
    fold was waited for), no empty ``error``."""
    record["folded"] = bool(int(record["folded"])) if record.get("folded") else None
    record["error"] = record.get("error") or None
    return record


def dashboard_url(settings: Settings) -> str:
    """The configured dashboard, else the one this Ray cluster registered, else the default."""
    if "ray_dashboard_url" in settings.model_fields_set:
        return settings.ray_dashboard_url
    try:
        from ray._private import ray_constants
        from ray.experimental import internal_kv

        found = internal_kv._internal_kv_get(
            ray_constants.DASHBOARD_ADDRESS, namespace=ray_constants.KV_NAMESPACE_DASHBOARD
        )
        if found:
            return f"http://{found.decode()}"
    except Exception:  # noqa: S110 - not inside Ray: the setting's default
        pass
    return settings.ray_dashboard_url
