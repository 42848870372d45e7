"""What a client gets when the API is overloaded or a tenant is over its rate limit, on a running
stack (``aurora up``; HAProxy ingress by default).

``python -m bench.overload [--url http://127.0.0.1:8000] [--ingest 300] [--reads 600]``

Creates a tenant with ``aurora tenants create``, raises its rate limits out of the way, sends
``--ingest`` requests of 1 000 events all at once, then ``--reads`` alert reads all at once, and
counts the answers (Serve refuses what its bounded queue cannot hold: ``503`` with
``Retry-After: 1``); then sets the tenant to 0.01 requests/s and shows the ``200`` and the ``429``
that follow. Everything goes to 127.0.0.1; each burst is one bounded batch of requests.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

_AURORA = str(Path(sys.executable).parent / "aurora")


def _cli(*args: str) -> str:
    result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [_AURORA, *args], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode:
        raise SystemExit(f"aurora {' '.join(args)}: {result.stderr}")
    return result.stdout


async def _burst(
    url: str, n: int, method: str, data: bytes | None, headers: dict[str, str]
) -> list[Any]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> tuple[int, str | None, float]:
            start = time.monotonic()
            async with session.request(method, url, data=data, headers=headers) as response:
                await response.read()
                return (
                    response.status,
                    response.headers.get("Retry-After"),
                    (time.monotonic() - start),
                )

        return await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)


def _report(name: str, results: list[Any]) -> None:
    answered = [r for r in results if not isinstance(r, BaseException)]
    failed = [type(r).__name__ for r in results if isinstance(r, BaseException)]
    statuses = collections.Counter(status for status, _, _ in answered)
    sys.stdout.write(f"{name}: {dict(statuses)}; no answer: {len(failed)} {set(failed)}\n")
    for status in sorted(statuses):
        seconds = sorted(s for st, _, s in answered if st == status)
        retry = collections.Counter(r for st, r, _ in answered if st == status)
        sys.stdout.write(
            f"  {status}: Retry-After {dict(retry)}; seconds median "
            f"{seconds[len(seconds) // 2]:.3f}, max {seconds[-1]:.3f}\n"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--ingest", type=int, default=300, help="ingest requests at once")
    parser.add_argument("--reads", type=int, default=600, help="alert reads at once")
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://127.0.0.1", "http://localhost")):
        raise SystemExit("this sends bursts: only to a stack on this machine")
    record = json.loads(_cli("tenants", "create", "--name", "overload", "--json"))
    tenant = record["tenant_id"]
    high = ("--requests-per-s", "1e9", "--events-per-s", "1e9", "--events-peak-per-s", "1e9")
    _cli("tenants", "set-limits", tenant, *high)
    token = httpx.post(
        f"{args.url}/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(record["client_id"], record["client_secret"]),
        timeout=60,
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    lines = [
        json.dumps(
            {
                "tenant_id": tenant,
                "event_type": "order.created",
                "occurred_at": "2026-11-01T00:00:00Z",
                "payload": {
                    "order_id": f"o{i}",
                    "sku": f"S{i % 500}",
                    "warehouse": "DE-HAM",
                    "qty": 1,
                    "price": 1.0,
                    "currency": "EUR",
                },
            }
        )
        for i in range(1_000)
    ]
    body = gzip.compress("\n".join(lines).encode(), 1)
    ndjson = {**auth, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
    ingest_url = f"{args.url}/v1/ingest/events"
    _report(
        f"ingest, {args.ingest} at once",
        asyncio.run(_burst(ingest_url, args.ingest, "POST", body, ndjson)),
    )
    reads_url = f"{args.url}/v1/stock/alerts?limit=10"
    _report(
        f"reads, {args.reads} at once",
        asyncio.run(_burst(reads_url, args.reads, "GET", None, auth)),
    )
    _cli("tenants", "set-limits", tenant, "--reset", "--requests-per-s", "0.01")
    for _ in range(2):
        response = httpx.get(f"{args.url}/v1/stock/alerts", headers=auth, timeout=60)
        headers = {
            k: v for k, v in response.headers.items() if k.startswith(("ratelimit", "retry"))
        }
        sys.stdout.write(f"0.01 requests/s: {response.status_code} {headers} {response.text}\n")


if __name__ == "__main__":
    main()
