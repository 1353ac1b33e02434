"""Master-key check for synqra's admin endpoints (/api/*)."""
from __future__ import annotations

import secrets

from fastapi import HTTPException, Request

from proxy.runtime import get_runtime


def presented_key(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key", "").strip()


async def require_master_key(request: Request) -> None:
    key = presented_key(request)
    if not key or not secrets.compare_digest(key.encode(), get_runtime().master_key.encode()):
        raise HTTPException(
            status_code=401,
            detail={"error": {"message": "this endpoint needs the proxy's master key", "type": "auth_error"}},
        )
