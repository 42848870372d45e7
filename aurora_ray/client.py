"""A small HTTP client of the Aurora API (used by `aurora ingest`, `aurora demo` and tests)."""

from __future__ import annotations

import gzip
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

__all__ = ["AuroraClient", "ApiError", "iter_ndjson_batches", "retry_delay"]


class ApiError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class AuroraClient:
    def __init__(
        self, base_url: str, *, client_id: str, client_secret: str, timeout: float = 60.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None
        self._token_expires = 0.0

    def close(self) -> None:
        self.http.close()

    def token(self) -> str:
        if self._token is None or time.time() > self._token_expires - 60:
            response = self.http.post(
                "/v1/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(self.client_id, self.client_secret),
            )
            if response.status_code != 200:
                raise ApiError(response.status_code, response.json())
            body = response.json()
            self._token = str(body["access_token"])
            self._token_expires = time.time() + float(body["expires_in"])
        return self._token

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def post_events(self, ndjson: bytes, *, compress: bool = True, retries: int = 12) -> int:
        """Send one NDJSON batch; returns the accepted count.

        A batch carries an ``Idempotency-Key`` of its own, so it is retried safely: on ``429``
        and ``503`` (after ``Retry-After``), on any other ``5xx`` (Serve's proxy answers ``500``
        to a request whose replica died under it), on ``409`` (the key's first request is still
        held, e.g. by a replica that died: its claim lapses within a minute) and on a broken
        connection, with back-off: the default 12 retries wait about a minute in all. The shards
        apply each ``event_id`` once besides."""
        headers = {**self._headers(), "Content-Type": "application/x-ndjson"}
        headers["Idempotency-Key"] = str(uuid.uuid4())
        body = ndjson
        if compress:
            body = gzip.compress(ndjson, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                response = self.http.post("/v1/ingest/events", content=body, headers=headers)
            except httpx.TransportError:
                if last:
                    raise
                time.sleep(_backoff(attempt))
                continue
            if response.status_code == 202:
                return int(response.json()["accepted"])
            status = response.status_code
            if (status in (409, 429) or status >= 500) and not last:
                time.sleep(retry_delay(response, attempt))
                continue
            raise ApiError(response.status_code, _body(response))
        raise AssertionError("unreachable")

    def alerts(self, **params: Any) -> list[dict[str, Any]]:
        response = self.http.get("/v1/stock/alerts", params=params, headers=self._headers())
        if response.status_code != 200:
            raise ApiError(response.status_code, response.json())
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params, headers=self._headers())

    def put(self, path: str, json: Any) -> httpx.Response:
        return self.http.put(path, json=json, headers=self._headers())


def _backoff(attempt: int) -> float:
    return min(8.0, 0.25 * 2.0**attempt)


def _body(response: httpx.Response) -> Any:
    """JSON, or the text of a body that is not (Serve's own 503 of an overloaded queue)."""
    try:
        return response.json()
    except ValueError:
        return response.text


def retry_delay(response: httpx.Response, attempt: int) -> float:
    """Exponential back-off from 0.25 s, or the server's ``Retry-After`` (whole seconds) when
    it asks for longer; never over 30 s."""
    backoff = _backoff(attempt)
    try:
        asked = float(response.headers.get("retry-after", 0))
    except ValueError:  # an HTTP date: not sent by Aurora; fall back to the back-off
        asked = 0.0
    return float(min(30.0, max(backoff, asked)))


def iter_ndjson_batches(path: Path, batch_lines: int) -> Iterator[tuple[bytes, int, int]]:
    """Batches of whole lines of an NDJSON file (gzip by suffix): ``(body, bytes_read,
    first_line_number)``. Blank lines stay in the body so the server's line numbers map back to
    the file: file line = first_line_number + server line - 1."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        lines: list[bytes] = []
        size, first = 0, 1
        for number, line in enumerate(handle, start=1):
            if not lines:
                first = number
            lines.append(line.rstrip(b"\r\n"))
            size += len(line)
            if len(lines) >= batch_lines:
                yield b"\n".join(lines), size, first
                lines, size = [], 0
        if any(line.strip() for line in lines):
            yield b"\n".join(lines), size, first
