"""The FastAPI app in-process (``create_api`` + ``TestClient``), without Ray or Serve, against a
real Tansu broker and a real Valkey: OAuth2 token grant, bearer and scope checks of every protected
route, POST /v1/ingest/events (and what it puts on the topic), the read routes over data written
through ``RedisStore.write_outputs``, thresholds, the status views, the retired /v1/ingest and
OpenAPI.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import gzip
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from aurora_ray import __version__
from aurora_ray.adapters.kafka import BatchProducer, TopicAdmin
from aurora_ray.adapters.rate_limit import RateLimitScript
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.auth import (
    ALL_SCOPES,
    OPERATOR_SCOPE,
    TokenIssuer,
    hash_secret,
    new_client_credentials,
)
from aurora_ray.domain.alerts import AlertRecord, alert_id_for, iso_utc
from aurora_ray.domain.events import decode_stream_events
from aurora_ray.embedded import free_port
from aurora_ray.ratelimit import RateLimiter
from aurora_ray.settings import Settings
from aurora_ray.stream import ShardProcessor
from aurora_ray.tenants import NewTenant, create_operator_client, create_tenant, set_tenant_limits
from aurora_ray.testing import envelope, ndjson, order, sku_upserted, stock_snapshot
from serve import deps
from serve.api import create_api
from serve.context import ApiContext
from serve.metrics import ApiMetrics
from tests.integration._services import (
    PARTITIONS,
    Services,
    closed_port_url,
    drive,
    read_topic,
    running_services,
    short_poll_consumer,
)

pytestmark = pytest.mark.integration

NDJSON = {"Content-Type": "application/x-ndjson"}
HOUR = 3600.0
JWT_SECRET = secrets.token_urlsafe(40)
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


class RecordingMetrics(ApiMetrics):
    """The real Ray counters (they work without ray.init) plus a record of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, int, str | None]] = []

    def accepted(self, tenant_id: str, n: int) -> None:
        self.calls.append(("accepted", tenant_id, n, None))
        super().accepted(tenant_id, n)

    def refused(self, tenant_id: str, n: int, reason: str) -> None:
        self.calls.append(("refused", tenant_id, n, reason))
        super().refused(tenant_id, n, reason)

    def failed_open(self) -> None:
        self.calls.append(("failed_open", "", 1, None))
        super().failed_open()

    def of(self, tenant_id: str) -> list[tuple[str, int, str | None]]:
        return [(kind, n, reason) for kind, t, n, reason in self.calls if t == tenant_id]


@dataclass
class Api:
    settings: Settings
    ctx: ApiContext
    http: TestClient
    metrics: RecordingMetrics


def _ok() -> dict[str, Any]:
    return {"status": "ok", "supervisor": "test"}


def _close(ctx: ApiContext) -> None:
    ctx.producer.close()
    # Drop the librdkafka handles so that the broker can stop promptly.
    ctx.producer._producer = None
    ctx.admin._admin = None
    gc.collect()


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with running_services(tmp_path_factory.mktemp("api")) as svc:
        yield svc


def _app(services: Services, **overrides: Any) -> Iterator[Api]:
    settings = services.settings(jwt_secret=JWT_SECRET, **overrides)
    ctx = ApiContext.from_settings(settings)
    metrics = RecordingMetrics()
    app = create_api(ctx, ray_health=_ok, metrics=metrics)
    with TestClient(app) as http:
        yield Api(ctx.settings, ctx, http, metrics)
    _close(ctx)


@pytest.fixture(scope="module")
def api(services: Services) -> Iterator[Api]:
    yield from _app(services)


@pytest.fixture(scope="module")
def small_api(services: Services) -> Iterator[Api]:
    """max_body_bytes=2000 and max_error_lines=5."""
    yield from _app(services, max_body_bytes=2000, max_error_lines=5)


@pytest.fixture(scope="module")
def tenant(api: Api) -> NewTenant:
    return create_tenant(api.settings, api.ctx.store, api.ctx.admin, name="in-process")


def new_tenant(api: Api, name: str = "t") -> NewTenant:
    return create_tenant(api.settings, api.ctx.store, api.ctx.admin, name=name)


# -- helpers -----------------------------------------------------------------------------------
def grant(api: Api, who: NewTenant, scope: str | None = None) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_id": who.client_id}
    form["client_secret"] = who.client_secret
    if scope is not None:
        form["scope"] = scope
    return api.http.post("/v1/oauth/token", data=form)


def token(api: Api, who: NewTenant, scope: str | None = None) -> str:
    response = grant(api, who, scope)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def auth(bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}"}


def issued(api: Api, tenant_id: str, scopes: set[str] | frozenset[str]) -> dict[str, str]:
    return auth(api.ctx.issuer.issue(tenant_id=tenant_id, client_id="c", scopes=frozenset(scopes)))


def post_events(api: Api, bearer: str, body: Any, **headers: str) -> httpx.Response:
    return api.http.post(
        "/v1/ingest/events", content=body, headers={**auth(bearer), **NDJSON, **headers}
    )


def next_link(response: httpx.Response) -> str | None:
    match = _NEXT.search(response.headers.get("link", ""))
    return match.group(1) if match else None


def follow(api: Api, bearer: str, path: str, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page, following Link rel="next" (which must carry the whole query)."""
    pages: list[list[dict[str, Any]]] = []
    response = api.http.get(path, params=params, headers=auth(bearer))
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        link = next_link(response)
        if link is None:
            return pages
        assert len(pages) < 50, "pagination does not end"
        response = api.http.get(link, headers=auth(bearer))


def topic_of(api: Api, tenant_id: str) -> str:
    return api.settings.topic_for(tenant_id)


def on_topic(api: Api, tenant_id: str, expected: int) -> list[tuple[bytes | None, bytes]]:
    return read_topic(api.settings.kafka_bootstrap, topic_of(api, tenant_id), expected)


def sales(tenant_id: str, n: int, *, sku: str = "SKU-1", at: float | None = None) -> list[dict]:
    start = at if at is not None else time.time() - HOUR
    return [order(tenant_id, sku, "DE-HAM", 1, at=start + i, order_id=f"o-{i}") for i in range(n)]


def body_of_exactly(tenant_id: str, size: int) -> bytes:
    """Valid NDJSON of exactly ``size`` bytes (the last line padded with blanks)."""
    line = ndjson(sales(tenant_id, 1))
    body = line * (size // len(line) - 1)
    last = line.rstrip(b"\n")
    return body + last + b" " * (size - len(body) - len(last) - 1) + b"\n"


PROTECTED = [
    ("POST", "/v1/ingest/events", "events:write"),
    ("GET", "/v1/stock/alerts", "alerts:read"),
    ("GET", "/v1/stock/predictions", "alerts:read"),
    ("GET", "/v1/settings/thresholds", "alerts:read"),
    ("PUT", "/v1/settings/thresholds", "settings:write"),
    ("GET", "/v1/stock/recommendations", "alerts:read"),
    ("GET", "/v1/settings/replenishment", "alerts:read"),
    ("PUT", "/v1/settings/replenishment", "settings:write"),
]
PUT_BODIES = {
    "/v1/settings/thresholds": {"default": 0.5},
    "/v1/settings/replenishment": {"service_level": 0.95},
}


def call(api: Api, method: str, path: str, tenant_id: str, headers: dict[str, str]) -> Any:
    if method == "POST":
        body = ndjson(sales(tenant_id, 1))
        return api.http.post(path, content=body, headers={**headers, **NDJSON})
    if method == "PUT":
        return api.http.put(path, json=PUT_BODIES[path], headers=headers)
    return api.http.get(path, headers=headers)


# -- OAuth2 client credentials -------------------------------------------------------------------
def test_token_grant_as_form_and_as_http_basic(api: Api, tenant: NewTenant) -> None:
    response = grant(api, tenant)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == api.settings.token_ttl_s
    assert body["scope"] == " ".join(sorted(ALL_SCOPES))
    who = api.ctx.issuer.verify(body["access_token"])
    assert who.tenant_id == tenant.tenant_id and who.client_id == tenant.client_id
    assert who.scopes == frozenset(ALL_SCOPES)
    record = api.ctx.store.tenant(tenant.tenant_id)
    assert record is not None and record["name"] == "in-process"
    assert api.ctx.store.tenant(str(uuid.uuid4())) is None

    basic = base64.b64encode(f"{tenant.client_id}:{tenant.client_secret}".encode()).decode()
    response = api.http.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials", "scope": "alerts:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "alerts:read"
    assert api.ctx.issuer.verify(response.json()["access_token"]).tenant_id == tenant.tenant_id
    # httpx' own Basic auth does the same.
    response = api.http.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(tenant.client_id, tenant.client_secret),
    )
    assert response.status_code == 200, response.text


def test_token_grant_refusals(api: Api, tenant: NewTenant) -> None:
    def post(data: dict[str, str], **headers: str) -> tuple[int, dict[str, Any]]:
        response = api.http.post("/v1/oauth/token", data=data, headers=headers)
        return response.status_code, response.json()

    good = {"client_id": tenant.client_id, "client_secret": tenant.client_secret}
    status, body = post({"grant_type": "client_credentials", **good, "client_secret": "nope"})
    assert (status, body["error"]) == (401, "invalid_client")
    status, body = post({"grant_type": "client_credentials", **good, "client_id": "aur_unknown"})
    assert (status, body["error"]) == (401, "invalid_client")
    status, body = post({"grant_type": "client_credentials"})
    assert (status, body["error"]) == (401, "invalid_client")
    assert "required" in body["error_description"]
    status, body = post({"grant_type": "password", **good})
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    status, body = post(good)
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    response = api.http.post("/v1/oauth/token", json={"grant_type": "client_credentials", **good})
    assert response.status_code == 400  # a form body, not JSON
    # A Basic header that does not decode falls back to the form credentials.
    status, body = post({"grant_type": "client_credentials", **good}, Authorization="Basic !!!")
    assert status == 200, body
    bad_basic = base64.b64encode(f"{tenant.client_id}:wrong".encode()).decode()
    status, body = post({"grant_type": "client_credentials"}, Authorization=f"Basic {bad_basic}")
    assert (status, body["error"]) == (401, "invalid_client")

    status, body = post({"grant_type": "client_credentials", **good, "scope": "alerts:read admin"})
    assert (status, body["error"]) == (400, "invalid_scope")
    assert "admin" in body["error_description"]


def test_token_with_a_scope_subset_is_limited_to_it(api: Api, tenant: NewTenant) -> None:
    response = grant(api, tenant, scope="alerts:read settings:write")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "alerts:read settings:write"
    bearer = response.json()["access_token"]
    assert api.http.get("/v1/stock/alerts", headers=auth(bearer)).status_code == 200
    response = post_events(api, bearer, ndjson(sales(tenant.tenant_id, 1)))
    assert response.status_code == 403
    assert "events:write" in response.json()["detail"]


# -- bearer and scope checks -----------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "scope"), PROTECTED)
def test_protected_routes_need_a_valid_bearer_token(
    api: Api, tenant: NewTenant, method: str, path: str, scope: str
) -> None:
    tid = tenant.tenant_id
    response = call(api, method, path, tid, {})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"

    other_issuer = TokenIssuer(secrets.token_urlsafe(40))
    now = int(time.time())
    claims = {"iss": "aurora", "sub": "c", "tenant_id": tid, "scope": " ".join(ALL_SCOPES)}
    stale = jwt.encode({**claims, "iat": now - 120, "exp": now - 60}, JWT_SECRET, "HS256")
    wrong_issuer = TokenIssuer(JWT_SECRET, issuer="someone-else")
    basic = base64.b64encode(f"{tenant.client_id}:{tenant.client_secret}".encode()).decode()
    refused = {
        "garbage": auth("not-a-jwt"),
        "foreign signature": auth(
            other_issuer.issue(tenant_id=tid, client_id="c", scopes=frozenset(ALL_SCOPES))
        ),
        "expired": auth(stale),
        "wrong issuer": auth(
            wrong_issuer.issue(tenant_id=tid, client_id="c", scopes=frozenset(ALL_SCOPES))
        ),
        "basic scheme": {"Authorization": f"Basic {basic}"},
    }
    for name, headers in refused.items():
        response = call(api, method, path, tid, headers)
        assert response.status_code == 401, (name, response.text)
    response = call(api, method, path, tid, refused["expired"])
    assert "expired" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "scope"), PROTECTED)
def test_protected_routes_need_their_scope(
    api: Api, tenant: NewTenant, method: str, path: str, scope: str
) -> None:
    tid = tenant.tenant_id
    response = call(api, method, path, tid, issued(api, tid, set(ALL_SCOPES) - {scope}))
    assert response.status_code == 403, response.text
    assert scope in response.json()["detail"]
    response = call(api, method, path, tid, issued(api, tid, {scope}))
    assert response.status_code in (200, 202), response.text


# -- POST /v1/ingest/events ------------------------------------------------------------------------
def test_ingest_plain_and_gzip_are_accepted_and_produced(api: Api) -> None:
    who = new_tenant(api, "ingest")
    bearer = token(api, who)
    tid = who.tenant_id
    plain = sales(tid, 5, sku="PLAIN")
    response = post_events(api, bearer, ndjson(plain))
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 5}
    assert "Deprecation" not in response.headers and "Warning" not in response.headers

    zipped = sales(tid, 7, sku="GZ")
    response = post_events(
        api, bearer, gzip.compress(ndjson(zipped)), **{"Content-Encoding": "gzip"}
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 7}
    response = post_events(
        api,
        bearer,
        ndjson(sales(tid, 1, sku="PARAM")),
        **{"Content-Type": "application/x-ndjson; charset=utf-8"},
    )
    assert response.status_code == 202, response.text
    # Blank lines are skipped; an unknown event type is accepted as it is.
    unknown = envelope(tid, "promo.started", {"sku": "PLAIN", "warehouse": "DE-HAM"}, at=1e9)
    response = post_events(api, bearer, b"\n\n" + ndjson([unknown]) + b"\n")
    assert response.status_code == 202 and response.json() == {"accepted": 1}
    # The tenant GUID in any letter case is the token's tenant (stored in canonical form).
    upper = order(tid.upper(), "UPPER", "DE-HAM", 1, at=1e9)
    response = post_events(api, bearer, ndjson([upper]))
    assert response.status_code == 202, response.text
    assert api.metrics.of(tid) == [
        ("accepted", 5, None),
        ("accepted", 7, None),
        ("accepted", 1, None),
        ("accepted", 1, None),
        ("accepted", 1, None),
    ]

    records = on_topic(api, tid, 15)
    assert len(records) == 15
    events, bad = decode_stream_events([value for _, value in records])
    assert not bad
    assert {e.tenant_id for e in events} == {tid}
    by_sku: dict[str | None, int] = {}
    for key, event in zip((k for k, _ in records), events, strict=True):
        by_sku[event.sku] = by_sku.get(event.sku, 0) + 1
        if event.event_type == "order.created":
            assert key == f"{event.sku}@DE-HAM".encode()
            assert event.qty == 1 and event.payload["currency"] == "EUR"
    assert by_sku == {"PLAIN": 6, "GZ": 7, "PARAM": 1, "UPPER": 1}
    assert len({e.event_id for e in events}) == 15


def test_ingest_of_a_multi_member_gzip_body_keeps_every_member(api: Api) -> None:
    who = new_tenant(api, "gzip-members")
    bearer = token(api, who)
    first, second = sales(who.tenant_id, 3, sku="M-1"), sales(who.tenant_id, 4, sku="M-2")
    body = gzip.compress(ndjson(first)) + gzip.compress(ndjson(second))
    assert gzip.decompress(body) == ndjson(first) + ndjson(second)  # what RFC 1952 says it is
    response = post_events(api, bearer, body, **{"Content-Encoding": "gzip"})
    assert response.status_code in (202, 400), response.text
    if response.status_code == 202:
        assert response.json() == {"accepted": 7}


def test_ingest_bad_lines_are_400_with_line_and_field(api: Api) -> None:
    who = new_tenant(api, "bad-lines")
    bearer = token(api, who)
    tid = who.tenant_id
    good = order(tid, "B-1", "DE-HAM", 1, at=1e9)
    missing_qty = order(tid, "B-1", "DE-HAM", 1, at=1e9)
    del missing_qty["payload"]["qty"]
    bad_currency = order(tid, "B-1", "DE-HAM", 1, at=1e9)
    bad_currency["payload"]["currency"] = "XXY"
    zero_delta = envelope(tid, "stock.adjusted", {"sku": "B-1", "warehouse": "DE-HAM", "delta": 0})
    not_a_guid = order("tenant-7", "B-1", "DE-HAM", 1, at=1e9)
    naive = order(tid, "B-1", "DE-HAM", 1, at=1e9)
    naive["occurred_at"] = "2025-05-31T22:00:00"
    bad_warehouse = stock_snapshot(tid, "B-1", "DE@HAM", 3, at=1e9)
    lines = [
        ndjson([good]),  # 1
        b"{not json\n",  # 2
        ndjson([missing_qty]),  # 3
        b"\n",  # 4: blank, skipped
        ndjson([bad_currency]),  # 5
        ndjson([zero_delta]),  # 6
        ndjson([not_a_guid]),  # 7
        ndjson([naive]),  # 8
        ndjson([bad_warehouse]),  # 9
    ]
    response = post_events(api, bearer, b"".join(lines))
    assert response.status_code == 400, response.text
    errors = response.json()
    assert [(e["line"], e["field"]) for e in errors] == [
        (2, "line"),
        (3, "payload.qty"),
        (5, "payload.currency"),
        (6, "payload.delta"),
        (7, "tenant_id"),
        (8, "occurred_at"),
        (9, "payload.warehouse"),
    ]
    assert all(e["message"] for e in errors)
    # Every line of the refused request counts as rejected: 7 bad + 1 good.
    assert api.metrics.of(tid) == [("refused", 8, "http_400")]

    response = post_events(api, bearer, b"\n \n")
    assert response.status_code == 400
    assert response.json() == [{"line": 0, "field": "body", "message": "no events in the body"}]
    response = post_events(api, bearer, b"\x1f\x8b not gzip", **{"Content-Encoding": "gzip"})
    assert response.status_code == 400 and response.json()[0]["field"] == "body"
    assert on_topic(api, tid, 0) == []


def test_ingest_reports_only_the_first_100_bad_lines(api: Api) -> None:
    who = new_tenant(api, "many-bad")
    bearer = token(api, who)
    assert api.settings.max_error_lines == 100
    bad = order(who.tenant_id, "M-1", "DE-HAM", 1, at=1e9)
    bad["payload"]["qty"] = 0
    response = post_events(api, bearer, ndjson([bad] * 150))
    assert response.status_code == 400
    errors = response.json()
    assert [e["line"] for e in errors] == list(range(1, 101))
    assert {e["field"] for e in errors} == {"payload.qty"}
    assert api.metrics.of(who.tenant_id) == [("refused", 150, "http_400")]


def test_ingest_of_another_tenants_lines_is_403(api: Api) -> None:
    who = new_tenant(api, "foreign")
    bearer = token(api, who)
    other = str(uuid.uuid4())
    events = [*sales(who.tenant_id, 2), *sales(other, 2), *sales(who.tenant_id, 1)]
    response = post_events(api, bearer, ndjson(events))
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "forbidden_tenant" and body["lines"] == [3, 4]
    assert api.metrics.of(who.tenant_id) == [("refused", 5, "http_403")]
    assert on_topic(api, who.tenant_id, 0) == []


def test_ingest_over_the_size_limit_is_413(api: Api, small_api: Api) -> None:
    who = new_tenant(api, "limits")
    bearer = token(small_api, who)
    tid = who.tenant_id
    limit = small_api.settings.max_body_bytes
    assert limit == 2000

    exact = body_of_exactly(tid, limit)
    assert len(exact) == limit
    accepted = post_events(small_api, bearer, exact)
    assert accepted.status_code == 202, accepted.text
    n_exact = accepted.json()["accepted"]

    over = body_of_exactly(tid, limit + 1)
    response = post_events(small_api, bearer, over)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    # Without Content-Length (chunked), the limit applies to what was read.
    response = post_events(small_api, bearer, iter([over[:1000], over[1000:]]))
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    # gzip: small on the wire, over the limit once inflated.
    bomb = gzip.compress(body_of_exactly(tid, 50 * limit))
    assert len(bomb) < limit
    response = post_events(small_api, bearer, bomb, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "after decompression" in response.json()["message"]
    response = post_events(small_api, bearer, gzip.compress(exact), **{"Content-Encoding": "gzip"})
    assert response.status_code == 202, response.text

    # max_error_lines of this app is 5.
    bad = order(tid, "M-1", "DE-HAM", 1, at=1e9)
    bad["payload"]["price"] = -1
    response = post_events(small_api, bearer, ndjson([bad] * 8))
    assert response.status_code == 400 and [e["line"] for e in response.json()] == [1, 2, 3, 4, 5]

    assert [c[2] for c in small_api.metrics.of(tid)] == [
        None,
        "http_413",
        "http_413",
        "http_413",
        None,
        "http_400",
    ]
    assert len(on_topic(small_api, tid, 2 * n_exact)) == 2 * n_exact


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "text/plain"},
        {"Content-Type": ""},
        {"Content-Encoding": "br"},
    ],
    ids=["json", "text", "none", "brotli"],
)
def test_ingest_of_another_media_type_or_encoding_is_415(
    api: Api, tenant: NewTenant, headers: dict[str, str]
) -> None:
    bearer = token(api, tenant, scope="events:write")
    response = post_events(api, bearer, ndjson(sales(tenant.tenant_id, 2)), **headers)
    assert response.status_code == 415, response.text
    assert response.json()["error"] in ("unsupported_media_type", "unsupported_encoding")
    assert api.metrics.calls[-1] == ("refused", tenant.tenant_id, 1, "http_415")


def test_ingest_sku_id_alias_is_accepted_with_a_deprecation_header(api: Api) -> None:
    who = new_tenant(api, "alias")
    bearer = token(api, who)
    upsert = sku_upserted(who.tenant_id, "ALIAS-1", "DE-HAM", 40, at=1e9)
    upsert["payload"]["sku_id"] = upsert["payload"].pop("sku")
    response = post_events(api, bearer, ndjson([upsert]))
    assert response.status_code == 202, response.text
    assert response.headers["Deprecation"] == "true"
    assert "sku_id" in response.headers["Warning"]
    [(key, value)] = on_topic(api, who.tenant_id, 1)
    [event], _ = decode_stream_events([value])
    assert key == b"ALIAS-1@DE-HAM"
    assert event.sku == "ALIAS-1" and event.value == 40
    assert event.payload["sku"] == "ALIAS-1" and "sku_id" not in event.payload
    assert event.payload["category"] == "demo"


def test_ingest_is_503_when_the_tenant_topic_is_missing(api: Api) -> None:
    tenant_id = str(uuid.uuid4())
    client_id, client_secret = new_client_credentials()
    api.ctx.store.put_client(
        client_id, tenant_id=tenant_id, secret_hash=hash_secret(client_secret), scopes=ALL_SCOPES
    )
    bearer = token(api, NewTenant(tenant_id, client_id, client_secret))
    response = post_events(api, bearer, ndjson(sales(tenant_id, 2)))
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable" and response.headers["retry-after"] == "5"
    assert "topic is not ready" in response.json()["message"]
    assert api.settings.topic_for(tenant_id) not in api.ctx.admin.topics()


def test_ingest_of_a_line_too_large_for_the_broker_keeps_nothing(api: Api) -> None:
    who = new_tenant(api, "huge-line")
    bearer = token(api, who)
    huge = sku_upserted(who.tenant_id, "BIG", "DE-HAM", 5, at=1e9)
    huge["payload"]["category"] = "x" * 1_100_000  # extra payload is kept on the record
    body = ndjson([*sales(who.tenant_id, 3), huge])
    assert len(body) < api.settings.max_body_bytes
    response = post_events(api, bearer, body)
    accepted = response.status_code == 202
    kept = on_topic(api, who.tenant_id, 4 if accepted else 0)
    if accepted:  # all ...
        assert len(kept) == 4
    else:  # ... or nothing, with an answer that does not invite a retry
        assert len(kept) == 0, (response.status_code, response.text[:300], len(kept))
        assert 400 <= response.status_code < 500, response.text[:300]


def test_ingest_is_503_when_the_broker_is_unreachable(
    services: Services, tenant: NewTenant
) -> None:
    settings = services.settings(jwt_secret=JWT_SECRET)
    dead = f"127.0.0.1:{free_port()}"
    ctx = ApiContext(
        settings=settings,
        store=RedisStore(services.redis_url),
        producer=BatchProducer(dead),
        admin=TopicAdmin(dead),
        issuer=TokenIssuer(JWT_SECRET),
    )
    app = create_api(ctx, ray_health=_ok, metrics=RecordingMetrics())
    with TestClient(app, raise_server_exceptions=False) as http:
        bearer = ctx.issuer.issue(
            tenant_id=tenant.tenant_id, client_id="c", scopes=frozenset(ALL_SCOPES)
        )
        response = http.post(
            "/v1/ingest/events",
            content=ndjson(sales(tenant.tenant_id, 1)),
            headers={**auth(bearer), **NDJSON},
        )
    _close(ctx)
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers.get("Retry-After")


def test_ingest_over_the_tenants_events_limit_is_429_and_produces_nothing(
    services: Services,
) -> None:
    # No burst allowance (events_peak_s 0): the sustained bucket holds what the peak one does,
    # and refills at 0.01 events/s here, so the test does not depend on the broker's speed.
    app = _app(services, rate_limit_events_peak_s=0)
    api = next(app)
    who, other = new_tenant(api, "ingest-limited"), new_tenant(api, "ingest-unlimited")
    bearer, other_bearer = token(api, who), token(api, other)
    tid = who.tenant_id
    set_tenant_limits(api.settings, api.ctx.store, tid, events_per_s=0.01, events_peak_per_s=10)

    response = post_events(api, bearer, ndjson(sales(tid, 10)))
    assert response.status_code == 202, response.text
    assert response.headers["RateLimit-Limit"] == "10"
    assert response.headers["RateLimit-Remaining"] == "0"
    response = post_events(api, bearer, ndjson(sales(tid, 5)))
    assert response.status_code == 429, response.text
    body = response.json()
    assert (body["error"], body["bucket"], body["limit"]) == ("rate_limited", "events", 10)
    assert body["rate_per_s"] == 0.01
    assert 450 <= int(response.headers["Retry-After"]) <= 500  # 5 events at 0.01/s
    assert response.headers["RateLimit-Limit"] == "10"
    assert response.headers["RateLimit-Remaining"] == "0"
    # Larger than the bucket ever holds: 413, split it, and never a Retry-After.
    response = post_events(api, bearer, ndjson(sales(tid, 11)))
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "over_rate_limit_capacity"
    assert "batches of at most 10 events" in response.json()["message"]
    assert "Retry-After" not in response.headers
    assert len(on_topic(api, tid, 10)) == 10  # only the admitted request's events
    assert ("refused", 5, "rate_limited") in api.metrics.of(tid)
    # Another tenant is not affected.
    response = post_events(api, other_bearer, ndjson(sales(other.tenant_id, 50)))
    assert response.status_code == 202, response.text
    assert response.headers["RateLimit-Limit"] == "45000"
    with contextlib.suppress(StopIteration):
        next(app)


def test_ingest_over_the_tenants_requests_limit_is_429_even_for_a_bad_body(api: Api) -> None:
    who = new_tenant(api, "ingest-requests")
    bearer, tid = token(api, who), who.tenant_id
    set_tenant_limits(api.settings, api.ctx.store, tid, requests_per_s=0.01)  # holds 1
    bad = envelope(tid, "order.created", {"sku": "S", "warehouse": "W", "qty": 0})
    response = post_events(api, bearer, ndjson([bad]))
    assert response.status_code == 400  # refused for its content: one request token
    assert response.headers["RateLimit-Remaining"] == "0"  # it was admitted, and charged
    response = post_events(api, bearer, ndjson(sales(tid, 1)))
    assert response.status_code == 429, response.text
    assert response.json()["bucket"] == "requests"
    response = post_events(api, bearer, ndjson([bad]))
    assert response.status_code == 429  # over the request rate, whatever the body


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        *PROTECTED,
        ("GET", "/v1/exports/alerts.csv", "alerts:read"),
        ("GET", "/v1/ingest/backfill/no-such-backfill", "events:write"),
    ],
)
def test_every_tenant_route_is_rate_limited(api: Api, method: str, path: str, scope: str) -> None:
    who = new_tenant(api, "limited-route")
    headers = auth(token(api, who))
    set_tenant_limits(api.settings, api.ctx.store, who.tenant_id, requests_per_s=0.01)
    first = call(api, method, path, who.tenant_id, headers)
    assert first.status_code in (200, 202, 404), first.text
    assert first.headers["RateLimit-Limit"] == "1"
    assert first.headers["RateLimit-Remaining"] == "0"
    second = call(api, method, path, who.tenant_id, headers)
    assert second.status_code == 429, second.text
    assert second.json()["bucket"] == "requests" and second.headers["Retry-After"]


def test_a_rate_limiter_without_redis_lets_requests_through(services: Services) -> None:
    """Fail open: the limiter's Redis refuses connections; reads and writes are answered as
    without a limiter (never a 500), without RateLimit headers, and the metric counts it."""
    settings = services.settings(jwt_secret=JWT_SECRET, rate_limit_timeout_s=0.2)
    ctx = ApiContext.from_settings(settings)
    ctx.limiter = RateLimiter(settings, RateLimitScript(closed_port_url(), timeout=0.2))
    metrics = RecordingMetrics()
    app = create_api(ctx, ray_health=_ok, metrics=metrics)
    who = create_tenant(settings, ctx.store, ctx.admin, name="fail-open")
    with TestClient(app, raise_server_exceptions=False) as http:
        headers = auth(ctx.issuer.issue(tenant_id=who.tenant_id, client_id="c", scopes=ALL_SCOPES))
        responses = [
            http.get("/v1/stock/alerts", headers=headers),
            http.get("/v1/stock/predictions", headers=headers),
            http.post(
                "/v1/ingest/events",
                content=ndjson(sales(who.tenant_id, 3)),
                headers={**headers, **NDJSON},
            ),
        ]
    _close(ctx)
    assert [r.status_code for r in responses] == [200, 200, 202], [r.text for r in responses]
    assert not any("RateLimit-Limit" in r.headers for r in responses)
    assert ("failed_open", "", 1, None) in metrics.calls


def test_the_rate_limiter_can_be_turned_off(services: Services) -> None:
    yield_api = _app(services, rate_limit_enabled=False)
    off = next(yield_api)
    who = new_tenant(off, "limiter-off")
    set_tenant_limits(off.settings, off.ctx.store, who.tenant_id, requests_per_s=0.01)
    bearer = token(off, who)
    statuses = [off.http.get("/v1/stock/alerts", headers=auth(bearer)) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 200]
    assert "RateLimit-Limit" not in statuses[0].headers
    with contextlib.suppress(StopIteration):
        next(yield_api)


def test_ingested_events_flow_through_a_shard_to_the_read_routes(api: Api) -> None:
    """API -> topic -> ShardProcessor -> Redis -> API, in one process."""
    who = new_tenant(api, "end-to-end")
    bearer = token(api, who)
    tid = who.tenant_id
    t0 = time.time() - 3 * 24 * HOUR
    events = [
        sku_upserted(tid, "E-1", "DE-HAM", 100, at=t0),
        *[order(tid, "E-1", "DE-HAM", 2, at=t0 + HOUR * i, order_id=f"a{i}") for i in range(1, 4)],
        sku_upserted(tid, "E-2", "FR-PAR", 5, at=t0),
        stock_snapshot(tid, "E-2", "FR-PAR", 0, at=t0 + 60),
        sku_upserted(tid, "E-3", "DE-HAM", 9, at=t0),
        order(tid, "E-3", "DE-HAM", 1, at=t0 + HOUR, order_id="e3-1"),
    ]
    response = post_events(api, bearer, ndjson(events))
    assert response.status_code == 202, response.text
    settings = api.settings
    proc = ShardProcessor(
        settings,
        tenant_id=tid,
        shard=0,
        partitions=list(range(PARTITIONS)),
        store=RedisStore(settings.redis_url),
        consumer_factory=short_poll_consumer(settings, tid, 0),
    )
    proc.restore()
    drive(proc, len(events))
    rows = api.http.get("/v1/stock/predictions", headers=auth(bearer)).json()
    assert [(r["sku"], r["warehouse"], r["on_hand"]) for r in rows] == [
        ("E-1", "DE-HAM", 94),
        ("E-2", "FR-PAR", 0),
        ("E-3", "DE-HAM", 8),
    ]
    alerts = api.http.get("/v1/stock/alerts", headers=auth(bearer)).json()
    assert [a["sku"] for a in alerts] == ["E-2"]
    e3 = rows[2]["probability"]
    assert e3 < settings.default_threshold

    # A threshold set through the API reaches the shard with the next batch.
    response = api.http.put(
        "/v1/settings/thresholds", json={"skus": {"E-3": 0.01}}, headers=auth(bearer)
    )
    assert response.status_code == 200
    more = order(tid, "E-3", "DE-HAM", 1, at=t0 + 2 * HOUR, order_id="e3-2")
    assert post_events(api, bearer, ndjson([more])).status_code == 202
    drive(proc, len(events) + 1)
    alerts = api.http.get("/v1/stock/alerts", headers=auth(bearer)).json()
    assert sorted(a["sku"] for a in alerts) == ["E-2", "E-3"]
    proc.close()


# -- GET /v1/stock/alerts --------------------------------------------------------------------------
def _alert(tid: str, sku: str, wh: str, p: float, as_of: float, created: float) -> AlertRecord:
    return AlertRecord(
        alert_id=alert_id_for(tid, f"{sku}@{wh}", as_of),
        sku=sku,
        warehouse=wh,
        probability=p,
        predicted_oos_at=iso_utc(as_of + HOUR) if p < 1 else iso_utc(as_of),
        as_of_s=as_of,
        created_s=created,
        model_version="analytic-nb-1",
    )


def test_alerts_pagination_and_filters(api: Api) -> None:
    who = new_tenant(api, "alerts")
    bearer = token(api, who)
    tid = who.tenant_id
    store = api.ctx.store
    t1 = float(int(time.time()) - 2 * 3600)
    t2 = t1 + 60
    as_of = t1 - 24 * HOUR
    first = [_alert(tid, f"A{i}", "DE-HAM", 1.0, as_of + i, t1) for i in range(3)]
    second = [
        _alert(tid, "A3", "DE-HAM", 1.0, as_of + 10, t2),
        _alert(tid, "B0", "FR-PAR", 1.0, as_of + 11, t2),
        _alert(tid, "B1", "FR-PAR", 0.95, as_of + 12, t2),
        _alert(tid, "MID", "DE-HAM", 0.55, as_of + 13, t2),
    ]
    store.write_outputs(tid, shard=0, predictions={}, alerts=first)
    store.write_outputs(tid, shard=0, predictions={}, alerts=second)
    store.write_outputs(tid, shard=0, predictions={}, alerts=first)  # a replay: no duplicates
    newest_first = sorted([*first, *second], key=lambda a: (a.created_s, a.alert_id), reverse=True)
    expected = [a.to_api() for a in newest_first]

    def get(**params: Any) -> httpx.Response:
        return api.http.get("/v1/stock/alerts", params=params, headers=auth(bearer))

    everything = get(limit=1000)
    assert everything.status_code == 200
    assert everything.json() == expected
    assert next_link(everything) is None
    assert get().json() == expected  # default limit 100

    pages = follow(api, bearer, "/v1/stock/alerts", limit=2)
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [a for p in pages for a in p] == expected
    link = next_link(get(limit=2, warehouse="DE-HAM"))
    assert link is not None and link.startswith("http://testserver/v1/stock/alerts?")
    assert "limit=2" in link and "warehouse=DE-HAM" in link and "cursor=" in link

    by_warehouse = follow(api, bearer, "/v1/stock/alerts", warehouse="FR-PAR", limit=1)
    assert [len(p) for p in by_warehouse] == [1, 1]
    assert [a for p in by_warehouse for a in p] == [
        a for a in expected if a["warehouse"] == "FR-PAR"
    ]
    assert [a["sku"] for a in get(sku="MID").json()] == ["MID"]
    assert get(sku="A0", warehouse="FR-PAR").json() == []
    assert get(sku="NOPE").json() == []
    sure = get(min_probability=0.96).json()
    assert sorted(a["sku"] for a in sure) == ["A0", "A1", "A2", "A3", "B0"]
    assert len(get(min_probability=0.95).json()) == 6
    assert len(get(min_probability=0).json()) == 7

    # since: created at or after, with any time zone; a naive time is refused.
    recent = get(since=iso_utc(t2)).json()
    assert sorted(a["sku"] for a in recent) == ["A3", "B0", "B1", "MID"]
    plus_two = datetime.fromtimestamp(t2, tz=timezone(timedelta(hours=2))).isoformat()
    assert get(since=plus_two).json() == recent
    assert get(since=iso_utc(t2 + 1)).json() == []
    assert len(get(since=iso_utc(t1)).json()) == 7
    naive = datetime.fromtimestamp(t1, tz=UTC).replace(tzinfo=None).isoformat()
    response = get(since=naive)
    assert response.status_code == 422
    [problem] = response.json()["detail"]  # FastAPI's shape, as for any other bad parameter
    assert (problem["type"], problem["loc"]) == ("timezone_aware", ["query", "since"])
    paged_recent = follow(api, bearer, "/v1/stock/alerts", since=iso_utc(t2), limit=3)
    assert [len(p) for p in paged_recent] == [3, 1]
    assert [a for p in paged_recent for a in p] == recent

    assert get(limit=0).status_code == 422
    assert get(limit=1001).status_code == 422
    assert get(min_probability=1.5).status_code == 422
    assert get(since="yesterday").status_code == 422
    assert get(cursor="not-a-cursor").status_code == 400

    # Another tenant sees none of them.
    other = new_tenant(api, "alerts-other")
    response = api.http.get("/v1/stock/alerts", headers=auth(token(api, other)))
    assert response.status_code == 200 and response.json() == []


def test_the_alerts_fast_path_answers_as_the_route_does(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``FastAlerts`` answers GET /v1/stock/alerts before FastAPI does; for every kind of request,
    valid or not, the answer (status, body, Link) is the FastAPI route's own."""
    who = new_tenant(api, "alerts-fast")
    bearer = token(api, who)
    tid = who.tenant_id
    now = float(int(time.time()))
    alerts = [
        _alert(tid, f"F{i}", "DE-HAM" if i % 2 else "FR-PAR", 0.5 + i / 20, now - i, now - i)
        for i in range(8)
    ]
    api.ctx.store.write_outputs(tid, shard=0, predictions={}, alerts=alerts)
    # Its own context: the store's asyncio client belongs to the event loop of its first client.
    slow_ctx = ApiContext.from_settings(api.settings)
    route_only = create_api(slow_ctx, ray_health=_ok, metrics=api.metrics, fast_reads=False)
    no_scope = token(api, who, scope="events:write")
    expired = jwt.encode(
        {
            "iss": api.settings.jwt_issuer,
            "sub": who.client_id,
            "tenant_id": tid,
            "scope": "alerts:read",
            "iat": int(now) - 7200,
            "exp": int(now) - 3600,
        },
        JWT_SECRET,
        algorithm="HS256",
    )
    cases: list[tuple[str, dict[str, str]]] = [
        ("", auth(bearer)),
        ("?limit=3", auth(bearer)),
        ("?limit=2&warehouse=DE-HAM", auth(bearer)),
        (f"?sku=F3&since={iso_utc(now - 5)}", auth(bearer)),
        ("?min_probability=0.7&limit=1000", auth(bearer)),
        ("?since=2026-01-01T00:00:00%2B02:00", auth(bearer)),
        ("?sku=", auth(bearer)),
        ("?limit=0", auth(bearer)),
        ("?limit=1001", auth(bearer)),
        ("?limit=abc", auth(bearer)),
        ("?min_probability=1.5", auth(bearer)),
        ("?min_probability=nan", auth(bearer)),
        ("?since=yesterday", auth(bearer)),
        ("?since=2026-01-01T00:00:00", auth(bearer)),
        ("?cursor=not-a-cursor", auth(bearer)),
        ("?limit=2&limit=3", auth(bearer)),
        ("?unknown=1", auth(bearer)),
        ("", {}),
        ("", {"Authorization": f"Basic {bearer}"}),
        ("", {"Authorization": "Bearer "}),
        ("", {"Authorization": f"bearer   {bearer}  "}),
        ("", auth(bearer + "x")),
        ("", auth(expired)),
        ("", auth(no_scope)),
    ]
    with TestClient(route_only) as slow:
        page = slow.get("/v1/stock/alerts?limit=3", headers=auth(bearer))
        cursor = _NEXT.search(page.headers["link"]).group(1).split("cursor=")[1]  # type: ignore[union-attr]
        cases.append((f"?limit=3&cursor={cursor}", auth(bearer)))
        for query, headers in cases:
            want = slow.get("/v1/stock/alerts" + query, headers=headers)
            got = api.http.get("/v1/stock/alerts" + query, headers=headers)
            assert (got.status_code, got.content, got.headers.get("link")) == (
                want.status_code,
                want.content,
                want.headers.get("link"),
            ), query
        for method in ("POST", "DELETE"):
            want = slow.request(method, "/v1/stock/alerts", headers=auth(bearer))
            got = api.http.request(method, "/v1/stock/alerts", headers=auth(bearer))
            assert (got.status_code, got.content) == (want.status_code, want.content)
    _close(slow_ctx)
    # A valid read never reaches the FastAPI route (whose scope check is serve.deps._verify).
    routed: list[str] = []
    real_verify = deps._verify
    monkeypatch.setattr(deps, "_verify", lambda *a: routed.append("route") or real_verify(*a))
    assert api.http.get("/v1/stock/alerts?limit=3", headers=auth(bearer)).json() == [
        a.to_api() for a in alerts[:3]
    ]
    assert routed == []
    assert api.http.get("/v1/stock/alerts?limit=0", headers=auth(bearer)).status_code == 422
    assert routed == ["route"]


def test_the_alerts_fast_path_refuses_over_the_rate_limit_as_the_route_does(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant over its requests/s gets the same 429 (body, Retry-After, RateLimit-*) from the
    fast path and from the FastAPI route; another tenant is not affected; a request is charged
    once however it is answered."""
    who, other = new_tenant(api, "alerts-limited"), new_tenant(api, "alerts-unlimited")
    bearer, other_bearer = token(api, who), token(api, other)
    set_tenant_limits(api.settings, api.ctx.store, who.tenant_id, requests_per_s=0.01)  # 1 held
    slow_ctx = ApiContext.from_settings(api.settings)
    route_only = create_api(slow_ctx, ray_health=_ok, metrics=api.metrics, fast_reads=False)
    routed: list[str] = []
    real_verify = deps._verify
    monkeypatch.setattr(deps, "_verify", lambda *a: routed.append("route") or real_verify(*a))

    first = api.http.get("/v1/stock/alerts", headers=auth(bearer))
    assert first.status_code == 200 and routed == []
    assert first.headers["RateLimit-Limit"] == "1"
    assert first.headers["RateLimit-Remaining"] == "0"
    assert 99 <= int(first.headers["RateLimit-Reset"]) <= 100
    assert "Retry-After" not in first.headers
    with TestClient(route_only) as slow:
        for query in ("", "?limit=3", "?limit=0", "?cursor=not-a-cursor"):
            got = api.http.get("/v1/stock/alerts" + query, headers=auth(bearer))
            want = slow.get("/v1/stock/alerts" + query, headers=auth(bearer))
            assert (got.status_code, got.content) == (want.status_code, want.content), query
            assert got.status_code == 429, (query, got.text)
            assert got.json() == {
                "error": "rate_limited",
                "bucket": "requests",
                "limit": 1,
                "rate_per_s": 0.01,
                "message": got.json()["message"],
            }
            for response in (got, want):
                assert 90 <= int(response.headers["Retry-After"]) <= 100
                assert response.headers["RateLimit-Limit"] == "1"
                assert response.headers["RateLimit-Remaining"] == "0"
        assert routed.count("route") >= 4  # the route's own answers (slow app, bad queries)
        # Another tenant reads as before, on both.
        for http in (api.http, slow):
            response = http.get("/v1/stock/alerts", headers=auth(other_bearer))
            assert response.status_code == 200, response.text
            assert response.headers["RateLimit-Limit"] == "15000"
    _close(slow_ctx)
    # A bad cursor is charged once: the fast path admits it, the route it hands over to names
    # the cursor and does not charge again.
    set_tenant_limits(api.settings, api.ctx.store, who.tenant_id, requests_per_s=1_000)
    store = api.ctx.store.client
    store.delete(f"aurora:t:{who.tenant_id}:ratelimit")
    response = api.http.get("/v1/stock/alerts?cursor=not-a-cursor", headers=auth(bearer))
    assert response.status_code == 400
    assert response.headers["RateLimit-Remaining"] == "999"


def test_filtered_alerts_behind_many_others_are_still_reachable(api: Api) -> None:
    who = new_tenant(api, "alerts-scan")
    bearer = token(api, who)
    tid = who.tenant_id
    store = api.ctx.store
    t1 = float(int(time.time()) - 3 * 3600)
    old = _alert(tid, "RARE", "FR-PAR", 1.0, t1 - 24 * HOUR, t1)
    store.write_outputs(tid, shard=0, predictions={}, alerts=[old])
    for chunk in range(4):  # 20,000 newer alerts elsewhere
        newer = [
            _alert(tid, "BULK", "DE-HAM", 1.0, t1 + chunk * 5000 + i, t1 + 60 + chunk)
            for i in range(5000)
        ]
        store.write_outputs(tid, shard=0, predictions={}, alerts=newer)
    pages = follow(api, bearer, "/v1/stock/alerts", warehouse="FR-PAR", limit=10)
    found = [a["alert_id"] for page in pages for a in page]
    assert found == [old.alert_id], f"{len(pages)} page(s), alerts {found}"


# -- GET /v1/stock/predictions ---------------------------------------------------------------------
def _prediction(sku: str, wh: str, on_hand: int, as_of: float) -> dict[str, Any]:
    return {
        "sku": sku,
        "warehouse": wh,
        "on_hand": on_hand,
        "demand_rate_per_hour": 0.5,
        "probability": 0.25 if on_hand > 0 else 1.0,
        "predicted_oos_at": iso_utc(as_of + on_hand * 2 * HOUR),
        "model_version": "analytic-nb-1",
        "as_of": iso_utc(as_of),
    }


def test_predictions_pagination_and_filters(api: Api) -> None:
    who = new_tenant(api, "predictions")
    bearer = token(api, who)
    tid = who.tenant_id
    as_of = float(int(time.time()) - HOUR)
    keys = [("P0", "DE-HAM"), ("P0", "FR-PAR"), ("P1", "DE-HAM"), ("P2", "DE-HAM")]
    keys += [("P2", "FR-PAR"), ("P3", "FR-PAR"), ("P4", "DE-HAM")]
    rows = {f"{s}@{w}": _prediction(s, w, i, as_of) for i, (s, w) in enumerate(keys)}
    # Two batches; the second one updates P0@DE-HAM.
    api.ctx.store.write_outputs(tid, shard=0, predictions=rows, alerts=[])
    rows["P0@DE-HAM"] = _prediction("P0", "DE-HAM", 42, as_of + 60)
    api.ctx.store.write_outputs(
        tid, shard=0, predictions={"P0@DE-HAM": rows["P0@DE-HAM"]}, alerts=[]
    )
    expected = [rows[f"{s}@{w}"] for s, w in keys]

    def get(**params: Any) -> httpx.Response:
        return api.http.get("/v1/stock/predictions", params=params, headers=auth(bearer))

    response = get()
    assert response.status_code == 200 and response.json() == expected
    assert response.json()[0]["on_hand"] == 42
    assert next_link(response) is None

    pages = follow(api, bearer, "/v1/stock/predictions", limit=2)  # 2 SKUs a page
    assert [[(r["sku"], r["warehouse"]) for r in p] for p in pages] == [
        [("P0", "DE-HAM"), ("P0", "FR-PAR"), ("P1", "DE-HAM")],
        [("P2", "DE-HAM"), ("P2", "FR-PAR"), ("P3", "FR-PAR")],
        [("P4", "DE-HAM")],
    ]
    link = next_link(get(limit=2, warehouse="FR-PAR"))
    assert link is not None and "after=P1" in link and "warehouse=FR-PAR" in link

    assert get(warehouse="FR-PAR").json() == [r for r in expected if r["warehouse"] == "FR-PAR"]
    assert get(sku="P0").json() == expected[:2]
    assert get(sku="P0", warehouse="FR-PAR").json() == [expected[1]]
    assert get(sku="NOPE").json() == []
    assert get(sku="P1", warehouse="FR-PAR").json() == []
    assert get(limit=0).status_code == 422


# -- thresholds --------------------------------------------------------------------------------
def test_thresholds_get_and_put(api: Api) -> None:
    who = new_tenant(api, "thresholds")
    headers = auth(token(api, who))
    store = api.ctx.store
    path = "/v1/settings/thresholds"
    assert api.http.get(path, headers=headers).json() == {"default": 0.7, "skus": {}}
    version = store.settings_version(who.tenant_id)

    update = {"default": 0.8, "skus": {"A": 0.9, "B@DE-HAM": 0.5}}
    response = api.http.put(path, json=update, headers=headers)
    assert response.status_code == 200 and response.json() == update
    assert api.http.get(path, headers=headers).json() == update
    assert store.thresholds(who.tenant_id) == (0.8, {"A": 0.9, "B@DE-HAM": 0.5})
    assert store.settings_version(who.tenant_id) == version + 1

    response = api.http.put(path, json={"skus": {"A": None, "C": 0.95}}, headers=headers)
    expected = {"default": 0.8, "skus": {"B@DE-HAM": 0.5, "C": 0.95}}
    assert response.json() == expected
    assert api.http.put(path, json={}, headers=headers).json() == expected
    for bad in ({"default": 1.5}, {"default": 0}, {"default": "high"}, {"skus": ["A"]}):
        assert api.http.put(path, json=bad, headers=headers).status_code == 422, bad
    assert api.http.get(path, headers=headers).json() == expected


# -- health: GET /status (public), /v1/status/tenant, /v1/status/operator ----------------------
INFRA = ("ray", "redis", "kafka")


def _shard_key(tenant_id: str, shard: int = 0) -> str:
    return f"aurora:t:{tenant_id}:shard:{shard}"


def _stale(store: RedisStore, tenant_id: str) -> None:
    """The tenant's shard, started two hours ago, stopped beating an hour ago (a stuck shard)."""
    store.put_shard_health(tenant_id, 0, {"lag": 5, "events": 1})
    now = time.time()
    store.client.hset(
        _shard_key(tenant_id),
        mapping={"heartbeat": json.dumps(now - 3600), "started_at": json.dumps(now - 7200)},
    )


def _api_with(api: Api, **parts: Any) -> TestClient:
    ctx = ApiContext(
        settings=api.settings,
        store=parts.get("store", api.ctx.store),
        producer=api.ctx.producer,
        admin=parts.get("admin", api.ctx.admin),
        issuer=api.ctx.issuer,
    )
    ray_health = parts.get("ray_health", _ok)
    return TestClient(create_api(ctx, ray_health=ray_health, metrics=api.metrics))


def _operator(api: Api) -> dict[str, str]:
    client_id, secret = create_operator_client(api.ctx.store)
    response = api.http.post(
        "/v1/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == OPERATOR_SCOPE
    return auth(response.json()["access_token"])


@pytest.mark.parametrize("path", ["/status", "/v1/status"])
def test_public_status_is_200_right_after_a_tenant_is_created(api: Api, path: str) -> None:
    new_tenant(api, "fresh")  # its shard has no heartbeat yet
    response = api.http.get(path)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "version": __version__,
        "components": {name: {"status": "ok"} for name in INFRA},
    }
    assert response.headers["cache-control"] == "no-store"


def test_a_stuck_shard_leaves_the_public_status_200_and_unnamed(api: Api) -> None:
    stuck = new_tenant(api, "stuck")
    _stale(api.ctx.store, stuck.tenant_id)
    response = api.http.get("/status")
    assert response.status_code == 200, response.text
    for tenant_id in [*api.ctx.store.tenants(), stuck.client_id]:
        assert tenant_id not in response.text
    assert set(response.json()) == {"status", "version", "components"}
    assert set(response.json()["components"]) == set(INFRA)
    # ... while the tenant's own view and the operator's show it.
    mine = api.http.get("/v1/status/tenant", headers=auth(token(api, stuck)))
    assert mine.status_code == 200, mine.text
    assert mine.json()["status"] == "degraded"
    assert [s["status"] for s in mine.json()["shards"]] == ["down"]
    everything = api.http.get("/v1/status/operator", headers=_operator(api)).json()
    assert everything["status"] == "degraded" and "shards" in everything["down"]
    assert f"tenant:{stuck.tenant_id}:0" in everything["shards"]["down"]
    api.ctx.store.put_shard_health(stuck.tenant_id, 0, {"lag": 0})  # beats again


def test_public_status_is_503_naming_the_component_down_and_nothing_else(api: Api) -> None:
    dead_redis = closed_port_url()
    response = _api_with(api, store=RedisStore(dead_redis)).get("/status")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "degraded" and body["down"] == ["redis"]
    assert body["components"]["redis"] == {"status": "down", "reason": "not reachable"}
    assert body["components"]["kafka"] == {"status": "ok"}
    port = dead_redis.rsplit(":", 1)[1].split("/")[0]
    assert port not in response.text and "127.0.0.1" not in response.text

    response = _api_with(
        api, ray_health=lambda: {"status": "down", "error": "actor aurora-supervisor is gone"}
    ).get("/v1/status")
    assert response.status_code == 503
    assert response.json()["down"] == ["ray"]
    assert response.json()["components"]["ray"] == {"status": "down", "reason": "not running"}
    assert "aurora-supervisor" not in response.text

    dead_broker = TopicAdmin(f"127.0.0.1:{free_port()}")
    try:
        response = _api_with(api, admin=dead_broker).get("/status")
    finally:
        dead_broker._admin = None
    assert response.status_code == 503
    assert response.json()["down"] == ["kafka"]
    assert response.json()["components"]["kafka"]["reason"] in (
        "no answer in time",
        "not reachable",
        "not available",
    )


def test_tenant_status_is_starting_then_ok_then_down(api: Api) -> None:
    who = new_tenant(api, "lifecycle")
    tid, store = who.tenant_id, api.ctx.store
    headers = auth(token(api, who))

    def view() -> dict[str, Any]:
        response = api.http.get("/v1/status/tenant", headers=headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    body = view()
    assert body["tenant_id"] == tid and body["version"] == __version__
    assert body["status"] == "starting" and body["topic"] == {"status": "ok"}
    [shard] = body["shards"]
    assert (shard["name"], shard["status"], shard["heartbeat_age_s"]) == (
        f"tenant:{tid}:0",
        "starting",
        None,
    )
    assert body["warehouse"] == {"status": "ok"}
    assert body["model"] == {"active": api.settings.model_version, "drift": None}

    store.mark_shard_started(tid, 0)  # its actor is restoring a checkpoint
    assert view()["shards"][0]["status"] == "starting"
    checkpoint = time.time() - 2
    store.put_shard_health(tid, 0, {"lag": 4, "events": 12, "last_checkpoint": checkpoint})
    body = view()
    assert body["status"] == "ok"
    [shard] = body["shards"]
    assert (shard["status"], shard["lag"], shard["events"]) == ("ok", 4, 12)
    assert shard["last_checkpoint"] == checkpoint and 0 <= shard["heartbeat_age_s"] < 15

    _stale(store, tid)
    body = view()
    assert (body["status"], body["shards"][0]["status"]) == ("degraded", "down")

    # A tenant past the grace period whose shard never beat: down, not starting.
    old = time.time() - 3600
    store.put_tenant(tid, {"name": "lifecycle", "created_at": old})
    store.client.delete(_shard_key(tid))
    assert view()["shards"][0]["status"] == "down"


def test_a_tenant_token_sees_only_its_own_tenant(api: Api) -> None:
    mine, theirs = new_tenant(api, "mine"), new_tenant(api, "theirs")
    _stale(api.ctx.store, theirs.tenant_id)
    narrow = auth(token(api, mine, scope="alerts:read"))  # any scope will do
    for query in ("", f"?tenant_id={theirs.tenant_id}"):
        response = api.http.get(f"/v1/status/tenant{query}", headers=narrow)
        assert response.status_code == 200, response.text
        assert response.json()["tenant_id"] == mine.tenant_id
        assert theirs.tenant_id not in response.text
    # Nor does it reach the operator view.
    full = auth(token(api, mine))
    response = api.http.get("/v1/status/operator", headers=full)
    assert response.status_code == 403, response.text
    assert theirs.tenant_id not in response.text
    assert api.http.get("/v1/status/tenant").status_code == 401
    assert api.http.get("/v1/status/tenant", headers=auth("not-a-jwt")).status_code == 401
    assert api.http.get("/v1/status/operator").status_code == 401


def test_tenant_status_is_503_without_redis(api: Api, tenant: NewTenant) -> None:
    headers = issued(api, tenant.tenant_id, {"alerts:read"})
    response = _api_with(api, store=RedisStore(closed_port_url())).get(
        "/v1/status/tenant", headers=headers
    )
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"


def test_the_operator_credential_sees_every_tenant_and_no_tenant_route(
    api: Api, tenant: NewTenant
) -> None:
    operator = _operator(api)
    response = api.http.get("/v1/status/operator", headers=operator)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["components"]) == set(INFRA)
    assert body["components"]["kafka"]["topics"] >= 1
    assert set(api.ctx.store.tenants()) == set(body["tenants"])
    assert body["tenants"][tenant.tenant_id]["tenant_id"] == tenant.tenant_id

    for method, path, _scope in PROTECTED:
        response = call(api, method, path, tenant.tenant_id, operator)
        assert response.status_code == 403, (path, response.text)
    for path in (
        "/v1/status/tenant",
        "/v1/ingest/backfill/bf-1",
        "/v1/exports/alerts.csv",
        "/v1/exports/predictions.csv",
    ):
        response = api.http.get(path, headers=operator)
        assert response.status_code == 403, (path, response.text)

    # A tenant client cannot be granted the operator scope.
    response = grant(api, tenant, scope=OPERATOR_SCOPE)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")


def test_the_operator_view_reports_redis_down_with_its_error(api: Api) -> None:
    operator = _operator(api)
    dead = closed_port_url()
    response = _api_with(api, store=RedisStore(dead)).get("/v1/status/operator", headers=operator)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "degraded" and body["down"] == ["redis"]
    assert body["components"]["redis"]["error"]  # the failure itself, for operators
    assert body["tenants"] == {}


# -- the rest of the surface -------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
def test_old_ingest_path_is_410(api: Api, method: str) -> None:
    response = api.http.request(method, "/v1/ingest", content=b"{}")
    assert response.status_code == 410
    body = response.json()
    assert body["error"] == "gone" and body["new_path"] == "/v1/ingest/events"
    assert api.http.delete("/v1/ingest").status_code == 405


def test_docs_and_openapi(api: Api) -> None:
    docs = api.http.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert "/openapi.json" in docs.text
    spec = api.http.get("/openapi.json").json()
    assert spec["info"]["version"] == __version__ and spec["info"]["title"] == "Aurora API"
    paths = spec["paths"]
    assert set(paths) == {
        "/v1/oauth/token",
        "/v1/status",
        "/v1/status/tenant",
        "/v1/status/operator",
        "/v1/ingest/events",
        "/v1/ingest",
        "/v1/ingest/backfill",
        "/v1/ingest/backfill/{backfill_id}",
        "/v1/stock/alerts",
        "/v1/stock/predictions",
        "/v1/exports/alerts.csv",
        "/v1/exports/predictions.csv",
        "/v1/settings/thresholds",
        "/v1/stock/recommendations",
        "/v1/settings/replenishment",
    }
    assert "/status" not in paths  # the root health check is not part of the versioned API
    assert "application/x-ndjson" in paths["/v1/ingest/events"]["post"]["requestBody"]["content"]
    form = paths["/v1/oauth/token"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in form
    assert {"get", "put"} <= set(paths["/v1/settings/thresholds"])
    alert_params = {p["name"] for p in paths["/v1/stock/alerts"]["get"]["parameters"]}
    assert {"sku", "warehouse", "since", "min_probability", "limit", "cursor"} <= alert_params
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    # Every route a tenant's token reaches documents its 429 and the headers that come with it.
    for path, item in paths.items():
        for method, operation in item.items():
            bearer = any("HTTPBearer" in sec for sec in operation.get("security", []))
            limited = bearer and path != "/v1/status/operator"  # an operator has no tenant
            assert ("429" in operation["responses"]) == limited, (method, path)
            if limited:
                documented = operation["responses"]["429"]
                assert {"Retry-After", "RateLimit-Limit"} <= set(documented["headers"])
    too_large = paths["/v1/ingest/events"]["post"]["responses"]["413"]["description"]
    assert "split the batch" in too_large


def test_openapi_operation_ids_are_unique(api: Api) -> None:
    spec = api.http.get("/openapi.json").json()
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, duplicates
