"""`aurora bench`: Aurora's figures beside the same-run raw limits of the machine (issue 6).

One module per scenario (``scenario_*.py``), shared pieces in :mod:`bench.common` and
:mod:`bench.load`, the runner and the table in :mod:`bench.runner`. Results go to
``bench/results/<date>.json`` and ``.md``.
"""
