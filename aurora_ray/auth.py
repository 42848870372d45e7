"""OAuth2 client credentials: client secrets (stored hashed) and signed JWT bearer tokens.

Two kinds of principal. A tenant's token carries its ``tenant_id`` and some of ``ALL_SCOPES``;
an operator's token carries no tenant and only ``OPERATOR_SCOPE`` (the whole status picture,
``GET /v1/status/operator``). A token that mixes the two is invalid: an operator token never
reaches a tenant's data, a tenant token never the operator view."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Final

import jwt

__all__ = [
    "ALL_SCOPES",
    "OPERATOR_SCOPE",
    "AuthError",
    "Principal",
    "TokenIssuer",
    "hash_secret",
    "new_client_credentials",
    "verify_secret",
]

ALL_SCOPES: Final = ("events:write", "alerts:read", "settings:write")  # a tenant's
OPERATOR_SCOPE: Final = "operator:status"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class AuthError(Exception):
    """Authentication or authorisation failed; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Principal:
    tenant_id: str  # "" for an operator
    client_id: str
    scopes: frozenset[str]

    @property
    def is_operator(self) -> bool:
        return not self.tenant_id

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise AuthError(f"token lacks the scope {scope!r}", status=403)


def hash_secret(secret: str) -> str:
    """scrypt with a random salt, as ``scrypt$<salt>$<hash>`` (URL-safe base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    enc = base64.urlsafe_b64encode
    return f"scrypt${enc(salt).decode()}${enc(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    salt = base64.urlsafe_b64decode(salt_b64)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return hmac.compare_digest(digest, base64.urlsafe_b64decode(digest_b64))


def new_client_credentials(prefix: str = "aur") -> tuple[str, str]:
    """A fresh ``(client_id, client_secret)``; the secret is shown once and stored hashed."""
    return f"{prefix}_{secrets.token_hex(8)}", secrets.token_urlsafe(32)


class TokenIssuer:
    """Issues and verifies HS256 JWTs carrying the tenant and scopes.

    A client sends the same token with every request for up to an hour, so :meth:`verify`
    remembers the tokens it has verified (the exact token string, with its principal and
    expiry): a repeat costs a dict lookup and a clock read instead of a JWT decode. Nothing
    else could change a verified token's meaning; its expiry is checked on every use."""

    CACHE_SIZE: Final = 10_000

    def __init__(self, secret: str, *, issuer: str = "aurora", ttl_s: int = 3600) -> None:
        if len(secret) < 32:
            raise ValueError("the JWT signing secret must be at least 32 characters")
        self._secret = secret
        self.issuer = issuer
        self.ttl_s = ttl_s
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(self, *, tenant_id: str | None, client_id: str, scopes: frozenset[str]) -> str:
        """A tenant's token, or with ``tenant_id`` None an operator's (no ``tenant_id`` claim)."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": client_id,
            **({"tenant_id": tenant_id} if tenant_id is not None else {}),
            "scope": " ".join(sorted(scopes)),
            "iat": now,
            "exp": now + self.ttl_s,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[1]:  # PyJWT's own rule: expired once now >= exp
                return known[0]
            self._verified.pop(token, None)
            raise AuthError("the bearer token has expired")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the bearer token has expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid bearer token: {exc}") from exc
        who = _principal(claims)
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.clear()  # rare (10 000 live tokens a replica); simply start over
        self._verified[token] = (who, float(claims["exp"]))
        return who


def _principal(claims: dict[str, object]) -> Principal:
    """A tenant (a non-empty ``tenant_id``, no operator scope) or an operator (no ``tenant_id``,
    only the operator scope); anything else is refused."""
    tenant = claims.get("tenant_id")
    scopes = frozenset(str(claims.get("scope", "")).split())
    if tenant is None:
        if scopes != {OPERATOR_SCOPE}:
            raise AuthError("invalid bearer token: no tenant")
        tenant = ""
    elif not isinstance(tenant, str) or not tenant or OPERATOR_SCOPE in scopes:
        raise AuthError("invalid bearer token: bad tenant or scope")
    return Principal(tenant_id=tenant, client_id=str(claims["sub"]), scopes=scopes)
