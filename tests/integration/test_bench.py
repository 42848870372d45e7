"""`aurora bench --quick` on the session stack: every scenario runs, or says why it was skipped,
and the JSON and the Markdown table are written. Never a timed assertion: figures are reported,
not judged, here.

The bench runs in this process against the session `stack` (its Ray, Valkey and broker), not as
`aurora bench --quick` in a subprocess: that would start a second Ray head (fixed ports 6380 and
8265, ~1 GiB and ~20 s more) beside the session's on a 2-core machine. The CLI's own part (option
parsing, starting and stopping the stack) is `running_stack` + this same `run_bench`; the option
parsing is unit-tested in tests/unit/test_bench_report.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

_MEASURED = ("ingest", "stream", "e2e", "reads", "memory")


@pytest.mark.timeout(900)  # a loaded shared machine; the batch jobs alone may take 3 min
def test_quick_bench_writes_every_scenario(stack, tmp_path: Path) -> None:
    from bench.common import Target
    from bench.runner import SCENARIOS, run_bench, write_results

    messages: list[str] = []
    target = Target(
        settings=stack.settings,
        api_url=stack.base_url,
        ray_address=None,  # this process is connected to the session's Ray
        haproxy=False,
        progress=messages.append,
    )
    results = run_bench(target, quick=True)
    json_path, md_path = write_results(results, tmp_path / "results")

    written = json.loads(json_path.read_text())
    assert set(written["scenarios"]) == set(SCENARIOS)
    for name, scenario in written["scenarios"].items():
        assert scenario["status"] in ("ok", "skipped", "failed"), name
        if scenario["status"] != "ok":
            assert scenario["reason"], f"{name} is {scenario['status']} without a reason"
    for name in _MEASURED:  # the stack's own paths must run through
        scenario = written["scenarios"][name]
        assert scenario["status"] == "ok", (name, scenario["reason"], scenario["details"])
        assert scenario["rows"], name
        assert all(row["aurora"] is not None for row in scenario["rows"]), name
    export = written["scenarios"]["export"]  # rows over HTTP, counted, equal rows written
    assert export["status"] == "ok", (export["reason"], export["details"])
    assert export["details"]["in_process_rows"] == export["details"]["rows"] > 0
    # Aurora's figures stand beside same-run anchors.
    ingest = written["scenarios"]["ingest"]
    assert ingest["rows"][0]["anchor"] > 0
    assert ingest["details"]["records_in_topic"] == ingest["details"]["accepted_events"]
    assert written["scenarios"]["stream"]["rows"][0]["anchor"] > 0
    assert written["scenarios"]["e2e"]["details"]["probes_seen"] > 0

    table = md_path.read_text()
    assert "| scenario | metric | Aurora | same-run anchor | target | met |" in table
    for name in SCENARIOS:
        assert f"| {name} |" in table
    assert "raw confluent-kafka producer" in table and "bare Starlette/uvicorn" in table
    assert any("[memory]" in m for m in messages)  # progress was reported
