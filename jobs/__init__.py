"""Ray job entry points (``python -m jobs.<name>``), submitted with ``ray job submit``.

Thin: parse arguments, show progress, call the core. The backfill and retrain jobs land here.
"""
