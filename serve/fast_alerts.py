"""``GET /v1/stock/alerts`` without FastAPI's per-request machinery: the hottest read.

FastAPI solves a route's dependencies and parameters anew for every request, about 170 µs of CPU
here (measured in-process), several times what the read itself costs. This ASGI middleware
answers the request it can accept in full, with the route's own query check, token check, store
read and response (``aurora_ray.alerts_read``, ``routes_stock.alerts_response``). Anything else
(no token or a bad one, a missing scope, a value the types refuse, a repeated or unknown
parameter, another method or path, a bad cursor) goes on to the application and its FastAPI
route, which gives the documented answer or error; the route also stays the one in the OpenAPI
schema. A request it accepts is charged to the tenant's rate limit here, with the route's own
answers (``serve.limits``), and never again by the route it may still hand over to."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from aurora_ray.alerts_read import READ_SCOPE, accepted_query, bearer_principal, read_alerts
from serve.context import ApiContext
from serve.limits import admit, raw_headers, refusal
from serve.metrics import ApiMetrics
from serve.routes_stock import ALERTS_PATH, alerts_response


class FastAlerts:
    def __init__(
        self,
        app: ASGIApp,
        ctx: ApiContext,
        metrics: ApiMetrics,
        path: str = "/v1" + ALERTS_PATH,
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.metrics = metrics
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = None
        if scope["type"] == "http" and scope["method"] == "GET" and self._route_path(scope):
            response = await self._answer(Request(scope))
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def _route_path(self, scope: Scope) -> bool:
        """Is this the route's path, as the router would match it (below any root path)?"""
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        return path == self.path

    async def _answer(self, request: Request) -> Response | None:
        query = accepted_query(request.query_params.multi_items())
        if query is None:
            return None
        authorization = request.headers.get("authorization", "")
        who = bearer_principal(authorization, self.ctx.issuer, READ_SCOPE)
        if who is None:
            return None
        decision = await admit(request.scope, self.ctx, self.metrics, who.tenant_id)
        if not decision.allowed:
            return refusal(decision)
        try:
            page = await read_alerts(self.ctx.store, who.tenant_id, query)
        except ValueError:  # a bad cursor: the route names it
            return None
        response = alerts_response(request, page)
        if decision.headers:
            response.raw_headers.extend(raw_headers(decision))
        return response
