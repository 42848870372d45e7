"""The reads anchor: a trivial Starlette app on uvicorn (one worker, 127.0.0.1) answering
``GET /v1/stock/alerts`` with one fixed alert, run as ``python -m bench.bare_asgi --port N``."""

from __future__ import annotations

import argparse
import json

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_ALERT = json.dumps(
    [
        {
            "alert_id": "a-1",
            "sku": "SKU-0000001",
            "warehouse": "DE-HAM",
            "predicted_oos_at": "2025-06-03T09:00:00Z",
            "probability": 0.93,
            "as_of": "2025-06-02T09:00:00Z",
            "created_at": "2025-06-02T09:00:01Z",
            "model_version": "analytic-nb-1",
        }
    ]
).encode()


async def alerts(_request: Request) -> Response:
    return Response(_ALERT, media_type="application/json")


app = Starlette(routes=[Route("/v1/stock/alerts", alerts)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
