"""Verified bearer tokens are remembered, never past their expiry (aurora_ray.auth)."""

from __future__ import annotations

import pytest

import aurora_ray.auth as auth
from aurora_ray.auth import AuthError, TokenIssuer

pytestmark = pytest.mark.unit

SECRET = "s" * 40


def _issue(issuer: TokenIssuer) -> str:
    return issuer.issue(tenant_id="t-1", client_id="c-1", scopes=frozenset({"alerts:read"}))


def test_a_known_token_is_not_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = TokenIssuer(SECRET)
    token = _issue(issuer)
    first = issuer.verify(token)
    monkeypatch.setattr(auth.jwt, "decode", lambda *a, **k: pytest.fail("decoded twice"))
    assert issuer.verify(token) == first
    assert first.scopes == frozenset({"alerts:read"})


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = TokenIssuer(SECRET, ttl_s=60)
    token = _issue(issuer)
    issuer.verify(token)
    now = auth.time.time()
    monkeypatch.setattr(auth.time, "time", lambda: now + 61)
    with pytest.raises(AuthError, match="expired"):
        issuer.verify(token)
    assert token not in issuer._verified  # noqa: SLF001 - forgotten: PyJWT decides next time


def test_a_forged_token_is_refused_even_beside_a_known_one() -> None:
    issuer = TokenIssuer(SECRET)
    token = _issue(issuer)
    issuer.verify(token)
    forged = _issue(TokenIssuer("f" * 40))
    with pytest.raises(AuthError, match="invalid"):
        issuer.verify(forged)


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TokenIssuer, "CACHE_SIZE", 3)
    issuer = TokenIssuer(SECRET)
    tokens = [issuer.issue(tenant_id="t", client_id=f"c-{i}", scopes=frozenset()) for i in range(7)]
    for token in tokens:
        issuer.verify(token)
    assert len(issuer._verified) <= 3  # noqa: SLF001


# -- operator tokens -------------------------------------------------------------------------------
def test_an_operator_token_has_no_tenant_and_only_the_operator_scope() -> None:
    issuer = TokenIssuer(SECRET)
    token = issuer.issue(tenant_id=None, client_id="aop_1", scopes=frozenset({auth.OPERATOR_SCOPE}))
    who = issuer.verify(token)
    assert who.is_operator and who.tenant_id == ""
    assert who.scopes == frozenset({auth.OPERATOR_SCOPE})
    tenant = issuer.verify(_issue(issuer))
    assert not tenant.is_operator and tenant.tenant_id == "t-1"


@pytest.mark.parametrize(
    ("tenant_id", "scopes"),
    [
        ("t-1", {auth.OPERATOR_SCOPE}),  # a tenant token with the operator scope
        ("t-1", {"alerts:read", auth.OPERATOR_SCOPE}),
        (None, {"alerts:read"}),  # no tenant, tenant scopes
        (None, {auth.OPERATOR_SCOPE, "events:write"}),
        (None, set()),
        ("", {"alerts:read"}),  # an empty tenant is no tenant
    ],
)
def test_a_token_mixing_tenant_and_operator_is_refused(
    tenant_id: str | None, scopes: set[str]
) -> None:
    issuer = TokenIssuer(SECRET)
    token = issuer.issue(tenant_id=tenant_id, client_id="c", scopes=frozenset(scopes))
    with pytest.raises(AuthError, match="invalid bearer token") as refused:
        issuer.verify(token)
    assert refused.value.status == 401
