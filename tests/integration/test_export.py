"""CSV export through the real Serve application, Valkey and the CLI."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.domain.alerts import AlertRecord
from aurora_ray.export import ALERT_COLUMNS, BOM, PREDICTION_COLUMNS
from tests.integration.test_cli import aurora

pytestmark = pytest.mark.integration

T0 = 1_748_854_800.0  # 2025-06-02T09:00:00Z
ODD_SKUS = ["=SUM(A1:A9)", 'SKU, "quoted"', "line\nbreak", "+49 30", "@cmd", "-1"]


def _alerts(n: int) -> list[AlertRecord]:
    out = []
    for i in range(n):
        sku = ODD_SKUS[i] if i < len(ODD_SKUS) else f"SKU-{i:05d}"
        out.append(
            AlertRecord(
                alert_id=str(uuid.UUID(int=i + 1)),
                sku=sku,
                warehouse="DE-HAM" if i % 2 else "FR-PAR",
                probability=round(0.7 + (i % 30) / 100, 2),
                predicted_oos_at=None if i % 5 == 0 else "2025-06-04T09:00:00.000Z",
                as_of_s=T0 + i,
                created_s=T0 + 60 * i,  # one a minute: created_at 09:00, 09:01, ...
                model_version="analytic-nb-1",
            )
        )
    return out


@pytest.fixture
def filled(stack, make_tenant) -> dict[str, Any]:
    tenant = make_tenant("export")
    store = RedisStore(stack.settings.redis_url)
    alerts = _alerts(40)
    predictions = {
        f"P-{i:03d}@{wh}": {
            "sku": f"P-{i:03d}",
            "warehouse": wh,
            "on_hand": i,
            "demand_rate_per_hour": 0.5,
            "probability": i / 10,
            "predicted_oos_at": None,
            "model_version": "analytic-nb-1",
            "as_of": f"2025-06-02T0{i}:00:00.000Z",
        }
        for i in range(10)
        for wh in ("DE-HAM", "FR-PAR")
    }
    store.write_outputs(
        tenant.tenant_id, shard=0, predictions=predictions, alerts=alerts[:25]
    )  # two batches, as shards write them
    store.write_outputs(tenant.tenant_id, shard=0, predictions={}, alerts=alerts[25:])
    return {"tenant": tenant, "alerts": alerts, "predictions": predictions}


def _expected(alerts: list[AlertRecord]) -> list[list[str]]:
    rows = []
    for a in alerts:
        api = a.to_api()
        row = ["" if api[c] is None else str(api[c]) for c in ALERT_COLUMNS]
        for i, name in enumerate(ALERT_COLUMNS):
            if name in ("alert_id", "sku", "warehouse", "model_version") and row[i][:1] in (
                "=+-@\t\r"
            ):
                row[i] = "'" + row[i]
        rows.append(row)
    return rows


def _parse(body: bytes) -> list[list[str]]:
    assert body.startswith(BOM), body[:20]
    return list(csv.reader(io.StringIO(body[len(BOM) :].decode("utf-8"), newline="")))


def _get(stack, token: str | None, path: str, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{stack.base_url}{path}", params=params, headers=headers, timeout=60)


def test_alerts_csv_streams_every_alert_oldest_first(stack, filled) -> None:
    tenant = filled["tenant"]
    response = _get(stack, tenant.client.token(), "/v1/exports/alerts.csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="alerts-')
    assert disposition.endswith('.csv"')
    assert "content-length" not in response.headers  # streamed (chunked), not buffered
    rows = _parse(response.content)
    assert rows[0] == list(ALERT_COLUMNS)
    assert rows[1:] == _expected(filled["alerts"])
    assert rows[1][1] == "'=SUM(A1:A9)"
    assert rows[2][1] == 'SKU, "quoted"'
    assert rows[3][1] == "line\nbreak"


def test_alerts_csv_filters(stack, filled) -> None:
    tenant, alerts = filled["tenant"], filled["alerts"]
    token = tenant.client.token()

    def ids(**params: Any) -> list[str]:
        response = _get(stack, token, "/v1/exports/alerts.csv", **params)
        assert response.status_code == 200, response.text
        return [r[0] for r in _parse(response.content)[1:]]

    # created_at is 09:00 + i minutes: [09:10, 09:20) holds alerts 10..19
    window = ids(since="2025-06-02T09:10:00Z", until="2025-06-02T11:20:00+02:00")
    assert window == [a.alert_id for a in alerts[10:20]]
    assert ids(sku="SKU-00007") == [alerts[7].alert_id]
    assert ids(warehouse="DE-HAM") == [a.alert_id for a in alerts if a.warehouse == "DE-HAM"]
    assert ids(min_probability="0.95") == [a.alert_id for a in alerts if a.probability >= 0.95]
    assert ids(since="2030-01-01T00:00:00Z") == []


def test_predictions_csv(stack, filled) -> None:
    tenant, predictions = filled["tenant"], filled["predictions"]
    response = _get(stack, tenant.client.token(), "/v1/exports/predictions.csv")
    assert response.status_code == 200, response.text
    assert 'filename="predictions-' in response.headers["content-disposition"]
    rows = _parse(response.content)
    assert rows[0] == list(PREDICTION_COLUMNS)
    expected = [
        ["" if p[c] is None else str(p[c]) for c in PREDICTION_COLUMNS]
        for _, p in sorted(predictions.items())
    ]
    assert rows[1:] == expected
    response = _get(
        stack,
        tenant.client.token(),
        "/v1/exports/predictions.csv",
        warehouse="FR-PAR",
        min_probability="0.5",
        until="2025-06-02T08:00:00Z",
    )
    assert [(r[0], r[1]) for r in _parse(response.content)[1:]] == [
        (f"P-{i:03d}", "FR-PAR") for i in (5, 6, 7)
    ]


def test_exports_need_a_token_with_alerts_read(stack, filled) -> None:
    tenant = filled["tenant"]
    for path in ("/v1/exports/alerts.csv", "/v1/exports/predictions.csv"):
        assert _get(stack, None, path).status_code == 401
        assert _get(stack, "not-a-token", path).status_code == 401
    narrow = httpx.post(
        f"{stack.base_url}/v1/oauth/token",
        data={"grant_type": "client_credentials", "scope": "events:write"},
        auth=(tenant.client_id, tenant.client_secret),
        timeout=60,
    )
    assert narrow.status_code == 200, narrow.text
    token = narrow.json()["access_token"]
    for path in ("/v1/exports/alerts.csv", "/v1/exports/predictions.csv"):
        response = _get(stack, token, path)
        assert response.status_code == 403
        assert "alerts:read" in response.text


def test_bad_parameters_get_a_clear_error(stack, filled) -> None:
    token = filled["tenant"].client.token()
    cases = [
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-06-02T09:00:00"}, "until"),
        ({"min_probability": "1.5"}, "min_probability"),
        ({"since": "2025-06-03T00:00:00Z", "until": "2025-06-02T00:00:00Z"}, "until"),
    ]
    for params, field in cases:
        for path in ("/v1/exports/alerts.csv", "/v1/exports/predictions.csv"):
            response = _get(stack, token, path, **params)
            assert response.status_code == 422, (params, response.text)
            body = response.json()
            assert body["error"] == "invalid_parameter"
            assert body["field"] == field
            assert body["message"].startswith(f"{field}: ")


def test_another_tenants_alerts_stay_out(stack, filled, make_tenant) -> None:
    other = make_tenant("export-other")
    response = _get(stack, other.client.token(), "/v1/exports/alerts.csv")
    assert response.status_code == 200
    assert _parse(response.content) == [list(ALERT_COLUMNS)]


def test_export_routes_are_in_the_openapi_document(stack) -> None:
    paths = httpx.get(f"{stack.base_url}/openapi.json", timeout=60).json()["paths"]
    assert "/v1/exports/alerts.csv" in paths
    assert "/v1/exports/predictions.csv" in paths


def test_cli_export_writes_the_same_file(stack, filled, tmp_path: Path) -> None:
    tenant = filled["tenant"]
    for kind in ("alerts", "predictions"):
        out = tmp_path / f"{kind}.csv"
        result = aurora(stack, "export", kind, "--tenant", tenant.tenant_id, "--out", str(out))
        assert result.returncode == 0, result.stderr
        rows = len(filled[kind])
        assert f"{rows} {kind} rows written to {out}" in result.stdout
        over_http = _get(stack, tenant.client.token(), f"/v1/exports/{kind}.csv")
        assert out.read_bytes() == over_http.content
    out = tmp_path / "window.csv"
    result = aurora(
        stack, "export", "alerts", "--tenant", tenant.tenant_id, "--out", str(out),
        "--since", "2025-06-02T09:10:00Z", "--until", "2025-06-02T09:20:00Z",
        "--min-probability", "0.8",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = [a for a in filled["alerts"][10:20] if a.probability >= 0.8]
    assert [r[0] for r in _parse(out.read_bytes())[1:]] == [a.alert_id for a in expected]


def test_cli_export_refuses_bad_input(stack, filled, tmp_path: Path) -> None:
    tenant = filled["tenant"]
    out = tmp_path / "x.csv"
    result = aurora(
        stack, "export", "alerts", "--tenant", tenant.tenant_id, "--out", str(out),
        "--since", "last week",
    )  # fmt: skip
    assert result.returncode == 2
    assert "--since" in result.stderr
    result = aurora(stack, "export", "alerts", "--tenant", str(uuid.uuid4()), "--out", str(out))
    assert result.returncode == 1
    assert "no tenant" in result.stderr
    result = aurora(stack, "export", "orders", "--tenant", tenant.tenant_id, "--out", str(out))
    assert result.returncode == 2
    assert not out.exists()
