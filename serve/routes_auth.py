"""POST /v1/oauth/token (client credentials)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from aurora_ray.api_models import TokenOut
from aurora_ray.auth import AuthError
from aurora_ray.tenants import grant_token
from serve.context import ApiContext
from serve.deps import context

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 5.1


def _oauth_error(code: str, message: str, status: int, *, basic: bool = False) -> JSONResponse:
    headers = dict(_NO_STORE)
    if status == 401 and basic:
        headers["WWW-Authenticate"] = 'Basic realm="aurora"'  # RFC 6749 5.2
    return JSONResponse(
        {"error": code, "error_description": message}, status_code=status, headers=headers
    )


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def router() -> APIRouter:
    api = APIRouter()

    @api.post(
        "/oauth/token",
        response_model=TokenOut,
        tags=["auth"],
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["grant_type"],
                            "properties": {
                                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                                "client_id": {"type": "string"},
                                "client_secret": {"type": "string"},
                                "scope": {"type": "string"},
                            },
                        }
                    }
                }
            }
        },
    )
    async def token(request: Request, ctx: ApiContext = Depends(context)) -> Any:  # noqa: B008
        """OAuth2 client credentials, as a form body or HTTP Basic; returns a signed JWT."""
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return _oauth_error("unsupported_grant_type", "use grant_type=client_credentials", 400)
        basic = _basic(request.headers.get("authorization"))
        client_id, secret = basic or (
            str(form.get("client_id") or ""),
            str(form.get("client_secret") or ""),
        )
        if not client_id or not secret:
            return _oauth_error(
                "invalid_client",
                "client_id and client_secret are required",
                401,
                basic=request.headers.get("authorization") is not None,
            )
        scope = form.get("scope")
        try:
            access, scopes = grant_token(
                ctx.store,
                ctx.issuer,
                client_id=client_id,
                client_secret=secret,
                scope=str(scope) if scope else None,
            )
        except AuthError as exc:
            code = "invalid_scope" if exc.status == 400 else "invalid_client"
            return _oauth_error(code, str(exc), exc.status, basic=basic is not None)
        body = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ctx.settings.token_ttl_s,
            "scope": " ".join(sorted(scopes)),
        }
        return JSONResponse(body, headers=_NO_STORE)

    return api
