"""Request dependencies: the bearer principal, scope checks and the tenant's rate limit.

They are ``async def`` because they never block (the token check is CPU only): FastAPI runs a
plain ``def`` dependency in its thread pool, a thread hop per dependency per request, which
costs more than the work itself on the read path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aurora_ray.auth import OPERATOR_SCOPE, AuthError, Principal
from serve.context import ApiContext
from serve.limits import SCOPE_KEY, RateLimited, admit

_bearer = HTTPBearer(auto_error=False, description="OAuth2 client-credentials bearer token")


async def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def _verify(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    ctx: ApiContext = request.app.state.ctx
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            401,
            detail="a bearer token is required: POST /v1/oauth/token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return ctx.issuer.verify(credentials.credentials)
    except AuthError as exc:
        raise HTTPException(
            exc.status, detail=str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from exc


def require(scope: str, *, limited: bool = True) -> Callable[..., Awaitable[Principal]]:
    """The token's principal, holding ``scope``; and, when ``limited``, one request charged to
    its tenant's rate limit (``429`` over it). ``POST /v1/ingest/events`` charges its own, with
    its events, once it knows them."""

    # One dependency level (it was check -> principal -> bearer): FastAPI spends ~30 us a request
    # on each level it solves, more than verifying a known token.
    async def check(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Principal:
        who = _verify(request, credentials)
        if scope not in who.scopes or who.is_operator:
            raise HTTPException(403, detail=f"the token lacks the scope {scope!r}")
        if limited:
            await _charge(request, who)
        return who

    return check


async def _charge(request: Request, who: Principal) -> None:
    """One request to the tenant's rate limit, unless the fast path charged it already."""
    if SCOPE_KEY in request.scope:
        return
    app = request.app
    decision = await admit(request.scope, app.state.ctx, app.state.metrics, who.tenant_id)
    if not decision.allowed:
        raise RateLimited(decision)


async def tenant_principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
) -> Principal:
    """Any valid token of a tenant, whatever its scopes (the tenant's own status); one request
    charged to its rate limit."""
    who = _verify(request, credentials)
    if who.is_operator:
        raise HTTPException(403, detail="an operator token has no access to a tenant's routes")
    await _charge(request, who)
    return who


async def operator_principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
) -> Principal:
    """An operator's token (``aurora operators create``); a tenant's token is refused."""
    who = _verify(request, credentials)
    if not who.is_operator or OPERATOR_SCOPE not in who.scopes:
        raise HTTPException(403, detail=f"the token lacks the scope {OPERATOR_SCOPE!r}")
    return who
