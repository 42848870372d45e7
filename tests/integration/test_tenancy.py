"""Acceptance (c): tenant B's token reads nothing of tenant A's and cannot write events for A;
plus the authentication and authorisation edges of the API (bearer tokens, scopes, the OAuth2
client-credentials grant)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from aurora_ray.auth import TokenIssuer
from aurora_ray.testing import ndjson, order, sku_upserted, stock_snapshot, wait_for
from tests.conftest import TenantClient, new_tenant
from tests.integration.helpers import bearer, topic_size

pytestmark = pytest.mark.integration

HOUR = 3600.0
NDJSON = {"Content-Type": "application/x-ndjson"}
A_EVENTS = 3  # what tenant A posts in the `pair` fixture

# Every tenant-scoped route, with the method and a body that would be valid.
ROUTES: list[tuple[str, str]] = [
    ("POST", "/v1/ingest/events"),
    ("GET", "/v1/stock/alerts"),
    ("GET", "/v1/stock/predictions"),
    ("GET", "/v1/settings/thresholds"),
    ("PUT", "/v1/settings/thresholds"),
]


@pytest.fixture(scope="module")
def pair(stack) -> Iterator[tuple[TenantClient, TenantClient]]:
    """Tenant A with thresholds, a prediction and an alert; tenant B with nothing."""
    a, b = new_tenant(stack, "tenant-a"), new_tenant(stack, "tenant-b")
    try:
        response = a.client.put(
            "/v1/settings/thresholds", json={"default": 0.6, "skus": {"SECRET": 0.4}}
        )
        assert response.status_code == 200, response.text
        t0 = time.time() - 3 * 24 * HOUR
        events = [
            sku_upserted(a.tenant_id, "SECRET", "DE-HAM", 10, at=t0),
            order(a.tenant_id, "SECRET", "DE-HAM", 2, at=t0 + 60, order_id="a-1"),
            stock_snapshot(a.tenant_id, "SECRET", "DE-HAM", 0, at=t0 + 120),
        ]
        assert a.client.post_events(ndjson(events)) == A_EVENTS
        wait_for(lambda: a.client.alerts(sku="SECRET"), timeout=120, what="tenant A's alert")
        yield a, b
    finally:
        a.client.close()
        b.client.close()


def _request(
    stack, method: str, path: str, headers: dict[str, str], tenant_id: str
) -> httpx.Response:
    kwargs: dict[str, Any] = {}
    if path == "/v1/ingest/events":
        event = sku_upserted(tenant_id, "X", "DE-HAM", 1, at=time.time() - 60)
        kwargs["content"] = ndjson([event])
        headers = {**headers, **NDJSON}
    elif method == "PUT":
        kwargs["json"] = {"default": 0.5}
    return httpx.request(method, f"{stack.base_url}{path}", headers=headers, timeout=60, **kwargs)


# -- isolation -------------------------------------------------------------------------------------
def test_tenant_b_reads_nothing_of_tenant_a(pair) -> None:
    a, b = pair
    # A sees its own data ...
    [alert] = a.client.alerts()
    assert alert["sku"] == "SECRET"
    [prediction] = a.client.get("/v1/stock/predictions").json()
    assert prediction["sku"] == "SECRET" and prediction["on_hand"] == 0
    assert a.client.get("/v1/settings/thresholds").json() == {
        "default": 0.6,
        "skus": {"SECRET": 0.4},
    }

    # ... B sees none of it, however it asks.
    assert b.client.alerts() == []
    assert b.client.alerts(sku="SECRET") == []
    assert b.client.alerts(sku="SECRET", warehouse="DE-HAM", min_probability=0) == []
    cursor = f"{time.time() * 1000 + 10_000!r}:{'f' * 36}"  # a cursor above A's alert
    assert b.client.alerts(cursor=cursor) == []
    assert b.client.get("/v1/stock/predictions").json() == []
    assert b.client.get("/v1/stock/predictions", sku="SECRET").json() == []
    assert b.client.get("/v1/stock/predictions", sku="SECRET", warehouse="DE-HAM").json() == []
    assert b.client.get("/v1/settings/thresholds").json() == {"default": 0.7, "skus": {}}

    # B's settings are B's alone.
    response = b.client.put(
        "/v1/settings/thresholds", json={"default": 0.9, "skus": {"SECRET": 0.99}}
    )
    assert response.json() == {"default": 0.9, "skus": {"SECRET": 0.99}}
    assert a.client.get("/v1/settings/thresholds").json() == {
        "default": 0.6,
        "skus": {"SECRET": 0.4},
    }
    b.client.put("/v1/settings/thresholds", json={"default": 0.7, "skus": {"SECRET": None}})


def test_tenant_b_cannot_write_events_for_tenant_a(stack, pair) -> None:
    a, b = pair
    assert topic_size(stack, a.tenant_id) == A_EVENTS
    at = time.time() - HOUR
    own = order(b.tenant_id, "B-1", "DE-HAM", 1, at=at, order_id="b-1")
    foreign = order(a.tenant_id, "SECRET", "DE-HAM", 1, at=at, order_id="b-evil-1")
    shouting = order(a.tenant_id.upper(), "SECRET", "DE-HAM", 1, at=at, order_id="b-evil-2")
    token = b.client.token()

    for events, lines in (
        ([own, foreign, own, shouting, own], [2, 4]),
        ([foreign], [1]),
        ([own, own, own, own, own, own, foreign], [7]),
    ):
        response = httpx.post(
            f"{stack.base_url}/v1/ingest/events",
            content=ndjson(events),
            headers={**bearer(token), **NDJSON},
            timeout=60,
        )
        assert response.status_code == 403, response.text
        body = response.json()
        assert body["error"] == "forbidden_tenant"
        assert body["lines"] == lines

    # All or nothing: neither A's topic nor B's got a record.
    assert topic_size(stack, a.tenant_id) == A_EVENTS
    assert topic_size(stack, b.tenant_id) == 0
    [prediction] = a.client.get("/v1/stock/predictions").json()
    assert prediction["on_hand"] == 0  # untouched by B's orders


# -- bearer tokens ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_no_bearer_is_401(stack, pair, method: str, path: str) -> None:
    a, _ = pair
    for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()}):
        response = _request(stack, method, path, headers, a.tenant_id)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
        assert "detail" in response.json()


def _tokens(stack, tenant_id: str, client_id: str) -> dict[str, str]:
    secret = stack.settings.jwt_secret.get_secret_value()
    issuer = stack.settings.jwt_issuer
    scopes = frozenset({"events:write", "alerts:read", "settings:write"})
    claims = {"tenant_id": tenant_id, "client_id": client_id, "scopes": scopes}
    now = int(time.time())
    none_alg = jwt.encode(
        {
            "iss": issuer,
            "sub": client_id,
            "tenant_id": tenant_id,
            "scope": " ".join(scopes),
            "iat": now,
            "exp": now + 600,
        },
        key=None,
        algorithm="none",
    )
    return {
        "garbage": "not-a-jwt",
        "truncated": TokenIssuer(secret, issuer=issuer).issue(**claims)[:-8],
        "expired": TokenIssuer(secret, issuer=issuer, ttl_s=-120).issue(**claims),
        "other_key": TokenIssuer("k" * 48, issuer=issuer).issue(**claims),
        "other_issuer": TokenIssuer(secret, issuer="someone-else").issue(**claims),
        "alg_none": none_alg,
    }


@pytest.mark.parametrize(
    "kind", ["garbage", "truncated", "expired", "other_key", "other_issuer", "alg_none"]
)
def test_bad_or_expired_tokens_are_401(stack, pair, kind: str) -> None:
    a, _ = pair
    token = _tokens(stack, a.tenant_id, a.client_id)[kind]
    for method, path in ROUTES:
        response = _request(stack, method, path, bearer(token), a.tenant_id)
        assert response.status_code == 401, (kind, method, path, response.text)
    if kind == "expired":
        assert "expired" in response.json()["detail"]


# -- scopes ----------------------------------------------------------------------------------------
def _grant(stack, client_id: str, secret: str, **form: str) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/v1/oauth/token",
        data={"grant_type": "client_credentials", **form},
        auth=(client_id, secret),
        timeout=60,
    )


def test_read_only_token_cannot_write(stack, pair) -> None:
    a, _ = pair
    response = _grant(stack, a.client_id, a.client_secret, scope="alerts:read")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "alerts:read"
    token = response.json()["access_token"]

    for method, path in (("POST", "/v1/ingest/events"), ("PUT", "/v1/settings/thresholds")):
        response = _request(stack, method, path, bearer(token), a.tenant_id)
        assert response.status_code == 403, (method, path, response.text)
        assert "events:write" in response.text or "settings:write" in response.text
    for method, path in ROUTES[1:4]:
        assert _request(stack, method, path, bearer(token), a.tenant_id).status_code == 200, path
    assert topic_size(stack, a.tenant_id) == A_EVENTS
    assert a.client.get("/v1/settings/thresholds").json()["default"] == 0.6

    # And the other way round: a write-only token reads nothing.
    token = _grant(stack, a.client_id, a.client_secret, scope="events:write").json()["access_token"]
    for method, path in ROUTES[1:]:
        response = _request(stack, method, path, bearer(token), a.tenant_id)
        assert response.status_code == 403, (method, path, response.text)


# -- the client-credentials grant ------------------------------------------------------------------
def test_token_endpoint_errors_are_oauth2(stack, pair) -> None:
    a, b = pair
    url = f"{stack.base_url}/v1/oauth/token"
    cases = [
        # (form, basic auth, status, error)
        (
            {"grant_type": "client_credentials"},
            (a.client_id, "wrong-secret"),
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials"},
            (a.client_id, b.client_secret),
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials"},
            ("aur_nobody", a.client_secret),
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials", "client_id": a.client_id, "client_secret": "x"},
            None,
            401,
            "invalid_client",
        ),
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
        ({"grant_type": "password"}, (a.client_id, a.client_secret), 400, "unsupported_grant_type"),
        ({}, (a.client_id, a.client_secret), 400, "unsupported_grant_type"),
        (
            {"grant_type": "client_credentials", "scope": "alerts:read admin"},
            (a.client_id, a.client_secret),
            400,
            "invalid_scope",
        ),
    ]
    for form, auth, status, error in cases:
        response = httpx.post(url, data=form, auth=auth, timeout=60)
        assert response.status_code == status, (form, auth, response.text)
        body = response.json()
        assert body["error"] == error, (form, body)
        assert body["error_description"]
        assert "access_token" not in body


def test_basic_auth_and_form_credentials_both_work(stack, pair) -> None:
    a, _ = pair
    basic = _grant(stack, a.client_id, a.client_secret)
    assert basic.status_code == 200, basic.text
    body = basic.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == stack.settings.token_ttl_s
    assert set(body["scope"].split()) == {"events:write", "alerts:read", "settings:write"}
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["tenant_id"] == a.tenant_id and claims["sub"] == a.client_id

    form = httpx.post(
        f"{stack.base_url}/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": a.client_id,
            "client_secret": a.client_secret,
        },
        timeout=60,
    )
    assert form.status_code == 200, form.text
    for token in (body["access_token"], form.json()["access_token"]):
        response = httpx.get(f"{stack.base_url}/v1/stock/alerts", headers=bearer(token), timeout=60)
        assert response.status_code == 200
        assert [x["sku"] for x in response.json()] == ["SECRET"]


def test_invalid_basic_client_gets_www_authenticate(stack, pair) -> None:
    a, _ = pair
    response = _grant(stack, a.client_id, "wrong-secret")
    assert response.status_code == 401
    assert response.headers.get("www-authenticate", "").lower().startswith("basic")


def test_token_response_is_not_cacheable(stack, pair) -> None:
    a, _ = pair
    response = _grant(stack, a.client_id, a.client_secret)
    assert response.status_code == 200
    assert "no-store" in response.headers.get("cache-control", "")


def test_token_of_tenant_a_in_b_s_name_is_useless(stack, pair) -> None:
    """The tenant comes from the token only: a query parameter or header naming another tenant
    changes nothing."""
    a, b = pair
    token = b.client.token()
    response = httpx.get(
        f"{stack.base_url}/v1/stock/alerts",
        params={"tenant_id": a.tenant_id},
        headers={**bearer(token), "X-Tenant-Id": a.tenant_id},
        timeout=60,
    )
    assert response.status_code == 200
    assert response.json() == []
    assert (
        json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["tenant_id"] == b.tenant_id
    )
