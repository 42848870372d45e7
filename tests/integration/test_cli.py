"""The `aurora` command line, run as a subprocess against the session stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from aurora_ray.adapters.kafka import TopicAdmin
from aurora_ray.testing import ndjson, order, sku_upserted, wait_for
from tests.integration.helpers import topic_size

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _aurora_command() -> list[str]:
    script = Path(sys.executable).parent / "aurora"
    return [str(script)] if script.exists() else [sys.executable, "-m", "aurora_ray.cli"]


def _env(stack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AURORA_", "RAY_"))}
    env.update(
        AURORA_REDIS_URL=stack.settings.redis_url,
        AURORA_KAFKA_BOOTSTRAP=stack.settings.kafka_bootstrap,
        AURORA_DATA_DIR=str(stack.data_dir),
        # `aurora status` reads every shard's health from Redis: the stack's shard count.
        AURORA_SHARDS_PER_TENANT=str(stack.settings.shards_per_tenant),
        AURORA_JWT_SECRET=stack.settings.jwt_secret.get_secret_value(),
        COLUMNS="240",  # rich wraps at 80 columns without a terminal
        NO_COLOR="1",
    )
    return env


def aurora(stack, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_aurora_command(), *args],
        env=_env(stack),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def cli_tenant(stack) -> dict[str, Any]:
    result = aurora(stack, "tenants", "create", "--name", "cli-tenant", "--json")
    assert result.returncode == 0, result.stderr
    return {"result": result, "record": json.loads(result.stdout)}


def test_tenants_create_json_prints_one_object_and_makes_the_topic(stack, cli_tenant) -> None:
    result = cli_tenant["result"]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    record = json.loads(lines[0])
    assert isinstance(record, dict)
    assert set(record) == {"tenant_id", "client_id", "client_secret"}
    assert all(isinstance(v, str) and v for v in record.values())
    topic = f"{record['tenant_id']}-orders"
    topics = TopicAdmin(stack.settings.kafka_bootstrap).topics()
    assert topic in topics
    assert topics[topic] == stack.settings.partitions_per_topic
    # The credentials work at the token endpoint.
    response = httpx.post(
        f"{stack.base_url}/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(record["client_id"], record["client_secret"]),
        timeout=60,
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("option", "value"), [("--region", "mars-north-1"), ("--tier", "platinum")]
)
def test_tenants_create_refuses_bad_region_or_tier(stack, option: str, value: str) -> None:
    result = aurora(stack, "tenants", "create", "--name", "nope", option, value, "--json")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert option in result.stderr and value in result.stderr
    assert result.stdout.strip() == ""


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _lines(tenant_id: str, n: int, sku: str) -> list[bytes]:
    at = time.time() - 3600
    events = [sku_upserted(tenant_id, sku, "DE-HAM", 100, at=at)] + [
        order(tenant_id, sku, "DE-HAM", 1, at=at + i + 1, order_id=f"{sku}-{i}")
        for i in range(n - 1)
    ]
    return ndjson(events).splitlines()


def test_ingest_sends_a_file_and_reports_the_count(stack, cli_tenant, tmp_path: Path) -> None:
    record = cli_tenant["record"]
    tid = record["tenant_id"]
    before = topic_size(stack, tid)
    path = _write(tmp_path / "events.ndjson", _lines(tid, 12, "CLI-OK"))
    result = aurora(
        stack,
        "ingest",
        str(path),
        "--url",
        stack.base_url,
        "--client-id",
        record["client_id"],
        "--client-secret",
        record["client_secret"],
        "--batch",
        "5",
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "12 events accepted" in result.stdout
    assert topic_size(stack, tid) == before + 12


def test_ingest_names_the_bad_line_by_file_line_number(stack, cli_tenant, tmp_path: Path) -> None:
    """--batch 5: lines 1-5 are accepted, the request of lines 6-10 is refused naming line 7 of
    the file (not line 2 of the request), counting the blank line 3 too."""
    record = cli_tenant["record"]
    tid = record["tenant_id"]
    lines = _lines(tid, 9, "CLI-BAD")
    lines.insert(2, b"")  # file line 3 is blank
    bad = json.loads(lines[6])
    bad["payload"]["qty"] = 0
    lines[6] = json.dumps(bad).encode()  # file line 7
    assert len(lines) == 10
    before = topic_size(stack, tid)
    path = _write(tmp_path / "bad.ndjson", lines)
    env_credentials = {
        "AURORA_CLIENT_ID": record["client_id"],
        "AURORA_CLIENT_SECRET": record["client_secret"],
    }
    result = subprocess.run(
        [*_aurora_command(), "ingest", str(path), "--url", stack.base_url, "--batch", "5"],
        env={**_env(stack), **env_credentials},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    output = result.stdout + result.stderr
    assert "line 7" in output, output
    assert "payload.qty" in output
    assert "line 2:" not in output, "the request's line number leaked instead of the file's"
    assert "4 events before it were accepted" in output
    assert topic_size(stack, tid) == before + 4


def test_ingest_without_credentials_exits_2(stack, tmp_path: Path) -> None:
    path = _write(tmp_path / "x.ndjson", [b"{}"])
    result = aurora(stack, "ingest", str(path), "--url", stack.base_url)
    assert result.returncode == 2
    assert "client-id" in result.stderr


def test_status_prints_every_shard(stack, cli_tenant) -> None:
    tid = cli_tenant["record"]["tenant_id"]

    def healthy():
        # Every shard of the session's tenants ok (the CLI's tenant's start within seconds).
        result = aurora(stack, "status", "--url", stack.base_url)
        return result if result.returncode == 0 else None

    result = wait_for(healthy, timeout=120, interval=1.0, what="aurora status to exit 0")
    out = result.stdout
    assert f"tenant:{tid}:0" in out, out
    shard_rows = [line for line in out.splitlines() if re.search(r"tenant:[0-9a-f-]+:\d", line)]
    assert shard_rows and all(" ok " in f" {row} " or "│ ok" in row for row in shard_rows), out
    for component in ("ray", "redis", "kafka"):
        assert component in out

    result = aurora(stack, "status", "--url", stack.base_url, "--json")
    body = json.loads(result.stdout)
    assert result.returncode == 0 and body["status"] == "ok", result.stdout[-2000:]
    assert [s["status"] for s in body["tenants"][tid]["shards"]] == ["ok"]


def test_status_shows_a_stuck_shard_and_exits_1(stack) -> None:
    """A shard whose loop stopped (its actor still answers, so nothing restarts it): after its
    heartbeat goes stale, `aurora status` and the tenant's view name it down and the CLI exits
    1; the public status stays 200 and names no tenant."""
    import ray

    from aurora_ray.adapters.redis_store import RedisStore
    from aurora_ray.client import AuroraClient
    from aurora_ray.naming import NAMESPACE, shard_name
    from aurora_ray.tenants import create_tenant

    store = RedisStore(stack.settings.redis_url)
    created = create_tenant(
        stack.settings, store, TopicAdmin(stack.settings.kafka_bootstrap), name="stuck"
    )
    tid = created.tenant_id
    client = AuroraClient(
        stack.base_url, client_id=created.client_id, client_secret=created.client_secret
    )

    def shard_status() -> str:
        return str(client.get("/v1/status/tenant").json()["shards"][0]["status"])

    handle = None
    try:
        wait_for(lambda: shard_status() == "ok", timeout=120, what="the shard to beat")
        handle = ray.get_actor(shard_name(tid, 0), namespace=NAMESPACE)
        ray.get(handle.stop.remote(), timeout=60)  # the loop ends; the actor lives on
        wait_for(lambda: shard_status() == "down", timeout=60, interval=1.0, what="stale")
        result = aurora(stack, "status", "--url", stack.base_url, "--json")
        body = json.loads(result.stdout)
        assert result.returncode == 1, result.stdout[-2000:]
        assert body["status"] == "degraded" and f"tenant:{tid}:0" in body["shards"]["down"]
        assert body["tenants"][tid]["status"] == "degraded"
        public = httpx.get(f"{stack.base_url}/status", timeout=30)
        assert public.status_code == 200 and tid not in public.text
    finally:
        store.client.hdel("aurora:tenants", tid)  # out of the registry: no longer reconciled
        if handle is not None:
            ray.kill(handle, no_restart=True)
        client.close()


def test_operators_create_makes_a_credential_for_the_operator_view_only(stack, cli_tenant) -> None:
    result = aurora(stack, "operators", "create", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert set(record) == {"client_id", "client_secret"}
    response = httpx.post(
        f"{stack.base_url}/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(record["client_id"], record["client_secret"]),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "operator:status"
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    response = httpx.get(f"{stack.base_url}/v1/status/operator", headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    assert cli_tenant["record"]["tenant_id"] in response.json()["tenants"]
    for path in ("/v1/stock/alerts", "/v1/stock/predictions", "/v1/status/tenant"):
        response = httpx.get(f"{stack.base_url}{path}", headers=headers, timeout=60)
        assert response.status_code == 403, (path, response.text)
    response = httpx.post(
        f"{stack.base_url}/v1/ingest/events",
        content=b"{}\n",
        headers={**headers, "Content-Type": "application/x-ndjson"},
        timeout=60,
    )
    assert response.status_code == 403, response.text


def test_status_of_an_unreachable_api_exits_1(stack) -> None:
    from aurora_ray.embedded import free_port

    result = aurora(stack, "status", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "does not answer" in result.stderr


def test_tenants_create_refuses_a_blank_name(stack) -> None:
    result = aurora(stack, "tenants", "create", "--name", "   ", "--json")
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 2
    assert "name" in result.stderr


def test_ingest_to_an_unreachable_api_reports_it(stack, cli_tenant, tmp_path: Path) -> None:
    from aurora_ray.embedded import free_port

    record = cli_tenant["record"]
    path = _write(tmp_path / "one.ndjson", _lines(record["tenant_id"], 1, "CLI-DOWN"))
    url = f"http://127.0.0.1:{free_port()}"
    result = aurora(
        stack,
        "ingest",
        str(path),
        "--url",
        url,
        "--client-id",
        record["client_id"],
        "--client-secret",
        record["client_secret"],
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert url in result.stderr


def test_tenants_calendar_fits_on_the_warehouse_orders_and_can_be_removed(stack) -> None:
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    import pyarrow as pa

    from aurora_ray.warehouse import Warehouse
    from aurora_ray.warehouse.schema import SCHEMAS
    from tests.conftest import new_tenant

    tenant = new_tenant(stack, "calendar")  # a tenant of its own: no other test's orders
    tenant.client.close()
    tenant_id = tenant.tenant_id
    env = {"AURORA_WAREHOUSE_URI": stack.settings.warehouse_uri}
    # Orders only on Mondays 09:xx UTC over the last weeks.
    today = datetime.now(UTC).replace(hour=9, minute=30, second=0, microsecond=0)
    mondays = [today - timedelta(days=today.weekday() + 7 * k) for k in range(1, 6)]
    rows = [
        {
            "event_id": f"cal-{i}",
            "order_id": f"o-{i}",
            "tenant_id": tenant_id,
            "sku_id": "CAL-1",
            "warehouse_id": "W",
            "qty": 2,
            "price": Decimal("1.00"),
            "currency": "EUR",
            "order_ts": at,
            "order_date": at.date(),
            "ingested_at": at,
        }
        for i, at in enumerate(mondays)
    ]
    table = pa.Table.from_pylist(rows, schema=SCHEMAS["fact_order"])
    Warehouse(stack.settings.warehouse_uri).write_fact_order(tenant_id, table, batch_id="cal")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_aurora_command(), "tenants", "calendar", "--tenant", tenant_id, *args],
            env={**_env(stack), **env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    fitted = run("--fit", "--json")
    assert fitted.returncode == 0, fitted.stderr
    assert "fitted on 5 order lines" in fitted.stderr
    profile = json.loads(fitted.stdout)
    assert len(profile) == 168 and profile[9] == pytest.approx(0.98 + 0.02 / 168)
    shown = run()
    assert shown.returncode == 0 and shown.stdout.startswith("Mon  98.3 %")
    assert run("--flat").stdout.strip() == "flat week (no calendar)"
    assert run("--json").stdout.strip() == "null"
    both = run("--fit", "--flat")
    assert both.returncode == 2 and "exclude each other" in both.stderr


def test_tenants_set_limits_changes_what_the_api_allows_at_once(stack) -> None:
    """`aurora tenants set-limits` through the session's Serve: the next request is limited on
    both Serve applications (reads and ingest), `--reset` lifts it, `limits` shows it, and bad
    input is refused with a message naming it."""
    created = aurora(stack, "tenants", "create", "--name", "cli-limits", "--json")
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)
    tid = record["tenant_id"]
    shown = aurora(stack, "tenants", "limits", tid, "--json")
    assert shown.returncode == 0, shown.stderr
    limits = json.loads(shown.stdout)
    assert (limits["requests_per_s"], limits["events_per_s"]) == (15_000, 30_000)
    assert limits["events_peak_per_s"] == 45_000 and limits["overridden"] == []

    result = aurora(stack, "tenants", "set-limits", tid, "--requests-per-s", "0.01", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["overridden"] == ["requests_per_s"]
    table = aurora(stack, "tenants", "limits", tid)
    assert table.returncode == 0 and "requests" in table.stdout and "tenant" in table.stdout

    token = httpx.post(
        f"{stack.base_url}/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(record["client_id"], record["client_secret"]),
        timeout=60,
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    first = httpx.get(f"{stack.base_url}/v1/stock/alerts", headers=headers, timeout=60)
    assert first.status_code == 200, first.text
    assert first.headers["RateLimit-Limit"] == "1"
    second = httpx.get(f"{stack.base_url}/v1/stock/alerts", headers=headers, timeout=60)
    assert second.status_code == 429, second.text
    assert second.json()["bucket"] == "requests" and int(second.headers["Retry-After"]) >= 90
    body = ndjson([sku_upserted(tid, "CLI-LIM", "DE-HAM", 5, at=time.time() - 60)])
    posted = httpx.post(
        f"{stack.base_url}/v1/ingest/events",
        content=body,
        headers={**headers, "Content-Type": "application/x-ndjson"},
        timeout=60,
    )
    assert posted.status_code == 429, posted.text  # the same bucket, from the other application

    reset = aurora(stack, "tenants", "set-limits", tid, "--reset", "--json")
    assert reset.returncode == 0 and json.loads(reset.stdout)["overridden"] == []
    third = httpx.get(f"{stack.base_url}/v1/stock/alerts", headers=headers, timeout=60)
    assert third.status_code == 200, third.text
    assert third.headers["RateLimit-Limit"] == "15000"

    for args, code, words in (
        (("--requests-per-s", "-5"), 2, "requests_per_s"),
        (("--events-per-s", "100", "--events-peak-per-s", "50"), 2, "below events_per_s"),
        ((), 2, "nothing to set"),
    ):
        bad = aurora(stack, "tenants", "set-limits", tid, *args)
        assert bad.returncode == code, (args, bad.stdout, bad.stderr)
        assert words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    unknown = aurora(stack, "tenants", "set-limits", "no-such-tenant", "--requests-per-s", "5")
    assert unknown.returncode == 1 and "no tenant" in unknown.stderr
    assert aurora(stack, "tenants", "limits", "no-such-tenant").returncode == 1
    assert json.loads(aurora(stack, "tenants", "limits", tid, "--json").stdout)["overridden"] == []
