"""The domain core (and the status views of aurora_ray.health) must not pull in Ray, Kafka or
Redis clients."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import sys
import aurora_ray.domain
import aurora_ray.domain.events
import aurora_ray.domain.scoring
import aurora_ray.domain.state
import aurora_ray.health  # the status views are pure too
for name in ("aurora_ray.domain.events", "aurora_ray.domain.state", "aurora_ray.domain.scoring"):
    assert name in sys.modules, name
forbidden = ("ray", "confluent_kafka", "redis")
loaded = sorted(
    m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden)
)
assert not loaded, loaded
print("pure")
"""


def test_domain_imports_no_infrastructure_clients() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pure"
