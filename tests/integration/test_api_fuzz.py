"""Schemathesis over the OpenAPI schema (issue 15): every operation of the FastAPI app, in-process
(``create_api``, no Ray) against a real Valkey and Tansu broker, with a valid token of a real
tenant and without one or with a bad one, never answers ``5xx``, and answers only documented
status codes and content types in the documented shapes.

``POST /v1/ingest/events`` is fuzzed with NDJSON bodies: the schema describes the lines as an
array of envelopes, and :func:`ndjson_body` writes what schemathesis generates (valid-ish
envelopes, and schema violations in negative mode) one JSON value a line, or garbage as it is.

Bounded and reproducible: a fixed seed, ``max_examples`` per operation (``FUZZ_SCALE=N``: N times
as many, new inputs each run; see ``tests/fuzzing.py``).
"""

from __future__ import annotations

import gzip
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import msgspec
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from aurora_ray.alerts_read import accepted_query
from aurora_ray.auth import ALL_SCOPES, TokenIssuer
from aurora_ray.embedded import free_port
from aurora_ray.settings import Settings
from aurora_ray.tenants import NewTenant, create_tenant
from aurora_ray.testing import iso
from serve.api import create_api
from serve.context import ApiContext
from serve.metrics import ApiMetrics
from tests.fuzzing import FUZZ_SCALE
from tests.integration._services import Services, running_services

pytestmark = pytest.mark.integration

JWT_SECRET = secrets.token_urlsafe(40)
SEED = 20_251_206
MAX_EXAMPLES = 100  # per operation, in the fuzzing phase; the coverage phase's cases come on top


@schemathesis.serializer("application/x-ndjson")
def ndjson_body(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """Lines of NDJSON: each item of a generated array on its own line; anything else (a
    negative case's object, number or text) as one line of it. ``Content-Encoding: gzip`` on the
    case gzips the body."""
    if isinstance(value, bytes):
        body = value
    elif isinstance(value, str):
        body = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, list):
        body = b"".join(msgspec.json.encode(item) + b"\n" for item in value)
    else:
        body = msgspec.json.encode(value)
    headers = ctx.case.headers or {}
    if any(k.lower() == "content-encoding" and v == "gzip" for k, v in headers.items()):
        body = gzip.compress(body, mtime=0)
    return body


@dataclass
class Fuzzed:
    settings: Settings
    ctx: ApiContext
    app: FastAPI
    tenant: NewTenant
    tokens: dict[str, str | None]  # name -> Authorization header (None: no header)
    answers: defaultdict[tuple[str, bool], Counter[int]]  # (operation, valid token) -> statuses


def _close(ctx: ApiContext) -> None:
    ctx.producer.close()
    ctx.producer._producer = None
    ctx.admin._admin = None


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    with running_services(tmp_path_factory.mktemp("fuzz")) as services:
        yield from _fuzzed(services)


def _fuzzed(services: Services) -> Iterator[Fuzzed]:
    # The job submission API of a Ray that is not there (never a running `aurora up`'s).
    dashboard = f"http://127.0.0.1:{free_port()}"
    settings = services.settings(jwt_secret=JWT_SECRET, ray_dashboard_url=dashboard)
    ctx = ApiContext.from_settings(settings)
    app = create_api(ctx, ray_health=lambda: {"status": "ok"}, metrics=ApiMetrics())
    tenant = create_tenant(settings, ctx.store, ctx.admin, name="fuzz")
    # /status reports a tenant's shards: no shard runs here, so say they beat.
    ctx.store.put_shard_health(tenant.tenant_id, 0, {"lag": 0, "events": 0})
    good = ctx.issuer.issue(
        tenant_id=tenant.tenant_id, client_id=tenant.client_id, scopes=frozenset(ALL_SCOPES)
    )
    now = int(time.time())
    expired = jwt.encode(
        {"iss": "aurora", "sub": "c", "tenant_id": tenant.tenant_id, "scope": "alerts:read",
         "iat": now - 120, "exp": now - 60},
        JWT_SECRET,
        "HS256",
    )  # fmt: skip
    narrow = ctx.issuer.issue(  # valid, but with no scope a route asks for: 403
        tenant_id=tenant.tenant_id, client_id=tenant.client_id, scopes=frozenset({"nothing"})
    )
    foreign = TokenIssuer(secrets.token_urlsafe(40)).issue(
        tenant_id=tenant.tenant_id, client_id="c", scopes=frozenset(ALL_SCOPES)
    )
    tokens: dict[str, str | None] = {
        "valid": f"Bearer {good}",
        "none": None,
        "garbage": "Bearer not-a-jwt",
        "expired": f"Bearer {expired}",
        "foreign signature": f"Bearer {foreign}",
        "no scope": f"Bearer {narrow}",
        "basic": "Basic Zm9vOmJhcg==",
    }
    try:
        yield Fuzzed(settings, ctx, app, tenant, tokens, defaultdict(Counter))
    finally:
        _close(ctx)


def _openapi() -> dict[str, Any]:
    """The schema the app serves at /openapi.json; building it connects to nothing."""
    settings = Settings(env="development", jwt_secret=JWT_SECRET)
    app = create_api(
        ApiContext.from_settings(settings), ray_health=lambda: {}, metrics=ApiMetrics()
    )
    return app.openapi()


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",
            "max-examples": max(1, round(MAX_EXAMPLES * FUZZ_SCALE)),
            "deterministic": FUZZ_SCALE == 1.0,
            "with-security-parameters": False,
            "database": "none",
        },
        # The coverage phase (boundaries and each kind of schema violation) and the fuzzing
        # phase; the schema's examples phase cannot run with `given` (the token, steering).
        "phases": {"examples": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_dict(_openapi(), config=CONFIG)


def no_server_error(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """No 5xx, but the documented 503 of a backfill submission: no Ray runs in this test."""
    if response.status_code < 500:
        return
    operation = f"{case.operation.method.upper()} {case.operation.path}"
    if operation == "POST /v1/ingest/backfill" and response.status_code == 503:
        body = response.json()
        if body["error"] == "unavailable" and "could not be submitted" in body["message"]:
            return
    raise AssertionError(f"{operation} answered {response.status_code}: {response.text[:500]}")


#: Bodies no schema describes: bytes, invalid UTF-8, deep nesting, numbers past every bound.
GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"\xef\xbb\xbf{}\n",
            b'{"tenant_id": "\xff"}\n',
            b"[" * 3000 + b"]" * 3000 + b"\n",
            b"[" * 40 + b'"' + b'\\"' * 2000 + b"\n",
            b'{"payload": {"qty": 1e400, "n": 18446744073709551617}}\n',
            b"\r\n\r\n \n",
            b"NaN\n-Infinity\n",
        ]
    ),
)
#: The token a request carries: mostly a valid one, else each way of being refused.
AUTH = st.sampled_from(
    ["valid"] * 3 + ["none", "garbage", "expired", "foreign signature", "no scope", "basic"]
)


def steer_ingest(case: schemathesis.Case, data: st.DataObject, tenant_id: str) -> None:
    """Generated envelopes name a random tenant and a time far from now, so they would all be
    refused before anything is produced: most are given the token's tenant and a recent time
    (and then accepted, produced and acknowledged, or refused for their other fields), some
    bodies are replaced by garbage, some are sent gzipped. (Hypothesis starts from the smallest
    draws, 0 and False: they mean "steer".)"""
    body = case.body
    negative = case.meta is not None and case.meta.is_negative_at(ParameterLocation.BODY)
    if negative:
        pass  # a schema violation stays one (schemathesis checks that it is refused)
    elif data.draw(st.integers(0, 5), label="garbage") == 5:
        case.body = data.draw(GARBAGE, label="garbage body")
    elif isinstance(body, list) and not data.draw(st.booleans(), label="foreign tenant"):
        recent = not data.draw(st.booleans(), label="any time")
        for item in body:
            if isinstance(item, dict):
                item["tenant_id"] = tenant_id
                if recent:
                    ago = data.draw(st.floats(0, 86_400), label="seconds ago")
                    item["occurred_at"] = iso(time.time() - ago)
    if data.draw(st.integers(0, 3), label="gzip") == 3:
        case.headers = {**(case.headers or {}), "Content-Encoding": "gzip"}


@schema.parametrize()
@schema.given(auth=AUTH, data=st.data())
def test_no_operation_answers_5xx(
    case: schemathesis.Case, auth: str, data: st.DataObject, fuzzed: Fuzzed
) -> None:
    """Every operation, every documented parameter: no 5xx, documented codes and shapes."""
    case.operation.schema.app = fuzzed.app  # called in-process, its checks' probes too
    if case.operation.path == "/v1/ingest/events":
        steer_ingest(case, data, fuzzed.tenant.tenant_id)
    token = fuzzed.tokens[auth]
    response = case.call_and_validate(
        app=fuzzed.app,
        headers={"Authorization": token} if token is not None else None,
        additional_checks=[no_server_error],
        excluded_checks=[not_a_server_error, positive_data_acceptance],
    )
    fuzzed.answers[(f"{case.operation.method.upper()} {case.operation.path}", auth == "valid")][
        response.status_code
    ] += 1


def test_the_fuzzing_reached_every_operation(fuzzed: Fuzzed) -> None:
    """After the fuzz test (this module, in order): every operation answered a valid token and
    a bad one, and the ingest route both accepted bodies (produced and acknowledged) and refused
    some: nothing was skipped for want of a serializer or a token."""
    operations = {operation for operation, _ in fuzzed.answers}
    if not operations:  # the fuzz test did not run (deselected): nothing to check
        pytest.skip("runs after test_no_operation_answers_5xx over every operation")
    documented = sum(len(item) for item in schema.raw_schema["paths"].values())
    assert len(operations) == documented, sorted(operations)
    for operation in operations:
        assert fuzzed.answers[(operation, True)], operation
        assert fuzzed.answers[(operation, False)], operation
    ingest = fuzzed.answers[("POST /v1/ingest/events", True)]
    assert ingest[202] > 0, ingest
    assert sum(n for code, n in ingest.items() if 400 <= code < 500) > 0, ingest


# --------------------------------------------------------------------------- what it found
def _client(fuzzed: Fuzzed) -> TestClient:
    return TestClient(fuzzed.app, raise_server_exceptions=False)


@pytest.mark.parametrize("name", ["..", "x" * 300, "a/../..", "\u00e9v\u00e9nements.ndjson.gz"])
def test_an_upload_of_any_file_name_is_saved(fuzzed: Fuzzed, name: str) -> None:
    """Found by fuzzing: the upload was saved under its client's file name, so `..` (a
    directory) or a name over 255 bytes answered 500. The name is now reduced to safe
    characters (keeping its extension, which tells the backfill the format)."""
    response = _client(fuzzed).post(
        "/v1/ingest/backfill",
        files={"file": (name, b"{}\n")},
        headers={"Authorization": fuzzed.tokens["valid"]},
    )
    assert response.status_code == 503, response.text  # saved; no Ray here to submit it to
    assert "could not be submitted" in response.json()["message"]
    saved = [p for p in (fuzzed.settings.data_dir / "backfill").rglob("*") if p.is_file()]
    assert all(len(p.name) <= 100 and not p.name.startswith(".") for p in saved)


_BAD_MULTIPART = {
    "content": b"--b0\r\nNone--b0--\r\n",
    "headers": {"Content-Type": "multipart/form-data; boundary=b0"},
}


def test_a_multipart_body_that_does_not_parse_is_the_apis_own_400(fuzzed: Fuzzed) -> None:
    """Found by fuzzing: Starlette's own `{"detail": "Invalid multipart data."}` came back,
    not the documented error bodies."""
    http = _client(fuzzed)
    headers = {**_BAD_MULTIPART["headers"], "Authorization": fuzzed.tokens["valid"]}
    response = http.post("/v1/ingest/backfill", content=_BAD_MULTIPART["content"], headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert "multipart" in response.json()["message"]
    response = http.post("/v1/oauth/token", **_BAD_MULTIPART)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_every_protected_operation_documents_401_and_403(fuzzed: Fuzzed) -> None:
    """Found by fuzzing: a missing or bad token answered 401 on every protected operation, which
    none documented (nor 403 for a missing scope, nor the token endpoint's 400 and 401)."""
    spec = _client(fuzzed).get("/openapi.json").json()
    protected = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            if operation.get("security"):
                protected += 1
                assert {"401", "403"} <= codes, (method, path)
    assert protected == 14  # and the status views of a tenant and of an operator
    assert {"200", "400", "401"} <= set(spec["paths"]["/v1/oauth/token"]["post"]["responses"])


@pytest.mark.parametrize("since", ["0.1686334151584834", "1700000000", "-1", "1e9"])
def test_since_is_a_time_not_a_number(fuzzed: Fuzzed, since: str) -> None:
    """Found by fuzzing: `?since=0.1686` was read as a Unix time (pydantic's lax datetime) and
    answered 200, by the route and by its fast path, where the schema says `date-time` and the
    README ISO 8601 with a zone."""
    response = _client(fuzzed).get(
        "/v1/stock/alerts",
        params={"since": since},
        headers={"Authorization": fuzzed.tokens["valid"]},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "since"]
    assert accepted_query([("since", since)]) is None  # the fast path leaves it to the route


@pytest.mark.parametrize(
    "body", [{"skus": {"k": True}}, {"default": True}, {"default": "0.5"}, {"skus": {"k": "1"}}]
)
def test_a_threshold_is_a_number(fuzzed: Fuzzed, body: dict[str, Any]) -> None:
    """Found by fuzzing: `{"skus": {"k": true}}` set a threshold of 1.0 (pydantic's lax float
    takes `true` and numeric strings), where the schema says a number."""
    http = _client(fuzzed)
    headers = {"Authorization": fuzzed.tokens["valid"]}
    before = http.get("/v1/settings/thresholds", headers=headers).json()
    response = http.put("/v1/settings/thresholds", json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert http.get("/v1/settings/thresholds", headers=headers).json() == before
