"""The embedded Valkey after a restart: start_valkey returns only once the append-only file is
loaded, so the first command never meets ``-LOADING`` (a fault test once failed on it when a
busy machine took seconds to replay the session's file)."""

from __future__ import annotations

from pathlib import Path

import redis

from aurora_ray.embedded import start_valkey


def test_a_restarted_valkey_answers_at_once_with_its_data(tmp_path: Path) -> None:
    valkey = start_valkey(tmp_path)
    client = redis.Redis.from_url(valkey.url)
    try:
        with client.pipeline(transaction=False) as pipe:
            for i in range(200_000):  # an AOF of ~10 MB: a visible load on restart
                pipe.set(f"k{i}", "x" * 20)
            pipe.execute()
    finally:
        client.close()
    valkey.stop()  # SIGTERM: the AOF is flushed
    again = start_valkey(tmp_path, port=valkey.port)
    client = redis.Redis.from_url(again.url)
    try:
        assert client.get("k199999") == b"x" * 20  # no BusyLoadingError
        assert client.dbsize() == 200_000
    finally:
        client.close()
        again.stop()
