"""Aurora's pure domain: events, SKU state, scoring, alerts.

Nothing here imports Ray, a Kafka client or a Redis client; a test checks it.
"""
