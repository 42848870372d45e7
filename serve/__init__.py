"""Ray Serve deployments and the HTTP API (FastAPI ingress).

Thin: parse, authorise, call the core."""
