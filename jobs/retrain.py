"""Ray job: retrain a tenant's stock-out model from the warehouse.

    python -m jobs.retrain --tenant ID [--no-promote] [--rounds N] [--drift] [--max-rows N]
        [--result-json PATH]

Settings come from the ``AURORA_*`` environment (``aurora retrain`` passes them in the job's
runtime environment). Progress lines go to the job log; the exit code is 1 when it failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

from aurora_ray.models.retrain import compute_drift, run_retrain
from aurora_ray.models.training import XGB_ROUNDS
from aurora_ray.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobs.retrain", description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", required=True, help="tenant id (GUID)")
    parser.add_argument("--no-promote", action="store_true", help="register, never activate")
    parser.add_argument("--rounds", type=int, default=XGB_ROUNDS, help="boosting rounds")
    parser.add_argument("--drift", action="store_true", help="then report the active's drift")
    parser.add_argument(
        "--max-rows", type=int, default=None, help="train on a seeded sample of this many rows"
    )
    parser.add_argument("--result-json", default=None, help="write the result here (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = load_settings()
    import ray

    if not ray.is_initialized():
        # Inside a Ray job: the cluster that ran it (its address is handed over by the
        # submitter, see aurora_ray.ray_jobs.gcs_address).
        ray.init(address=os.environ.get("AURORA_RAY_ADDRESS") or None, log_to_driver=False)

    def progress(message: str) -> None:
        logging.info("retrain %s: %s", args.tenant, message)
        sys.stdout.flush()

    try:
        result = run_retrain(
            settings,
            tenant_id=args.tenant,
            progress=progress,
            promote=not args.no_promote,
            rounds=args.rounds,
            max_rows=args.max_rows,
        )
        if args.drift:
            progress(f"drift: {json.dumps(compute_drift(settings, tenant_id=args.tenant))}")
    except Exception:
        logging.exception("retrain of tenant %s failed", args.tenant)
        return 1
    if args.result_json:
        with open(args.result_json, "w") as out:
            json.dump(dataclasses.asdict(result), out)
    progress(
        f"done: {result.version} {'promoted' if result.promoted else 'not promoted'}; "
        f"metrics {json.dumps(result.metrics)}; baseline {json.dumps(result.baseline)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
