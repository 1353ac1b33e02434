"""Master-key check for synqra's admin endpoints (/api/*)."""

from __future__ import annotations

from fastapi import Request

from proxy.api.errors import api_error
from proxy.master_key import bearer_token, is_master_key
from proxy.runtime import get_runtime


def presented_key(request: Request) -> str:
    return bearer_token(request.headers.get("authorization")) or request.headers.get("x-api-key", "").strip()


def holds_master_key(request: Request) -> bool:
    return is_master_key(presented_key(request), get_runtime().master_key)


async def require_master_key(request: Request) -> None:
    if not holds_master_key(request):
        raise api_error(401, "this endpoint needs the proxy's master key", "auth_error")
