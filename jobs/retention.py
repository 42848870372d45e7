"""Ray job: warehouse retention (fact_order 90 days, fact_prediction 2 years by default).

    ray job submit --working-dir . -- python -m jobs.retention [--dry-run] [--json]

Daily, e.g. from cron: ``15 3 * * * cd /srv/aurora && ray job submit --address
http://127.0.0.1:8265 --working-dir . -- python -m jobs.retention``. Runs the same code as
``aurora warehouse retention``; the periods come from AURORA_RETENTION_RAW_DAYS and
AURORA_RETENTION_MODELLED_DAYS, the root from AURORA_WAREHOUSE_URI.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from aurora_ray.settings import load_settings
from aurora_ray.warehouse.retention import describe, run_retention

log = logging.getLogger("jobs.retention")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.retention", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--uri", help="warehouse root (default: AURORA_WAREHOUSE_URI)")
    args = parser.parse_args(argv)
    overrides = {"warehouse_uri": args.uri} if args.uri else {}
    settings = load_settings(**overrides)
    report = run_retention(settings, dry_run=args.dry_run)
    if args.json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        for line in describe(report):
            sys.stdout.write(line + "\n")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
