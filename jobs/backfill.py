"""Ray job: backfill an events file into the warehouse and the SKU state.

    python -m jobs.backfill --tenant ID --source PATH|URI --backfill-id ID [--engine ray-data]

Settings come from the ``AURORA_*`` environment (``aurora backfill`` and ``POST
/v1/ingest/backfill`` pass them in the job's runtime environment). Progress goes to Redis
(``aurora:t:<tenant>:backfill:<id>``) and to the log; the exit code is 1 when the backfill failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aurora_ray.backfill_job import run_backfill
from aurora_ray.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobs.backfill", description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", required=True, help="tenant id (GUID)")
    parser.add_argument("--source", required=True, help="NDJSON(.gz) or Parquet: path or URI")
    parser.add_argument("--backfill-id", required=True, help="id of this backfill (retry: same)")
    parser.add_argument("--engine", choices=("ray-data", "local"), default="ray-data")
    parser.add_argument("--fold-timeout", type=float, default=900.0, help="seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = load_settings()
    if args.engine == "ray-data":
        import ray

        # The submitter names its cluster (Ray's own RAY_ADDRESS=auto may pick another one).
        ray.init(address=os.environ.get("AURORA_RAY_ADDRESS") or None, log_to_driver=False)
    try:
        result = run_backfill(
            settings,
            tenant_id=args.tenant,
            source=args.source,
            backfill_id=args.backfill_id,
            engine=args.engine,
            fold_timeout_s=args.fold_timeout,
        )
    except Exception:
        logging.exception("backfill %s failed", args.backfill_id)
        return 1
    logging.info(
        "backfill %s done: %s, seconds %s, folded %s, rejects in %s",
        result.backfill_id,
        result.counts.as_dict(),
        {k: round(v, 2) for k, v in result.seconds.items()},
        result.folded,
        result.rejects,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
