"""Memory: bytes of shard state per SKU, and the resident memory of the whole stack with
``memory_skus`` SKUs of state loaded into one tenant's shards.

Per SKU: a ``SkuState`` grown to N SKUs in this process, measured three ways: its numpy columns
(``nbytes``), everything it allocated (tracemalloc: columns plus the key index) and its checkpoint
(``to_bytes``). Stack: RSS and PSS (shared pages split between processes) of every process of
Ray (head, workers, Serve, haproxy), Valkey and the broker, before and after loading.
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from pathlib import Path

from aurora_ray.domain.state import SkuState
from bench.common import (
    Row,
    ScenarioResult,
    Size,
    Target,
    produce_raw,
    registered_tenant,
    snapshot_lines,
    topic_records,
)

NAME = "memory"
_MIB = 1024 * 1024


def state_bytes_per_sku(n: int) -> dict[str, float]:
    gc.collect()
    tracemalloc.start()  # the key strings count: a shard allocates them too
    state = SkuState()
    state.rows_for([f"SKU-{i:07d}@DE-HAM" for i in range(n)])
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    arrays = sum(int(col.nbytes) for col in state.cols.values())
    checkpoint = len(state.to_bytes())
    capacity = len(next(iter(state.cols.values())))
    return {
        "skus": float(n),
        "capacity": float(capacity),
        "arrays_per_sku": arrays / n,
        "allocated_per_sku": traced / n,
        "checkpoint_per_sku": checkpoint / n,
    }


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def stack_pids(target: Target) -> set[int]:
    """Ray (the `ray start` group recorded by `aurora up`, else this process's children), the
    embedded servers from their pid files, and all their descendants; never this process."""
    run_dir = target.settings.data_dir / "run"
    roots: set[int] = set()
    for name in ("ray", "valkey", "tansu"):
        try:
            roots.add(int((run_dir / f"{name}.pid").read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    if not (run_dir / "ray.pid").exists():
        roots.add(os.getpid())  # Ray started in this process (ray.init): its children
    tree = _children()
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(tree.get(pid, []))
    found.discard(os.getpid())
    return found


def memory_of(pids: set[int]) -> dict[str, float]:
    rss = pss = 0
    counted = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        counted += 1
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss += int(line.split()[1]) * 1024
    return {"processes": float(counted), "rss_mib": rss / _MIB, "pss_mib": pss / _MIB}


def run(target: Target, size: Size) -> ScenarioResult:
    n = size.memory_skus
    target.progress(f"memory: SkuState at {n} SKUs")
    per_sku = state_bytes_per_sku(n)
    before = memory_of(stack_pids(target))
    tenant, client = registered_tenant(target, "bench-memory")
    client.close()
    target.progress(f"memory: loading {n} SKUs into a tenant's shards")
    records = topic_records(
        tenant.tenant_id, snapshot_lines(tenant.tenant_id, range(n), on_hand=1_000_000)
    )
    topic = target.settings.topic_for(tenant.tenant_id)
    delivered = produce_raw(target.settings.kafka_bootstrap, topic, records).delivered
    began = time.perf_counter()
    while time.perf_counter() - began < 300:
        if target.store.counters(tenant.tenant_id).get("events_processed", 0) >= delivered:
            break
        time.sleep(0.2)
    load_s = time.perf_counter() - began
    processed = target.store.counters(tenant.tenant_id).get("events_processed", 0)
    time.sleep(1.0)  # let the checkpoint after the last batch land
    after = memory_of(stack_pids(target))
    rows = [
        Row(
            metric="shard state bytes per SKU (numpy columns)",
            unit="bytes",
            aurora=per_sku["arrays_per_sku"],
            target="<= 1024",
            ok=per_sku["arrays_per_sku"] <= 1024,
            note=f"capacity {int(per_sku['capacity'])} rows for {n} SKUs",
        ),
        Row(
            metric="shard state bytes per SKU (all allocations, key index included)",
            unit="bytes",
            aurora=per_sku["allocated_per_sku"],
            target="<= 1024",
            ok=per_sku["allocated_per_sku"] <= 1024,
            note=f"checkpoint {per_sku['checkpoint_per_sku']:.0f} bytes per SKU",
        ),
        Row(
            metric=f"stack resident memory (PSS) with {processed} SKUs loaded",
            unit="MiB",
            aurora=after["pss_mib"],
            anchor=before["pss_mib"],
            anchor_name="same stack before loading",
            note=f"RSS sum {after['rss_mib']:.0f} MiB over {int(after['processes'])} processes "
            f"(shared pages counted in each); loaded in {load_s:.1f} s",
        ),
    ]
    return ScenarioResult(
        NAME,
        "ok" if processed >= delivered else "failed",
        reason="" if processed >= delivered else f"processed {processed} of {delivered}",
        rows=rows,
        details={"per_sku": per_sku, "before": before, "after": after, "load_s": load_s},
    )
