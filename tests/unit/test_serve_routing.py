"""The ingest application reuses the API's routes under Serve's route prefix (serve.app)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI

from serve.app import FullPathRouting

pytestmark = pytest.mark.unit


def _app(*, full_path: bool) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/ingest/events")
    async def events() -> dict[str, str]:
        return {"route": "events"}

    if full_path:
        app.add_middleware(FullPathRouting)
    return app


def _post_under_prefix(app: FastAPI, path: str) -> int:
    """Call the app as Serve does for an application at /v1/ingest: the full path, and the
    prefix as root_path."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "/v1/ingest",
        "query_string": b"",
        "headers": [],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))


def test_without_the_middleware_the_prefix_hides_the_route() -> None:
    assert _post_under_prefix(_app(full_path=False), "/v1/ingest/events") == 404


def test_the_middleware_matches_the_full_path() -> None:
    assert _post_under_prefix(_app(full_path=True), "/v1/ingest/events") == 200
