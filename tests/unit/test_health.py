"""The status views (aurora_ray.health): shard states, public body, probes, operator view."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from aurora_ray import __version__
from aurora_ray.health import (
    Component,
    ComponentDown,
    HealthRules,
    operator_status,
    probe,
    public_status,
    shard_state,
    tenant_status,
)

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
RULES = HealthRules(stale_after_s=15.0, start_grace_s=60.0)
TENANT = "6f1c2d3e-0000-4000-8000-000000000001"


def state(record: dict[str, Any], created_at: float | None = NOW - 3600) -> str:
    return shard_state(record, now=NOW, tenant_created_at=created_at, rules=RULES)


# -- shard states ---------------------------------------------------------------------------------
def test_a_fresh_heartbeat_is_ok_and_a_stale_one_down() -> None:
    assert state({"heartbeat": NOW - 1}) == "ok"
    assert state({"heartbeat": NOW - 15}) == "ok"
    assert state({"heartbeat": NOW - 15.1}) == "down"


def test_a_new_tenants_shard_without_a_record_is_starting_within_the_grace() -> None:
    assert state({}, created_at=NOW - 2) == "starting"
    assert state({}, created_at=NOW - 60) == "starting"
    assert state({}, created_at=NOW - 61) == "down"
    assert state({}, created_at=None) == "down"  # unknown age: no grace


def test_an_actor_being_constructed_is_starting_until_it_beats() -> None:
    # Restarted by Ray (or started by the Supervisor) after its last heartbeat.
    assert state({"heartbeat": NOW - 40, "started_at": NOW - 5}) == "starting"
    assert state({"heartbeat": NOW - 2, "started_at": NOW - 1}) == "starting"
    assert state({"started_at": NOW - 5}) == "starting"
    # ... for the grace period only: a shard stuck restoring is down.
    assert state({"heartbeat": NOW - 400, "started_at": NOW - 61}) == "down"
    # Once it beats, its heartbeat decides.
    assert state({"heartbeat": NOW - 1, "started_at": NOW - 30}) == "ok"
    assert state({"heartbeat": NOW - 20, "started_at": NOW - 30}) == "down"


def test_a_heartbeat_that_is_not_a_number_counts_as_none() -> None:
    assert state({"heartbeat": "soon"}, created_at=NOW - 3600) == "down"
    assert state({"heartbeat": None}, created_at=NOW - 1) == "starting"


# -- the tenant view ------------------------------------------------------------------------------
def view(records: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "created_at": NOW - 3600,
        "topic_exists": True,
        "delayed": None,
        "model": {"active": "analytic-nb-1", "drift": None},
        "now": NOW,
        "rules": RULES,
    }
    return tenant_status(TENANT, records=records, **(args | kw))


def test_the_tenant_view_lists_its_shards_and_sums_them_up() -> None:
    body = view(
        [
            {"shard": 0, "heartbeat": NOW - 1, "lag": 3, "events": 10, "last_checkpoint": NOW - 4},
            {"shard": 1, "heartbeat": NOW - 2, "lag": 0, "events": 5, "pid": 1234},
        ]
    )
    assert body["status"] == "ok" and body["version"] == __version__
    first, second = body["shards"]
    assert first == {
        "shard": 0,
        "name": f"tenant:{TENANT}:0",
        "status": "ok",
        "heartbeat_age_s": 1.0,
        "lag": 3,
        "last_checkpoint": NOW - 4,
        "events": 10,
        "model_error": None,
        "dead_letters": None,
        "duplicates": None,
        "warehouse_error": None,
    }
    assert "pid" not in second  # the worker's pid is no business of the tenant
    assert body["topic"] == {"status": "ok"} and body["warehouse"] == {"status": "ok"}
    assert body["model"]["active"] == "analytic-nb-1"


def test_the_tenant_status_is_starting_then_degraded() -> None:
    new = [{"shard": 0}, {"shard": 1, "heartbeat": NOW - 1}]
    assert view(new, created_at=NOW - 3)["status"] == "starting"
    assert view(new, created_at=NOW - 3)["shards"][0]["heartbeat_age_s"] is None
    assert view(new, created_at=NOW - 600)["status"] == "degraded"
    assert view([{"shard": 0, "heartbeat": NOW}], topic_exists=False)["status"] == "degraded"


def test_a_delayed_warehouse_shows_without_degrading() -> None:
    delayed = {"max_delay_s": 7200.0, "limit_s": 1800.0, "at": NOW - 10}
    body = view([{"shard": 0, "heartbeat": NOW}], delayed=delayed)
    assert body["warehouse"] == {"status": "delayed", **delayed}
    assert body["status"] == "ok"


def test_a_failing_warehouse_degrades_the_tenant_and_shows_to_operators() -> None:
    failing = {"error": "NotADirectoryError", "since": NOW - 60, "attempts": 4, "buffered": 300}
    beat = {"shard": 0, "heartbeat": NOW, "warehouse_error": "OSError: /srv/wh is full"}
    body = view([beat], failing=failing, internal=True)  # the operator's
    assert body["warehouse"] == {"status": "failing", **failing}
    assert body["shards"][0]["warehouse_error"] == "OSError: /srv/wh is full"
    assert body["status"] == "degraded"
    own = view([beat], failing=failing)  # the tenant's: no path, host or exception text
    assert "NotADirectory" not in str(own) and "/srv/wh" not in str(own)
    assert own["warehouse"]["status"] == "failing" and own["status"] == "degraded"
    infra = dict.fromkeys(("ray", "redis", "kafka"), Component(ok=True))
    operator = operator_status(infra, {TENANT: body}, topics=1)
    assert operator["down"] == ["warehouse"] and operator["warehouse_failing"] == [TENANT]


# -- the public view ------------------------------------------------------------------------------
def test_the_public_body_is_the_version_and_the_infrastructure_only() -> None:
    ok = dict.fromkeys(("ray", "redis", "kafka"), Component(ok=True))
    code, body = public_status(ok)
    assert code == 200
    assert body == {
        "status": "ok",
        "version": __version__,
        "components": {name: {"status": "ok"} for name in ("ray", "redis", "kafka")},
    }
    down = ok | {
        "redis": Component(
            ok=False, reason="not reachable", error="Error 111 connecting to 10.0.0.7"
        )
    }
    code, body = public_status(down)
    assert code == 503
    assert body["status"] == "degraded" and body["down"] == ["redis"]
    assert body["components"]["redis"] == {"status": "down", "reason": "not reachable"}
    assert "10.0.0.7" not in json.dumps(body)  # the error itself is for operators only


# -- probes ---------------------------------------------------------------------------------------
# Named as redis-py's errors are, which do not derive from the builtin ones.
RedisConnectionError = type("ConnectionError", (Exception,), {})
RedisTimeoutError = type("TimeoutError", (Exception,), {})


def test_probe_reports_each_failure_generically_and_keeps_the_error() -> None:
    def refused() -> None:
        raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    def timed_out() -> None:
        raise TimeoutError("Timeout reading from /var/run/redis.sock")

    def kafka() -> None:
        raise RuntimeError('KafkaError{code=_TRANSPORT,val=-195,str="Failed to get metadata"}')

    def down() -> None:
        raise ComponentDown("not running", "actor aurora-supervisor is not running")

    def redis_refused() -> None:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6390.")

    def redis_slow() -> None:
        raise RedisTimeoutError("Timeout connecting to server")

    checks = {"a": refused, "b": timed_out, "c": kafka, "d": down, "e": lambda: True}
    result = probe({**checks, "f": redis_refused, "g": redis_slow}, timeout_s=5)
    assert result["a"] == Component(
        ok=False,
        reason="not reachable",
        error="Error 111 connecting to 127.0.0.1:6390. Connection refused.",
    )
    assert result["b"].reason == "no answer in time"
    assert result["c"].reason == "not available"
    assert (result["d"].reason, result["d"].error) == (
        "not running",
        "actor aurora-supervisor is not running",
    )
    assert result["e"] == Component(ok=True)
    assert (result["f"].reason, result["g"].reason) == ("not reachable", "no answer in time")
    for component in result.values():
        assert "127.0.0.1" not in json.dumps(component.public())


def test_probe_answers_within_its_timeout_when_a_check_hangs() -> None:
    release = threading.Event()
    started = time.monotonic()
    try:
        result = probe({"stuck": lambda: release.wait(30), "fine": lambda: None}, timeout_s=0.3)
    finally:
        release.set()
    assert time.monotonic() - started < 10  # far below the stuck check's 30 s
    assert result["stuck"].reason == "no answer in time" and not result["stuck"].ok
    assert result["fine"].ok


# -- the operator view ----------------------------------------------------------------------------
def test_the_operator_view_names_what_is_down_across_tenants() -> None:
    infra = dict.fromkeys(("ray", "redis", "kafka"), Component(ok=True))
    healthy = view([{"shard": 0, "heartbeat": NOW}])
    stuck = tenant_status(
        "other",
        records=[{"shard": 0, "heartbeat": NOW - 100}, {"shard": 1}],
        created_at=NOW - 5,
        topic_exists=True,
        delayed=None,
        model={},
        now=NOW,
        rules=RULES,
    )
    body = operator_status(infra, {TENANT: healthy, "other": stuck}, topics=7)
    assert body["status"] == "degraded" and body["down"] == ["shards"]
    assert body["shards"] == {
        "total": 3,
        "down": ["tenant:other:0"],
        "starting": ["tenant:other:1"],
    }
    assert body["components"]["kafka"] == {"status": "ok", "topics": 7}
    assert set(body["tenants"]) == {TENANT, "other"}

    broken = infra | {"kafka": Component(ok=False, reason="not reachable", error="boom at host")}
    lost = view([{"shard": 0, "heartbeat": NOW}], topic_exists=False)
    body = operator_status(broken, {TENANT: lost}, topics=None)
    assert body["down"] == ["kafka", "topics"] and body["missing_topics"] == [TENANT]
    assert body["components"]["kafka"]["error"] == "boom at host"
    assert operator_status(infra, {TENANT: healthy}, topics=1)["status"] == "ok"
