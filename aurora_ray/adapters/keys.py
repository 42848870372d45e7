"""Redis key names of a tenant: one spelling for every module that builds them."""

from __future__ import annotations

__all__ = ["tenant_key"]


def tenant_key(tenant_id: str, *parts: str) -> str:
    """A tenant's Redis key: ``aurora:t:<tenant>:<part>:…``."""
    return ":".join(("aurora", "t", tenant_id, *parts))
