"""Aurora: real-time per-SKU stock-out prediction and alerting on Ray."""

__version__ = "0.1.0"
