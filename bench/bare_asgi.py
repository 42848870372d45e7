"""The reads anchors: a trivial app answering ``GET /v1/stock/alerts`` with one fixed alert.

* bare: Starlette on uvicorn (one worker, 127.0.0.1), ``python -m bench.bare_asgi --port N``;
* on Serve: the same handler as a Serve deployment (:func:`deploy_on_serve`), reached through
  the same ingress as Aurora's API, so that its figure is the ceiling Serve itself puts on a
  read on this machine at that moment.
"""

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


SERVE_APP = "bench-trivial-read"
SERVE_PREFIX = "/bench-trivial"


def deploy_on_serve() -> str:
    """Deploy the trivial handler as its own Serve application (one replica, no CPU reserved,
    like Aurora's API); returns the route prefix. The caller must be connected to Ray."""
    from ray import serve

    @serve.deployment(name="TrivialRead", ray_actor_options={"num_cpus": 0})
    class TrivialRead:
        async def __call__(self, _request: Request) -> Response:
            return Response(_ALERT, media_type="application/json")

    serve.run(TrivialRead.bind(), name=SERVE_APP, route_prefix=SERVE_PREFIX)  # type: ignore[attr-defined]
    return SERVE_PREFIX


def remove_from_serve() -> None:
    """Delete the application without waiting for its replica to stop: behind the HAProxy
    ingress Serve drains it for ~30 s, and nothing else needs it gone."""
    from ray import serve

    serve.delete(SERVE_APP, _blocking=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
