"""GET /v1/stock/recommendations and the replenishment settings through the real pipeline,
without Ray: events posted to the in-process API go to a real Tansu broker, a
:class:`~aurora_ray.stream.ShardProcessor` (the shard's whole loop) folds them into a real
Valkey, and the API reads them back. The live-versus-replay check through the shard actors is
``test_recommendations_live.py``."""

from __future__ import annotations

import gc
import json
import math
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from aurora_ray.adapters.keys import tenant_key
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.settings import Settings
from aurora_ray.stream import ShardProcessor
from aurora_ray.tenants import NewTenant, create_tenant
from aurora_ray.testing import (
    ManualClock,
    iso,
    ndjson,
    order,
    sku_upserted,
    stock_ordered,
    stock_received,
)
from serve.api import create_api
from serve.context import ApiContext
from serve.metrics import ApiMetrics
from tests.integration._services import (
    PARTITIONS,
    Services,
    drive,
    records_for,
    running_services,
    short_poll_consumer,
)

pytestmark = pytest.mark.integration

HOUR = 3600.0
NDJSON = {"Content-Type": "application/x-ndjson"}
JWT_SECRET = secrets.token_urlsafe(40)
PATH = "/v1/stock/recommendations"
FIELDS = {
    "sku",
    "warehouse",
    "as_of",
    "on_hand",
    "on_order",
    "risk",
    "order_by",
    "recommended_qty",
    "reorder_point",
    "order_up_to",
    "service_level",
    "lead_time_hours",
    "lead_time_source",
    "moq",
    "case_pack",
    "predicted_oos_at_p10",
    "predicted_oos_at_p90",
}
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


@dataclass
class Api:
    settings: Settings
    ctx: ApiContext
    http: TestClient


@dataclass
class Shop:
    """A tenant with a token, its events so far and the shard that folds them."""

    api: Api
    tenant: NewTenant
    headers: dict[str, str]
    shard: ShardProcessor
    sent: int = 0
    t0: float = 0.0

    def post(self, events: list[dict[str, Any]]) -> None:
        response = self.api.http.post(
            "/v1/ingest/events", content=ndjson(events), headers={**self.headers, **NDJSON}
        )
        assert response.status_code == 202, response.text
        self.sent += len(events)
        drive(self.shard, self.sent)

    def get(self, path: str = PATH, **params: Any) -> httpx.Response:
        return self.api.http.get(path, params=params, headers=self.headers)

    def rows(self, **params: Any) -> list[dict[str, Any]]:
        """Every page of the recommendations, following Link rel="next"."""
        out: list[dict[str, Any]] = []
        response = self.get(**params)
        for _ in range(100):
            assert response.status_code == 200, response.text
            out.extend(response.json())
            match = _NEXT.search(response.headers.get("link", ""))
            if match is None:
                return out
            response = self.api.http.get(match.group(1), headers=self.headers)
        raise AssertionError("pagination does not end")

    def by_sku(self) -> dict[str, dict[str, Any]]:
        return {r["sku"]: r for r in self.rows()}


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with running_services(tmp_path_factory.mktemp("reco")) as svc:
        yield svc


@pytest.fixture(scope="module")
def api(services: Services) -> Iterator[Api]:
    # The due index written with every micro-batch: the order is exact after each drive().
    settings = services.settings(jwt_secret=JWT_SECRET, due_index_refresh_s=0.0)
    ctx = ApiContext.from_settings(settings)
    app = create_api(ctx, ray_health=lambda: {"status": "ok"}, metrics=ApiMetrics())
    with TestClient(app) as http:
        yield Api(settings, ctx, http)
    for shard in _SHARDS:  # their consumers, before the broker stops
        shard.close()
    ctx.producer.close()
    ctx.producer._producer = None
    ctx.admin._admin = None
    gc.collect()


_SHARDS: list[ShardProcessor] = []


def shard_for(settings: Settings, tenant_id: str, **kwargs: Any) -> ShardProcessor:
    shard = ShardProcessor(
        settings,
        tenant_id=tenant_id,
        shard=0,
        partitions=list(range(PARTITIONS)),
        store=RedisStore(settings.redis_url),
        consumer_factory=short_poll_consumer(settings, tenant_id, 0),
        **kwargs,
    )
    shard.restore()
    _SHARDS.append(shard)
    return shard


def open_shop(api: Api, name: str, **shard_kwargs: Any) -> Shop:
    tenant = create_tenant(api.settings, api.ctx.store, api.ctx.admin, name=name)
    bearer = api.ctx.issuer.issue(
        tenant_id=tenant.tenant_id,
        client_id=tenant.client_id,
        scopes=frozenset({"alerts:read", "events:write", "settings:write"}),
    )
    shard = shard_for(api.settings, tenant.tenant_id, **shard_kwargs)
    return Shop(api, tenant, {"Authorization": f"Bearer {bearer}"}, shard)


def sales(tid: str, sku: str, *, t0: float, hours: int, every_h: int = 2, qty: int = 2) -> list:
    return [
        order(tid, sku, "DE-HAM", qty, at=t0 + h * HOUR, order_id=f"{sku}-{h}")
        for h in range(1, hours + 1, every_h)
    ]


def stream(tid: str, t0: float) -> list[dict[str, Any]]:
    """Five SKUs in DE-HAM selling 1 unit an hour for four days (and one in FR-PAR):

    * GIVEN: a lead time of 48 h, MOQ 25 and case pack 12 on its sku.upserted;
    * LEARNED: a purchase order placed at 1 h, expected at 73 h, received at 61 h (60 h);
    * DEFAULT: neither (the tenant's default lead time, 168 h);
    * SHORT: 30 units only, due at once;
    * IDLE: no demand (nothing to plan);
    * FAR in FR-PAR: 100 000 units."""
    events = [
        sku_upserted(tid, "GIVEN", "DE-HAM", 400, at=t0, lead_time_hours=48, moq=25, case_pack=12),
        sku_upserted(tid, "LEARNED", "DE-HAM", 400, at=t0),
        sku_upserted(tid, "DEFAULT", "DE-HAM", 400, at=t0),
        sku_upserted(tid, "SHORT", "DE-HAM", 30, at=t0),
        sku_upserted(tid, "IDLE", "DE-HAM", 50, at=t0),
        sku_upserted(tid, "FAR", "FR-PAR", 100_000, at=t0),
        stock_ordered(tid, "LEARNED", "DE-HAM", 50, at=t0 + HOUR, expected_at=t0 + 73 * HOUR),
    ]
    for sku in ("GIVEN", "LEARNED", "DEFAULT", "SHORT"):
        events += sales(tid, sku, t0=t0, hours=96)
    events += [
        order(tid, "FAR", "FR-PAR", 2, at=t0 + h * HOUR, order_id=f"FAR-{h}")
        for h in range(1, 97, 2)
    ]
    events.append(stock_received(tid, "LEARNED", "DE-HAM", 50, at=t0 + 61 * HOUR))
    return sorted(events, key=lambda e: e["occurred_at"])


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def shop(api: Api) -> Shop:
    shop = open_shop(api, "recommendations")
    shop.t0 = time.time() - 20 * 24 * HOUR
    shop.post(stream(shop.tenant.tenant_id, shop.t0))
    return shop


def test_a_row_per_sku_and_warehouse_with_its_lead_time_source(shop: Shop) -> None:
    rows = shop.rows()
    assert sorted(r["sku"] for r in rows) == ["DEFAULT", "FAR", "GIVEN", "IDLE", "LEARNED", "SHORT"]
    assert all(set(r) == FIELDS for r in rows), rows[0]
    by_sku = {r["sku"]: r for r in rows}
    predictions = {p["sku"]: p for p in shop.get("/v1/stock/predictions").json()}
    for sku, row in by_sku.items():  # the same picture as the prediction
        assert (row["as_of"], row["on_hand"]) == (
            predictions[sku]["as_of"],
            predictions[sku]["on_hand"],
        )
        assert row["service_level"] == shop.api.settings.service_level

    given, learned, default = by_sku["GIVEN"], by_sku["LEARNED"], by_sku["DEFAULT"]
    assert (given["lead_time_source"], given["lead_time_hours"]) == ("given", 48.0)
    assert (learned["lead_time_source"], learned["lead_time_hours"]) == ("learned", 60.0)
    assert (default["lead_time_source"], default["lead_time_hours"]) == ("default", 168.0)
    assert learned["on_order"] == 0 and learned["on_hand"] == 400 - 96 + 50
    # MOQ and case pack: whole cases, at least the MOQ.
    assert (given["moq"], given["case_pack"]) == (25, 12)
    assert given["recommended_qty"] % 12 == 0 and given["recommended_qty"] >= 25
    assert default["moq"] is None and default["case_pack"] is None
    # A longer lead time needs a higher reorder point at the same demand.
    assert default["reorder_point"] > given["reorder_point"] > 0
    assert default["order_up_to"] >= default["reorder_point"]

    short = by_sku["SHORT"]  # 30 - 96 < 0: out of stock, due now
    assert short["order_by"] == short["as_of"] and short["risk"] == 1.0
    assert short["recommended_qty"] >= round(short["order_up_to"])
    p10, p90 = given["predicted_oos_at_p10"], given["predicted_oos_at_p90"]
    assert ts(given["as_of"]) < ts(p10) < ts(p90)

    idle = by_sku["IDLE"]  # no demand: nothing to plan
    assert idle["order_by"] is None and idle["recommended_qty"] == 0 and idle["risk"] == 0
    assert idle["predicted_oos_at_p10"] is None

    # The earliest order_by first, nothing to plan last.
    due = [ts(r["order_by"]) for r in rows if r["order_by"] is not None]
    assert due == sorted(due) and rows[-1]["sku"] == "IDLE"


def test_pages_and_filters(shop: Shop) -> None:
    everything = shop.rows()
    assert shop.rows(limit=2) == everything  # three pages of two, through the Link header
    first = shop.get(limit=2)
    assert len(first.json()) == 2 and 'rel="next"' in first.headers["link"]

    assert [r["sku"] for r in shop.rows(warehouse="FR-PAR")] == ["FAR"]
    assert [r["sku"] for r in shop.rows(sku="GIVEN")] == ["GIVEN"]
    assert shop.rows(sku="GIVEN", warehouse="FR-PAR") == []
    assert shop.rows(sku="NOPE") == []

    when = sorted(ts(r["order_by"]) for r in everything if r["order_by"])[2]
    due = shop.rows(due_before=iso(when))
    assert due == [r for r in everything if r["order_by"] and ts(r["order_by"]) <= when]
    assert len(due) == 3
    risky = shop.rows(min_risk=0.5)
    assert risky and risky == [r for r in everything if r["risk"] >= 0.5]
    assert shop.rows(warehouse="DE-HAM", limit=1) == [
        r for r in everything if r["warehouse"] == "DE-HAM"
    ]


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"cursor": "garbage"}, 400, None),
        ({"cursor": "nan:A@B"}, 400, None),
        ({"min_risk": 1.5}, 422, "min_risk"),
        ({"due_before": "tomorrow"}, 422, "due_before"),
        ({"due_before": "2025-06-02T09:00:00"}, 422, "due_before"),  # no time zone
        ({"due_before": "1750000000"}, 422, "due_before"),  # a number, not ISO 8601
        ({"limit": 0}, 422, "limit"),
        ({"limit": 10_001}, 422, "limit"),
    ],
)
def test_bad_parameters_are_named(
    shop: Shop, params: dict[str, Any], status: int, field: str | None
) -> None:
    response = shop.get(**params)
    assert response.status_code == status, response.text
    if field is not None:
        assert field in {loc for e in response.json()["detail"] for loc in e["loc"]}


def test_following_a_recommendation_never_orders_it_twice(api: Api) -> None:
    """A planner orders what is due: the stock.ordered it posts counts as on order, the row is
    no longer due, and what it would order next is less than what it ordered."""
    shop = open_shop(api, "follow")
    tid, t0 = shop.tenant.tenant_id, time.time() - 10 * 24 * HOUR
    shop.post(
        [
            sku_upserted(tid, "A", "DE-HAM", 80, at=t0, lead_time_hours=72, case_pack=10),
            *sales(tid, "A", t0=t0, hours=48),
        ]
    )
    [before] = shop.rows()
    as_of = ts(before["as_of"])
    assert before["order_by"] == before["as_of"], "A must be due now"
    qty = before["recommended_qty"]
    assert qty > 0 and qty % 10 == 0
    assert shop.rows(due_before=before["as_of"]) == [before]

    at = as_of + 60
    shop.post([stock_ordered(tid, "A", "DE-HAM", qty, at=at, expected_at=at + 72 * HOUR)])
    [after] = shop.rows()
    assert after["on_order"] == qty and after["on_hand"] == before["on_hand"]
    assert ts(after["order_by"]) > ts(after["as_of"])  # no longer due
    assert after["recommended_qty"] < qty  # the next order, later, not this one again
    assert after["risk"] < before["risk"]
    assert shop.rows(due_before=after["as_of"]) == []  # nothing to order now
    # Orders on their way are counted until they land, so repeating the check orders nothing.
    shop.post([order(tid, "A", "DE-HAM", 1, at=at + HOUR, order_id="late")])
    [again] = shop.rows()
    assert again["on_order"] == qty and ts(again["order_by"]) > ts(again["as_of"])


def test_settings_reach_the_recommendations(api: Api) -> None:
    shop = open_shop(api, "settings")
    tid, t0 = shop.tenant.tenant_id, time.time() - 10 * 24 * HOUR
    path = "/v1/settings/replenishment"
    defaults = {
        "service_level": 0.992,
        "default_lead_time_hours": 168.0,
        "review_period_hours": 168.0,
        "skus": {},
    }
    assert shop.get(path).json() == defaults
    update = {"service_level": 0.9, "default_lead_time_hours": 100, "skus": {"B": 0.995}}
    response = api.http.put(path, json=update, headers=shop.headers)
    assert response.status_code == 200, response.text
    expected = {**defaults, **update, "default_lead_time_hours": 100.0}
    assert response.json() == expected and shop.get(path).json() == expected

    shop.post(
        [
            sku_upserted(tid, "A", "DE-HAM", 500, at=t0),
            sku_upserted(tid, "B", "DE-HAM", 500, at=t0),
            *sales(tid, "A", t0=t0, hours=48),
            *sales(tid, "B", t0=t0, hours=48),
        ]
    )
    rows = shop.by_sku()
    assert (rows["A"]["service_level"], rows["A"]["lead_time_hours"]) == (0.9, 100.0)
    assert rows["B"]["service_level"] == 0.995
    # The same demand at a higher service level holds more stock.
    assert rows["B"]["reorder_point"] > rows["A"]["reorder_point"]

    # Removing the override and the review period: the next batch uses the tenant's level.
    update = {"skus": {"B": None}, "review_period_hours": 0}
    assert api.http.put(path, json=update, headers=shop.headers).status_code == 200
    shop.post([order(tid, "B", "DE-HAM", 1, at=t0 + 49 * HOUR, order_id="b-late")])
    b = shop.by_sku()["B"]
    assert b["service_level"] == 0.9
    assert b["order_up_to"] == b["reorder_point"]  # no review period: cover the lead time


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"service_level": 0.4}, "service_level"),
        ({"service_level": 1.0}, "service_level"),
        ({"service_level": "high"}, "service_level"),
        ({"service_level": True}, "service_level"),
        ({"default_lead_time_hours": 0}, "default_lead_time_hours"),
        ({"default_lead_time_hours": 9000}, "default_lead_time_hours"),
        ({"review_period_hours": -1}, "review_period_hours"),
        ({"skus": {"A": 1.5}}, "skus"),
        ({"skus": {"": 0.9}}, "skus"),
        ({"skus": ["A"]}, "skus"),
        ({"lead_time": 48}, "lead_time"),  # not a field
    ],
)
def test_bad_settings_are_refused_naming_the_field(
    api: Api, shop: Shop, body: dict[str, Any], field: str
) -> None:
    before = shop.get("/v1/settings/replenishment").json()
    response = api.http.put("/v1/settings/replenishment", json=body, headers=shop.headers)
    assert response.status_code == 422, response.text
    assert field in {str(loc) for e in response.json()["detail"] for loc in e["loc"]}
    assert shop.get("/v1/settings/replenishment").json() == before


def test_alerts_carry_the_order_they_call_for(api: Api, shop: Shop) -> None:
    alerts = shop.get("/v1/stock/alerts", sku="SHORT").json()
    assert alerts
    alert = alerts[-1]  # the first one raised
    for name in ("order_by", "predicted_oos_at_p10", "predicted_oos_at_p90"):
        assert alert[name] is not None and alert[name].endswith("Z"), name
    assert alert["recommended_qty"] > 0
    assert ts(alert["order_by"]) >= ts(alert["as_of"])
    assert ts(alert["predicted_oos_at_p10"]) <= ts(alert["predicted_oos_at_p90"])
    # The FastAPI route (what the fast path hands over) answers the same.
    slow_app = create_api(api.ctx, ray_health=lambda: {}, metrics=ApiMetrics(), fast_reads=False)
    with TestClient(slow_app) as slow:
        same = slow.get("/v1/stock/alerts", params={"sku": "SHORT"}, headers=shop.headers)
    assert same.json() == alerts
    csv_text = shop.get("/v1/exports/alerts.csv", sku="SHORT").content.decode("utf-8-sig")
    header, first = csv_text.splitlines()[:2]
    assert header.endswith("order_by,recommended_qty,predicted_oos_at_p10,predicted_oos_at_p90")
    assert first.split(",")[-4:] == [  # oldest first
        alert["order_by"],
        str(alert["recommended_qty"]),
        alert["predicted_oos_at_p10"],
        alert["predicted_oos_at_p90"],
    ]


def test_an_alert_written_before_recommendations_still_reads(api: Api) -> None:
    shop = open_shop(api, "old-alert")
    old = (
        '{"alert_id":"00000000-0000-5000-8000-000000000001","sku":"OLD","warehouse":"DE-HAM",'
        '"predicted_oos_at":null,"probability":0.9,"as_of":"2025-06-02T09:00:00.000Z",'
        '"created_at":"2025-06-02T09:00:01.000Z","model_version":"analytic-nb-1"}'
    )
    store = api.ctx.store
    for key in ("alerts", "alerts:sku:OLD"):
        store.client.zadd(tenant_key(shop.tenant.tenant_id, *key.split(":")), {old: 1.7e12})
    [alert] = shop.get("/v1/stock/alerts").json()
    assert alert["sku"] == "OLD" and "order_by" not in alert
    response = shop.get("/v1/exports/alerts.csv")
    assert response.status_code == 200
    assert response.content.decode("utf-8-sig").splitlines()[1].endswith("analytic-nb-1,,,,")


def test_the_due_index_is_written_at_most_every_refresh_and_rebuilt_after_a_restore(
    api: Api,
) -> None:
    """With due_index_refresh_s = 60: the index follows the rows once a minute (at the next
    batch or idle poll), and a shard restored from its checkpoint writes it again whole."""
    settings = api.settings.model_copy(update={"due_index_refresh_s": 60.0})
    clock = ManualClock()
    tenant = create_tenant(settings, api.ctx.store, api.ctx.admin, name="due-index")
    tid = tenant.tenant_id
    shop = Shop(api, tenant, {}, shard_for(settings, tid, clock=clock))
    bearer = api.ctx.issuer.issue(tenant_id=tid, client_id="c", scopes=frozenset({"alerts:read"}))
    shop.headers = {"Authorization": f"Bearer {bearer}"}
    store, key = api.ctx.store, tenant_key(tid, "order_by")
    t0 = time.time() - 10 * 24 * HOUR

    def produce(events: list[dict[str, Any]]) -> None:
        topic = settings.topic_for(tid)
        api.ctx.producer.produce_batch(topic, records_for(events, tid)).result(timeout=30)
        shop.sent += len(events)
        drive(shop.shard, shop.sent)

    def index() -> dict[str, float]:
        return {m.decode(): s for m, s in store.client.zrange(key, 0, -1, withscores=True)}

    produce([sku_upserted(tid, "A", "DE-HAM", 500, at=t0), *sales(tid, "A", t0=t0, hours=24)])
    first = index()  # the first batch after a restore writes at once
    assert set(first) == {"A@DE-HAM"}
    row = shop.rows()[0]
    assert first["A@DE-HAM"] == round(ts(row["order_by"]) * 1000)

    produce(sales(tid, "A", t0=t0 + 24 * HOUR, hours=24, qty=5))  # A sells faster
    moved = shop.by_sku()["A"]
    assert index() == first, "written again before the minute was over"
    assert round(ts(moved["order_by"]) * 1000) != first["A@DE-HAM"]
    clock.advance(61)
    shop.shard.step(timeout=0.2)  # an idle poll writes what is due
    assert index() == {"A@DE-HAM": round(ts(moved["order_by"]) * 1000)}

    shop.shard.checkpoint()
    store.client.delete(key)  # lost, say: a restored shard writes it whole
    shop.shard = shard_for(settings, tid, clock=clock)
    shop.shard.step(timeout=0.2)
    assert index() == {"A@DE-HAM": round(ts(moved["order_by"]) * 1000)}


def test_recommendations_off_write_none(services: Services, api: Api) -> None:
    settings = api.settings.model_copy(update={"recommendations": False})
    tenant = create_tenant(settings, api.ctx.store, api.ctx.admin, name="off")
    shop = Shop(api, tenant, {}, shard_for(settings, tenant.tenant_id))
    bearer = api.ctx.issuer.issue(
        tenant_id=tenant.tenant_id, client_id="c", scopes=frozenset({"alerts:read"})
    )
    shop.headers = {"Authorization": f"Bearer {bearer}"}
    t0 = time.time() - 5 * 24 * HOUR
    events = [sku_upserted(tenant.tenant_id, "A", "DE-HAM", 5, at=t0)]
    events += sales(tenant.tenant_id, "A", t0=t0, hours=12)
    topic = settings.topic_for(tenant.tenant_id)
    api.ctx.producer.produce_batch(topic, records_for(events, tenant.tenant_id)).result(timeout=30)
    drive(shop.shard, len(events))
    assert shop.get("/v1/stock/predictions").json()[0]["sku"] == "A"
    assert shop.rows() == []
    [alert] = shop.get("/v1/stock/alerts").json()
    assert alert["order_by"] is None and alert["recommended_qty"] is None


def test_pages_hold_across_equal_scores_and_moving_rows(api: Api) -> None:
    """Rows with the same order_by (a timer ticks every SKU at one boundary) page by member;
    a row that moves between two pages neither repeats the first page nor skips the rest."""
    tenant = create_tenant(api.settings, api.ctx.store, api.ctx.admin, name="pages")
    tid, store = tenant.tenant_id, api.ctx.store
    index: dict[str, float] = {}
    for i in range(40):
        sku, wh = f"S-{i:02d}", "DE-HAM" if i % 4 else "FR-PAR"
        due = math.inf if i >= 35 else 1.75e12
        rec = [0, 0.5, None if math.isinf(due) else due, 12, 1.0, 2.0, 0.98, 168.0, 2, 0, 0]
        record = {"sku": sku, "warehouse": wh, "as_of": iso(1.75e9), "on_hand": 5, "rec": rec}
        store.client.hset(tenant_key(tid, "pred", sku), wh, json.dumps(record))
        index[f"{sku}@{wh}"] = due
    store.write_order_by(tid, index)
    bearer = api.ctx.issuer.issue(tenant_id=tid, client_id="c", scopes=frozenset({"alerts:read"}))
    reader = Shop(api, tenant, {"Authorization": f"Bearer {bearer}"}, shard=None)  # type: ignore[arg-type]

    def keys(rows: list[dict[str, Any]]) -> list[str]:
        return [f"{r['sku']}@{r['warehouse']}" for r in rows]

    everything = reader.rows()
    ordered = sorted(index, key=lambda k: (index[k], k))
    assert keys(everything) == ordered
    assert reader.rows(limit=7) == everything
    assert reader.rows(limit=3) == everything  # a cursor among the rows with nothing to plan
    in_paris = [r for r in everything if r["warehouse"] == "FR-PAR"]
    assert reader.rows(limit=3, warehouse="FR-PAR") == in_paris
    assert reader.rows(limit=4, sku="S-04") == [r for r in everything if r["sku"] == "S-04"]

    first = reader.get(limit=5)
    assert keys(first.json()) == ordered[:5]
    match = _NEXT.search(first.headers["link"])
    assert match is not None
    store.write_order_by(tid, {ordered[4]: 1.76e12})  # the first page's last row moves later
    following: list[dict[str, Any]] = []
    link: str | None = match.group(1)
    while link is not None:  # the link keeps limit=5
        response = api.http.get(link, headers=reader.headers)
        following += response.json()
        found = _NEXT.search(response.headers.get("link", ""))
        link = found.group(1) if found else None
    # The rest once, and the moved row again where it now stands (a live listing).
    assert keys(following) == ordered[5:35] + [ordered[4]] + ordered[35:]


def test_the_openapi_document_describes_the_routes(api: Api) -> None:
    spec = api.http.get("/openapi.json").json()
    operation = spec["paths"][PATH]["get"]
    params = {p["name"] for p in operation["parameters"]}
    assert {"sku", "warehouse", "due_before", "min_risk", "limit", "cursor"} <= params
    assert {"200", "400", "401", "403", "422", "429"} <= set(operation["responses"])
    schemas = spec["components"]["schemas"]
    assert set(schemas["RecommendationOut"]["properties"]) == FIELDS
    assert {"order_by", "recommended_qty", "predicted_oos_at_p10", "predicted_oos_at_p90"} <= set(
        schemas["AlertOut"]["properties"]
    )
    assert not set(schemas["AlertOut"]["required"]) & {"order_by", "recommended_qty"}
    settings = spec["paths"]["/v1/settings/replenishment"]
    assert {"get", "put"} <= set(settings)
    update = schemas["ReplenishmentUpdate"]["properties"]["service_level"]["anyOf"][0]
    assert (update["minimum"], update["exclusiveMaximum"]) == (0.5, 1.0)
