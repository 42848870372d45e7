"""Where the embedded stack is: ``<data_dir>/stack.json``, written by `aurora up`, and the token of
the Ray head it starts. Read by whatever talks to that stack (job submission, the CLI), which
need not import the machinery that starts it (:mod:`aurora_ray.stack`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from aurora_ray.settings import Settings

__all__ = ["StackInfo", "ray_token_path", "read_stack", "stack_file", "write_stack"]


@dataclass
class StackInfo:
    redis_url: str
    kafka_bootstrap: str
    ray_address: str
    api_url: str
    dashboard_url: str
    embedded: list[str]
    started_ray: bool


def stack_file(settings: Settings) -> Path:
    return settings.data_dir / "stack.json"


def read_stack(settings: Settings) -> StackInfo | None:
    try:
        return StackInfo(**json.loads(stack_file(settings).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_stack(settings: Settings, info: StackInfo) -> None:
    stack_file(settings).write_text(json.dumps(asdict(info), indent=2))


def ray_token_path(settings: Settings) -> Path:
    """The token of the Ray head that `aurora up` starts (token authentication)."""
    return (settings.data_dir / "secrets" / "ray_auth_token").resolve()
