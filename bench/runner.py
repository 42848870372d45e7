"""Run the scenarios against a stack and write ``<out>/<date>.json`` and ``<out>/<date>.md``.

``run_bench`` works on any running stack (the CLI's own, or the test session's); ``bench_cli``
is `aurora bench`: it starts the embedded stack (with or without Serve's HAProxy ingress), runs,
prints the table and stops what it started.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import (
    scenario_e2e,
    scenario_ingest,
    scenario_jobs,
    scenario_memory,
    scenario_reads,
    scenario_stream,
)
from bench.common import Row, ScenarioResult, Size, Target, cpu_count, ensure_dir, load_average

__all__ = ["SCENARIOS", "bench_cli", "markdown_table", "run_bench", "write_results"]

Scenario = Callable[[Target, Size], ScenarioResult]
SCENARIOS: dict[str, Scenario] = {
    "ingest": scenario_ingest.run,
    "stream": scenario_stream.run,
    "e2e": scenario_e2e.run,
    "reads": scenario_reads.run,
    "backfill": scenario_jobs.run_backfill,
    "export": scenario_jobs.run_export,
    "retrain": scenario_jobs.run_retrain,
    "memory": scenario_memory.run,
}
DEFAULT_OUT = Path("bench/results")


def run_bench(
    target: Target,
    *,
    quick: bool,
    scenarios: Sequence[str] | None = None,
    after_each: Callable[[dict[str, Any]], object] = lambda _results: None,
    e2e_rate: int | None = None,
) -> dict[str, Any]:
    """Run the chosen scenarios (all by default) in order; one failing does not stop the rest.
    ``after_each`` gets the results so far after every scenario (to save them as they come)."""
    names = list(scenarios or SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    size = Size.of(quick=quick)
    if e2e_rate is not None:  # e.g. the PRD's 45 K burst, held, instead of 30 K
        size = dataclasses.replace(size, e2e_rate=e2e_rate)
    results: dict[str, Any] = {}
    started = datetime.now(UTC)
    for name in names:
        target.progress(f"[{name}] starting")
        began = time.perf_counter()
        try:
            result = SCENARIOS[name](target, size)
        except Exception as exc:  # a broken scenario is reported, the others still run
            result = ScenarioResult(
                name,
                "failed",
                reason=f"{type(exc).__name__}: {exc}",
                details={"traceback": traceback.format_exc()[-2000:]},
            )
        result.seconds = time.perf_counter() - began
        target.progress(f"[{name}] {result.status} in {result.seconds:.1f} s {result.reason}")
        results[name] = result.as_dict()
        after_each(_document(target, quick, started, results, names))
    return _document(target, quick, started, results, names)


def _document(
    target: Target,
    quick: bool,
    started: datetime,
    results: dict[str, Any],
    selected: Sequence[str],
) -> dict[str, Any]:
    return {
        "date": started.date().isoformat(),
        "selected": list(selected),
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "quick": quick,
        "haproxy": target.haproxy,
        "machine": {
            "cpus": cpu_count(),
            "load_average_1m_at_end": load_average(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "scenarios": dict(results),
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None or value != value:  # None or NaN
        return "–"
    if unit == "events/s":
        return f"{value / 1000:.1f} K/s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "s" and abs(value) < 1:  # a quick run's export: never "0.0 s" for 8 ms
        return f"{value * 1000:.1f} ms"
    if unit == "s":
        return f"{value:.1f} s"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "µs":
        return f"{value:.1f} µs"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if unit == "bytes":
        return f"{value:.0f} B"
    return f"{value:g} {unit}"


def _cell(text: str) -> str:
    """One table cell: a multi-line text (a job's log) on one line, its pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown_table(results: dict[str, Any]) -> str:
    ingress = "HAProxy ingress" if results["haproxy"] else "default Serve proxy"
    head = [
        f"Aurora bench {results['date']} ({'quick' if results['quick'] else 'full'}, {ingress}, "
        f"{results['machine']['cpus']} CPUs, 1-min load at end "
        f"{results['machine']['load_average_1m_at_end']:.1f})",
        "",
        "| scenario | metric | Aurora | same-run anchor | target | met |",
        "| --- | --- | ---: | --- | --- | --- |",
    ]
    lines = list(head)
    for name, scenario in results["scenarios"].items():
        if scenario["status"] != "ok" and not scenario["rows"]:
            lines.append(f"| {name} | {scenario['status']}: {_cell(scenario['reason'])} | | | | |")
            continue
        for raw in scenario["rows"]:
            row = Row(**raw)
            anchor = f"{_fmt(row.anchor, row.unit)} ({row.anchor_name})" if row.anchor_name else ""
            met = {True: "yes", False: "**no**", None: ""}[row.ok]
            metric = f"{row.metric}; {row.note}" if row.note else row.metric
            lines.append(
                f"| {name} | {_cell(metric)} | {_fmt(row.aurora, row.unit)} | {_cell(anchor)} | "
                f"{_cell(row.target)} | {met} |"
            )
        if scenario["status"] != "ok":
            lines.append(f"| {name} | {scenario['status']}: {_cell(scenario['reason'])} | | | | |")
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``<date>.json`` and ``<date>.md`` (``-quick``, ``-no-haproxy`` and, for a subset of the
    scenarios, their names as suffixes keep runs of other kinds from overwriting the day's full
    run)."""
    ensure_dir(out_dir)
    stem = results["date"]
    if results["quick"]:
        stem += "-quick"
    if not results["haproxy"]:
        stem += "-no-haproxy"
    selected = results.get("selected") or list(SCENARIOS)
    if set(selected) != set(SCENARIOS):  # a partial run never overwrites the day's full one
        stem += "-" + "-".join(selected)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path.write_text(markdown_table(results))
    return json_path, md_path


def bench_cli(
    *,
    quick: bool,
    scenarios: Sequence[str] | None,
    out_dir: Path,
    haproxy: bool,
    port: int | None,
    progress: Callable[[str], None],
    e2e_rate: int | None = None,
) -> tuple[dict[str, Any], Path, Path]:
    """`aurora bench`: run on the embedded stack, started for the run and stopped after it.

    A stack already running is used as it is (its ingress is whatever it was started with), so
    that HAProxy on or off is only guaranteed when the bench starts the stack itself."""
    from aurora_ray.settings import load_settings
    from aurora_ray.stack import (
        _use_ray_env,
        api_running,
        read_stack,
        resolve_settings,
        running_stack,
    )

    settings = load_settings(serve_haproxy=haproxy)
    _use_ray_env(settings)  # the stack's Ray token, also when the stack was already running
    already_running = api_running(read_stack(settings))
    if already_running:
        progress("a stack is already running: benchmarking it as it is")
    else:
        # A stack of its own, from nothing, under <data_dir>/bench: a run's tenants (and their
        # millions of events) never pile up in the developer's stack, whose supervisor would
        # restart every tenant's shards at each `aurora up`.
        bench_dir = settings.data_dir / "bench"
        shutil.rmtree(bench_dir, ignore_errors=True)
        settings = settings.model_copy(
            update={"data_dir": bench_dir, "warehouse_uri": str(bench_dir / "warehouse")}
        )
        _use_ray_env(settings)
    with running_stack(settings, http_port=port, progress=progress) as info:
        resolved = resolve_settings(
            settings.model_copy(
                update={
                    "redis_url": info.redis_url,
                    "kafka_bootstrap": info.kafka_bootstrap,
                    "http_port": urlsplit(info.api_url).port or settings.http_port,
                }
            )
        )  # what `aurora up` deployed the API with
        target = Target(
            settings=resolved,
            api_url=info.api_url,
            ray_address=info.ray_address,
            haproxy=haproxy,
            progress=progress,
            owns_stack=not already_running,
        )
        try:
            results = run_bench(
                target,
                quick=quick,
                scenarios=scenarios,
                after_each=lambda partial: write_results(partial, out_dir),
                e2e_rate=e2e_rate,
            )
        finally:
            import ray

            if ray.is_initialized():
                ray.shutdown()
    json_path, md_path = write_results(results, out_dir)
    return results, json_path, md_path
