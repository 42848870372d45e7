"""The model side: training core, model store, registry, scorers and drift.

Nothing here imports Ray; the Ray Data pipeline of the retrain job (``retrain.py``) imports it
inside its functions only.
"""
